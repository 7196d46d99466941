"""Files that appear whole or not at all, and the sweeping of what killed runs left.

``atomic_path(path)`` gives a temporary name beside ``path`` to write to, and renames it
into place only when the writing finished without an error; otherwise the temporary is
removed. A killed process cannot remove its temporary, so temporaries carry the host
and the pid that wrote them (``.<name>.tmp.<host>.<pid>``) and ``sweep_temporaries``
removes those whose process is gone (on this host at once; from another host sharing
the folder, once they are older than a limit). ``check_writable(folder)`` creates an
output folder and writes a probe file in it, so that a read-only or full folder is found
before any work, not after it.
"""

import contextlib
import os
import shutil
import socket
import time

from utils.errors import SettingsError

HOST = socket.gethostname()
TMP_MARK = '.tmp.'
STALE_SECONDS = 600  # a temporary of another host counts as dead after this long untouched
PROBE_BYTES = 1 << 16  # what check_writable writes (and syncs) to find a full disk


def process_start(pid):
    """The process's start time in clock ticks since boot ('?' without /proc), or None if
    there is no such process. A pid and its start time name a process uniquely."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[19]
    except FileNotFoundError:
        if os.path.isdir('/proc/self'):
            return None
    try:  # no /proc (not Linux): the pid alone
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return '?'


def temporary_name(path):
    """The temporary name of ``path`` for this process: ``.<name>.tmp.<host>.<pid>``."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f'.{name}{TMP_MARK}{HOST}.{os.getpid()}')


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path to write ``path`` through (a file or a folder); it is renamed
    to ``path`` when the block ends without an error, and removed otherwise."""
    tmp_path = temporary_name(path)
    remove(tmp_path)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        remove(tmp_path)


def beside(path, default, folder):
    """``path``, or, when it is the ``default`` and missing here, the default found in
    ``folder`` (a script's own folder, so scripts find their default files from anywhere)."""
    if path == default and not os.path.exists(path):
        return os.path.join(folder, path)
    return path


def remove(path):
    """Remove a file or a folder tree if it exists."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):  # gone, or its folder is a file
            os.remove(path)


def writer_is_dead(name, age, stale_seconds=STALE_SECONDS):
    """Whether the process named in a temporary's name (``...tmp.<host>.<pid>``) is gone."""
    host, _, pid = name.rsplit(TMP_MARK, 1)[1].rpartition('.')
    if host == HOST:
        return process_start(pid) is None
    return age > stale_seconds


def sweep_temporaries(folder, stale_seconds=STALE_SECONDS):
    """Remove the temporaries in ``folder`` whose writer died; returns their paths."""
    swept = []
    if not os.path.isdir(folder):
        return swept
    for name in os.listdir(folder):
        if not name.startswith('.') or TMP_MARK not in name:
            continue
        path = os.path.join(folder, name)
        try:
            age = time.time() - os.path.getmtime(path)
        except FileNotFoundError:
            continue
        if writer_is_dead(name, age, stale_seconds):
            remove(path)
            swept.append(path)
    return swept


def check_writable(folder, what, need_bytes=0):
    """Create ``folder`` if needed and write, sync and remove a probe file in it; raise
    SettingsError naming the folder and ``what`` (the setting that chose it, such as
    '--out_dir') when that fails or the disk has less than ``need_bytes`` free."""
    folder = str(folder)
    probe = temporary_name(os.path.join(folder, 'write-probe'))
    try:
        os.makedirs(folder, exist_ok=True)
        with open(probe, 'wb') as f:
            f.write(bytes(PROBE_BYTES))
            f.flush()
            os.fsync(f.fileno())
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise SettingsError(f'{folder}: cannot write here ({exc.strerror or exc}); {what} must be a writable '
                            'folder') from None
    finally:
        remove(probe)
    if free < need_bytes:
        raise SettingsError(f'{folder}: {free / 1e6:.1f} MB free but the outputs need about '
                            f'{need_bytes / 1e6:.1f} MB ({what})')
