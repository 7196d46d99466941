"""Stop signals as KeyboardInterrupt, held while work must not be cut, and the CLI's exit
for them: in this process, with the handlers restored after each test."""

import os
import signal
import time

import pytest

from utils import cli, interrupts


@pytest.fixture
def installed():
    """The stop-signal handlers of utils.cli, for one test."""
    saved = {signum: signal.getsignal(signum) for signum in interrupts.STOP_SIGNALS}
    interrupts.install()
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)
    interrupts._State.received = 0


def send_sigterm():
    signal.raise_signal(signal.SIGTERM)  # its handler has run when this returns


def test_sigterm_raises_keyboard_interrupt_and_is_remembered(installed):
    assert not interrupts.stop_requested()
    assert not interrupts.is_interruption(RuntimeError('DataLoader worker (pid 1) is killed by signal'))
    with pytest.raises(KeyboardInterrupt):
        send_sigterm()
    assert interrupts.stop_requested()
    assert interrupts.is_interruption(RuntimeError('DataLoader worker (pid 1) is killed by signal'))
    assert not interrupts.is_interruption(ValueError('a bad value'))


def test_a_signal_inside_deferred_is_raised_when_the_block_ends(installed):
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():
            with interrupts.deferred():  # nested blocks hold it to the outermost end
                send_sigterm()
                finished.append('inner')
            finished.append('outer')
    assert finished == ['inner', 'outer']


def test_a_held_signal_is_not_swallowed_by_an_error_the_caller_catches(installed):
    with pytest.raises(KeyboardInterrupt):
        try:
            with interrupts.deferred():
                send_sigterm()
                raise FileExistsError('a lock taken by another process')
        except FileExistsError:
            pass


def test_waits_inside_a_deferred_block_stay_interruptible(installed):
    with pytest.raises(KeyboardInterrupt):  # a signal held before the wait is raised when it starts
        with interrupts.deferred():
            send_sigterm()
            with interrupts.interruptible():
                raise AssertionError('not reached')
    finished = []
    with pytest.raises(KeyboardInterrupt):  # one that comes during the wait, at once
        with interrupts.deferred():
            with interrupts.interruptible():
                send_sigterm()
                finished.append('wait')
    assert finished == []
    held = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.deferred():  # after the wait, signals are held again
            with interrupts.interruptible():
                pass
            send_sigterm()
            held.append('after the wait')
    assert held == ['after the wait']


def test_a_deferred_save_while_handling_an_interrupt_is_not_cut_by_a_second_signal(installed):
    saved = []
    with pytest.raises(KeyboardInterrupt, match='the first'):
        try:
            raise KeyboardInterrupt('the first')
        except KeyboardInterrupt:
            with interrupts.deferred():
                send_sigterm()
                saved.append(True)
            raise
    assert saved == [True]
    with interrupts.deferred():  # the held signal was dropped, not left to a later block
        pass


def test_helpers_ignore_stop_signals_except_their_parents_sigterm():
    read_end, write_end = os.pipe()
    with interrupts.starting_helpers():
        pid = os.fork()
        if pid == 0:  # the helper: signals from anyone but its parent must not end it
            try:
                os.kill(os.getpid(), signal.SIGTERM)  # sent before it ignores them
                interrupts.ignore_in_helper()
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.5)
                os.write(write_end, b'alive')
                time.sleep(60)
            finally:
                os._exit(1)
    os.close(write_end)
    assert os.read(read_end, 5) == b'alive'
    os.close(read_end)
    os.kill(pid, signal.SIGTERM)  # as multiprocessing terminates its children
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_cli_exits_130_with_one_line_saying_what_to_do(installed, capsys):
    def main():
        raise KeyboardInterrupt('step 7 is saved in ckpt/run; resume with --init_dir=run')

    with pytest.raises(SystemExit) as stop:
        cli.run(main, argv=[])
    assert stop.value.code == cli.INTERRUPTED_STATUS
    assert capsys.readouterr().err == 'interrupted: step 7 is saved in ckpt/run; resume with --init_dir=run\n'


def test_the_cli_takes_a_runtime_error_after_a_stop_signal_as_the_interruption(installed, capsys):
    def main(fail_before_signal=False):
        if not fail_before_signal:
            with pytest.raises(KeyboardInterrupt):
                send_sigterm()
        raise RuntimeError('DataLoader worker (pid 12) is killed by signal: Terminated.')

    with pytest.raises(RuntimeError):  # without a stop signal it is a failure, with its traceback
        cli.run(main, argv=['--fail_before_signal=True'])
    with pytest.raises(SystemExit) as stop:
        cli.run(main, argv=[])
    assert stop.value.code == cli.INTERRUPTED_STATUS and capsys.readouterr().err == 'interrupted\n'
