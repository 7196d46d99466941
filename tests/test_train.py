"""train.py on exported fixture clips: steps, checkpoints, resume, DDP, NaN, Ctrl-C, overfitting."""

import glob
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import export_mp4_dataset
from nets.pips2 import Pips
from tests.fixtures.pointodyssey import write_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSION = 'ae_8_16_128x128'
STEP_LINE = re.compile(r'; step (\d{6})/(\d+); rtime \d+\.\d\d; itime \d+\.\d\d; loss \d+\.\d{3}; '
                       r'loss_t \d+\.\d\d; d_t \d+\.\d; d_v (nan|\d+\.\d)')


@pytest.fixture(scope='module')
def export_root(tmp_path_factory):
    folder = tmp_path_factory.mktemp('train_data')
    write_dataset(str(folder / 'pod'), dset='train', n_seqs=1, T=24, H=180, W=256, N=400, seed=5)
    export_mp4_dataset.main(dataset_location=str(folder / 'pod'), out_dir=str(folder / 'export'), S=8, N=16,
                            crop_size=(128, 128), use_augs=False, seed=0, log_freq=0)
    return str(folder / 'export')


def train_args(export_root, tmp_path, **overrides):
    args = {'dataset_location': export_root, 'dataset_version': VERSION, 'B': 1, 'S': 4, 'crop_size': '128,128',
            'iters': 1, 'max_iters': 3, 'log_freq': 4, 'val_freq': 2, 'save_freq': 2, 'num_workers': 0,
            'ckpt_dir': tmp_path / 'ckpt', 'log_dir': tmp_path / 'logs', 'clip_N': 16, 'seed': 0}
    args.update(overrides)
    return [f'--{key}={value}' for key, value in args.items()]


