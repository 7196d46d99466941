"""The one place a script ends the process.

    if __name__ == '__main__':
        cli.run(main)

``run`` parses the original's ``--name=value`` arguments with python-fire and calls the
script's ``main``. A ``PipsError`` becomes one line, ``error: <message>``, on stderr and
exit status 1, and so does an ``OSError`` (a full disk, a read-only folder), naming the
file. Ctrl-C (SIGINT) and SIGTERM, whether sent to the process or to its whole
process group (as SLURM, Kubernetes and ``timeout`` do), raise ``KeyboardInterrupt``
inside ``main`` (``utils.interrupts``), which saves what it must and lets it through,
with what to do next as its message; the script then prints ``interrupted: <message>``
and exits with status 130.
"""

import sys

import fire

from utils import interrupts
from utils.errors import PipsError, error_line

INTERRUPTED_STATUS = 130


def run(main, argv=None):
    """Call ``main`` with the command line's arguments and exit as described above."""
    interrupts.install()
    try:
        fire.Fire(main, command=argv, name=None)
    except (PipsError, OSError) as exc:
        print(error_line(exc), file=sys.stderr)
        sys.exit(1)
    except (KeyboardInterrupt, RuntimeError) as exc:
        if not interrupts.is_interruption(exc):
            raise
        detail = str(exc) if isinstance(exc, KeyboardInterrupt) else ''
        print('interrupted' + (f': {detail}' if detail else ''), file=sys.stderr)
        sys.exit(INTERRUPTED_STATUS)
