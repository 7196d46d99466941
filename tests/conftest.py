"""Fixtures shared by the tests: the project on sys.path, the golden model and checkpoint, and
a script runner."""

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

if os.environ.get('PYTEST_XDIST_WORKER'):  # -n K: one thread per worker, as torchrun's workers
    torch.set_num_threads(1)

from nets.pips2 import Pips  # noqa: E402
from tests.fixtures import scripts  # noqa: E402
from tests.golden import golden_state_dict, save_golden_checkpoint  # noqa: E402


@pytest.fixture(scope='session')
def model():
    """The golden model: Pips with the weights the original's golden outputs were made with,
    in eval mode (shared by every test: do not change it in place)."""
    model = Pips().eval()
    model.load_state_dict(golden_state_dict())
    return model


@pytest.fixture(scope='session')
def golden_checkpoint(tmp_path_factory):
    """A folder holding the golden weights as a checkpoint (an --init_dir)."""
    return save_golden_checkpoint(tmp_path_factory.mktemp('golden_checkpoint'))


@pytest.fixture
def run_script():
    """``run_script(script, *args, ranks=1, cwd=ROOT, timeout=600, env=None)``: run one of the
    project's scripts in a fresh process; returns the CompletedProcess."""
    return scripts.run_script


@pytest.fixture
def one_thread():
    """Run in-process work on one CPU thread, as the scripts' subprocesses in the tests do, so
    that results are bit-identical to theirs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