def run_train(args, launcher=(sys.executable,), timeout=600):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    return subprocess.run([*launcher, os.path.join(ROOT, 'train.py'), *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


def steps_printed(stdout):
    return [int(m.group(1)) for m in STEP_LINE.finditer(stdout)]


def run_dir(tmp_path):
    (run,) = os.listdir(tmp_path / 'ckpt')
    return tmp_path / 'ckpt' / run


def test_steps_checkpoints_and_tensorboard(export_root, tmp_path):
    out = run_train(train_args(export_root, tmp_path))
    assert out.returncode == 0, out.stderr[-2000:]
    assert steps_printed(out.stdout) == [1, 2, 3]
    assert re.search(r'^1_4_64_i1_5e-4s_A_aa01_\d{6}; step 000001/3; ', out.stdout, re.M)
    assert sorted(os.listdir(run_dir(tmp_path))) == ['model-000000002.pth', 'model-000000003.pth']
    ckpt = torch.load(run_dir(tmp_path) / 'model-000000003.pth', weights_only=True)
    assert set(ckpt) == {'model_state_dict', 'optimizer_state_dict', 'scheduler_state_dict'}
    Pips().load_state_dict(ckpt['model_state_dict'], strict=True)  # the original's format, no prefix
    run = os.listdir(tmp_path / 'logs')[0]
    for split in ('t', 'v'):
        events = EventAccumulator(str(tmp_path / 'logs' / run / split))
        events.Reload()
        assert '_/d_avg' in events.Tags()['scalars'] and 'total_loss' in events.Tags()['scalars']
    events = EventAccumulator(str(tmp_path / 'logs' / run / 't'), size_guidance={'images': 0})
    events.Reload()
    assert '_/current_lr' in events.Tags()['scalars']


def lr_at(tmp_path, step):
    (run,) = os.listdir(tmp_path / 'logs')
    events = EventAccumulator(str(tmp_path / 'logs' / run / 't'))
    events.Reload()
    return {e.step: e.value for e in events.Scalars('_/current_lr')}[step]


def test_resume_continues_at_the_next_step_on_the_same_schedule(export_root, tmp_path):
    straight = tmp_path / 'straight'
    assert run_train(train_args(export_root, straight, max_iters=4, val_freq=0)).returncode == 0
    first = tmp_path / 'first'
    assert run_train(train_args(export_root, first, max_iters=4, val_freq=0, save_freq=3)).returncode == 0
    resumed = tmp_path / 'resumed'
    previous = resumed / 'ckpt' / 'previous'  # a run folder under --ckpt_dir, as the original names it
    os.makedirs(previous)
    shutil.copy(run_dir(first) / 'model-000000003.pth', previous)
    out = run_train(train_args(export_root, resumed, max_iters=4, val_freq=0, init_dir='previous'))
    assert out.returncode == 0, out.stderr[-2000:]
    assert steps_printed(out.stdout) == [4]
    assert lr_at(resumed, 4) == pytest.approx(lr_at(straight, 4), rel=1e-6)
    before = torch.load(previous / 'model-000000003.pth', weights_only=True)['optimizer_state_dict']
    shutil.rmtree(previous)
    after = torch.load(run_dir(resumed) / 'model-000000004.pth', weights_only=True)['optimizer_state_dict']
    assert int(before['state'][0]['step']) == 3 and int(after['state'][0]['step']) == 4


def test_load_step_false_loads_the_model_only(export_root, tmp_path):
    first = tmp_path / 'first'
    assert run_train(train_args(export_root, first, max_iters=3, save_freq=3, val_freq=0)).returncode == 0
    out = run_train(train_args(export_root, tmp_path / 'again', init_dir=run_dir(first), max_iters=3))
    assert out.returncode != 0 and '--load_step=False' in out.stderr  # a finished run has nothing to train
    tuned = tmp_path / 'tuned'
    out = run_train(train_args(export_root, tuned, init_dir=run_dir(first), load_step=False, max_iters=3,
                               save_freq=3, val_freq=0))
    assert out.returncode == 0, out.stderr[-2000:]
    assert 'reading ckpt from' in out.stdout and steps_printed(out.stdout) == [1, 2, 3]
    for step in (1, 3):  # a fresh schedule: the learning rates of a fresh run
        assert lr_at(tuned, step) == pytest.approx(lr_at(first, step), rel=1e-6)
    optimizer = torch.load(run_dir(tuned) / 'model-000000003.pth', weights_only=True)['optimizer_state_dict']
    assert int(optimizer['state'][0]['step']) == 3  # a fresh optimizer, not the first run's 3 + 3


def test_two_processes_with_torchrun_hold_identical_weights(export_root, tmp_path):
    out = run_train(train_args(export_root, tmp_path, max_iters=2, device='cpu'),
                    launcher=(sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2',
                              '--master_port=29517'))
    assert out.returncode == 0, out.stderr[-3000:]
    checksums = dict(re.findall(r'rank (\d): weights checksum (\S+)', out.stdout))
    assert set(checksums) == {'0', '1'} and checksums['0'] == checksums['1']
    assert steps_printed(out.stdout) == [1, 2]  # printed by rank 0 only
    keys = torch.load(run_dir(tmp_path) / 'model-000000002.pth', weights_only=True)['model_state_dict']
    assert not any(k.startswith('module.') for k in keys)


def test_nan_loss_stops_with_the_step(export_root, tmp_path):
    # an absurd learning rate makes the run diverge within a few steps
    out = run_train(train_args(export_root, tmp_path, lr=1e12, use_scheduler=False, max_iters=20, save_freq=1,
                               val_freq=0))
    assert out.returncode == 1, out.stderr[-2000:]
    match = re.search(r'nan in loss at step (\d+); quitting', out.stdout)
    assert match, out.stdout[-2000:]
    step = int(match.group(1))
    saved = sorted(int(p[-13:-4]) for p in glob.glob(str(tmp_path / 'ckpt' / '*' / '*.pth')))
    assert step not in saved and all(s < step for s in saved)


def test_ctrl_c_saves_a_checkpoint_first(export_root, tmp_path):
    args = train_args(export_root, tmp_path, max_iters=1000, save_freq=1000, val_freq=0)
    # a shell's background jobs start with SIGINT ignored; give the run Python's usual Ctrl-C
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, 'train.py'), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stdout:
        if '; step 000002/1000' in line:
            proc.send_signal(signal.SIGINT)
            break
    rest = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130
    assert 'saving a checkpoint first' in rest
    saved = [int(p[-13:-4]) for p in glob.glob(str(tmp_path / 'ckpt' / '*' / '*.pth'))]
    assert len(saved) == 1 and saved[0] >= 2


def test_overfitting_one_cached_clip_halves_the_loss(export_root, tmp_path):
    out = run_train(train_args(export_root, tmp_path, max_iters=100, val_freq=10, save_freq=1000, cache_len=1,
                               use_augs=False))
    assert out.returncode == 0, out.stderr[-2000:]
    (run,) = os.listdir(tmp_path / 'logs')
    events = EventAccumulator(str(tmp_path / 'logs' / run / 'v'))
    events.Reload()
    losses = [e.value for e in events.Scalars('total_loss')]  # zero-velocity validation on the cached clip
    assert len(losses) == 10
    assert min(losses[-3:]) <= 0.5 * losses[0], losses
