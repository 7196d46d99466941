"""Claiming work items with lock files, across processes and machines sharing a folder.

A process claims an item by creating its lock file exclusively (O_CREAT|O_EXCL); the
file holds ``host pid start-ticks``, which names the process uniquely. A claim whose
process died is taken over: at once on the same host (the process is checked), and
from another host once the lock is older than ``stale_seconds`` (only its age is
known there). Breaking a stale lock renames it away first, so of several breakers only
one succeeds, and a fresh claim that raced in is given back.
"""

import os
import time

from utils.files import HOST, STALE_SECONDS, process_start
from utils.interrupts import deferred

STALE_MARK = '.stale.'


def owner_token():
    """'host pid start-ticks' naming this process."""
    return f'{HOST} {os.getpid()} {process_start(os.getpid())}'


def owner_alive(token, age, stale_seconds):
    """Whether the process named by a lock token may still be working. On this host that is
    checked exactly; from another host (or a half-written token), only by the lock's age."""
    parts = token.split()
    if len(parts) == 3 and parts[0] == HOST:
        return process_start(parts[1]) == parts[2]
    return age < stale_seconds


def read_lock(path):
    """(token, age in seconds) of a lock file; raises FileNotFoundError if it is gone."""
    with open(path) as f:
        token = f.read().strip()
    return token, time.time() - os.path.getmtime(path)


def break_stale_lock(lock_path, stale_seconds=STALE_SECONDS):
    """Remove the lock if its owner is dead; True if the caller should try to claim again."""
    try:
        token, age = read_lock(lock_path)
    except FileNotFoundError:
        return True
    if owner_alive(token, age, stale_seconds):
        return False
    grave = f'{lock_path}{STALE_MARK}{HOST}.{os.getpid()}'
    try:
        os.rename(lock_path, grave)  # atomic: of several breakers only one gets the file
    except FileNotFoundError:
        return True
    with open(grave) as f:
        taken = f.read().strip()
    if taken != token:  # a fresh claim replaced the stale one before the rename: give it back
        try:
            os.link(grave, lock_path)
        except OSError:  # claimed again meanwhile, or no hard links here
            pass
    os.remove(grave)
    return taken == token


def claim(lock_path, stale_seconds=STALE_SECONDS):
    """Create the lock exclusively (taking over a dead owner's); True if this process holds it."""
    for _ in range(3):
        try:
            with deferred():  # a stop signal never leaves a lock without its owner's name
                fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                with os.fdopen(fd, 'w') as f:
                    f.write(owner_token() + '\n')
        except FileExistsError:
            if not break_stale_lock(lock_path, stale_seconds):
                return False
            continue
        return True
    return False


def release(lock_path):
    """Remove this process's lock (left alone if another process has taken it over)."""
    try:
        if read_lock(lock_path)[0] == owner_token():
            os.remove(lock_path)
    except FileNotFoundError:
        pass


def sweep_stale_locks(folder, stale_seconds=STALE_SECONDS):
    """Break the locks of dead owners in ``folder`` and remove half-broken ones."""
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.endswith('.lock'):
            break_stale_lock(path, stale_seconds)
        elif STALE_MARK in name and name.startswith('.'):
            host, _, pid = name.rsplit(STALE_MARK, 1)[1].rpartition('.')
            try:
                age = time.time() - os.path.getmtime(path)
            except FileNotFoundError:
                continue
            if (process_start(pid) is None) if host == HOST else age > stale_seconds:
                os.remove(path)
