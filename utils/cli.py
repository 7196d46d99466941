"""The one place a script ends the process.

    if __name__ == '__main__':
        cli.run(main)

``run`` parses the original's ``--name=value`` arguments with python-fire and calls the
script's ``main``. A ``PipsError`` becomes one line, ``error: <message>``, on stderr and
exit status 1, and so does an ``OSError`` (a full disk, a read-only folder), naming the
file. Ctrl-C (SIGINT) and SIGTERM, whether sent to the process or to its whole
process group (as SLURM, Kubernetes and ``timeout`` do), raise ``KeyboardInterrupt``
inside ``main``, which saves what it must and lets it through; the script then exits
with status 130.
"""

import signal
import sys

import fire

from utils.errors import PipsError, error_line

INTERRUPTED_STATUS = 130


def raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def run(main, argv=None):
    """Call ``main`` with the command line's arguments and exit as described above."""
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        fire.Fire(main, command=argv, name=None)
    except (PipsError, OSError) as exc:
        print(error_line(exc), file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        sys.exit(INTERRUPTED_STATUS)
