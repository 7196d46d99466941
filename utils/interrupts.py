"""Stopping cleanly on SIGINT and SIGTERM, however they are sent.

A terminal sends SIGINT (Ctrl-C) to its whole foreground process group, and clusters stop a
job by sending SIGTERM to its whole process group: SLURM, Kubernetes and ``timeout`` do.
``install()`` (done by ``utils.cli.run`` for every script) turns both into
``KeyboardInterrupt`` in the main thread, so that a run saves what it must and stops. Three
more rules make that hold when the signal reaches every process of the group:

- Helper processes (DataLoader workers) ignore both signals unless their parent sends them:
  they are started with the signals blocked (``starting_helpers``) and ignore them from their
  first instruction (``ignore_in_helper``), so the main process is never left with dead
  workers while it saves. They end when the main process shuts them down, or terminates
  them (a SIGTERM from the parent, as ``multiprocessing`` sends), or dies.
- ``deferred()`` holds a stop signal that arrives inside it (a training step, a checkpoint
  being written) and raises it when the block ends, so such work is never left half done, nor
  a lock of some library left held by an exception out of nowhere; ``interruptible()`` lifts
  the hold where waiting is all there is to cut (waiting for data).
- ``is_interruption(exc)``: a ``RuntimeError`` after a stop signal (e.g. PyTorch's "DataLoader
  worker is killed by signal") is the interruption, not a failure of its own.
"""

import os
import signal
import sys
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    received = 0  # stop signals received by this process
    deferring = 0  # depth of nested deferred() blocks
    pending = False  # a stop signal arrived inside a deferred() block


def on_stop_signal(signum, frame):
    """The handler of the stop signals: KeyboardInterrupt, or held while deferring."""
    _State.received += 1
    if _State.deferring:
        _State.pending = True
        return
    raise KeyboardInterrupt


def install():
    """Make SIGINT and SIGTERM raise KeyboardInterrupt (main thread only). A signal the
    process was started with ignored (``nohup``, a shell's background job) stays ignored."""
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, on_stop_signal)


def stop_requested():
    """Whether this process has received SIGINT or SIGTERM since ``install()``."""
    return _State.received > 0


def is_interruption(exc):
    """Whether ``exc`` is the stop itself: KeyboardInterrupt, or a RuntimeError raised after a
    stop signal (a helper process that died of it)."""
    return isinstance(exc, KeyboardInterrupt) or (isinstance(exc, RuntimeError) and stop_requested())


class deferred:
    """``with deferred():`` holds a stop signal until the block ends, then raises it as
    KeyboardInterrupt, in place of any other exception the block raised (unless a
    KeyboardInterrupt is already on its way). Only with ``install()``'s handler."""

    def __enter__(self):
        _State.deferring += 1
        return self

    def __exit__(self, exc_type, exc, traceback):
        _State.deferring -= 1
        if _State.deferring or not _State.pending:
            return False
        _State.pending = False
        if not isinstance(sys.exc_info()[1], KeyboardInterrupt):  # the block's exception, or one being handled
            raise KeyboardInterrupt
        return False


class interruptible:
    """``with interruptible():`` inside ``deferred()`` blocks: a stop signal is raised at once
    here (one held before, on entry)."""

    def __enter__(self):
        self.depth, _State.deferring = _State.deferring, 0
        if _State.pending:
            _State.pending = False
            _State.deferring = self.depth
            raise KeyboardInterrupt
        return self

    def __exit__(self, exc_type, exc, traceback):
        _State.deferring = self.depth
        return False


class starting_helpers:
    """``with starting_helpers():`` around starting helper processes (DataLoader workers):
    the stop signals are blocked in this thread, so processes forked meanwhile inherit them
    blocked until ``ignore_in_helper`` ignores them; a signal to this process waits until
    the block ends. A no-op outside the main thread."""

    def __enter__(self):
        self.mask = None
        if threading.current_thread() is threading.main_thread():
            self.mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        return self

    def __exit__(self, exc_type, exc, traceback):
        if self.mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)
        return False


def ignore_in_helper():
    """In a helper process: ignore SIGINT, and SIGTERM unless the parent sent it. SIGTERM stays
    blocked and a thread takes it, so that its sender is known: the parent's ends the process
    at once (as PyTorch's own worker handler does), any other is dropped."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    threading.Thread(target=end_on_parents_sigterm, args=(os.getppid(),), daemon=True).start()


def end_on_parents_sigterm(parent):
    while True:
        if signal.sigwaitinfo([signal.SIGTERM]).si_pid == parent:
            os._exit(0)
