"""Training on exported fixture clips: steps, checkpoints, resume, DDP, NaN, Ctrl-C, overfitting.

The loop runs in this process (training.run, as train.py calls it); train.py itself runs
where the process is the point (torchrun, signals).
"""

import glob
import os
import re
import shutil
import signal
import subprocess

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import nets.precision
import training
from nets.pips2 import Pips
from tests.fixtures.scripts import ROOT, script_command
from tests.fixtures.training import EXPORT_VERSION, export_fixture_clips, make_config
from training.loop import NonFiniteLoss
from utils.errors import SettingsError

STEP_LINE = re.compile(r'; step (\d{6})/(\d+); rtime \d+\.\d\d; itime \d+\.\d\d; loss \d+\.\d{3}; '
                       r'loss_t \d+\.\d\d; d_t \d+\.\d; d_v (nan|\d+\.\d)')


@pytest.fixture(scope='module')
def export_root(tmp_path_factory):
    return export_fixture_clips(str(tmp_path_factory.mktemp('train_data')))


def train(export_root, tmp_path, capsys, on_save=None, **changes):
    """training.run in this process on the exported clips, as train.py runs it; returns what it
    printed."""
    capsys.readouterr()
    cfg = training.setup(make_config(ckpt_dir=str(tmp_path / 'ckpt'), log_dir=str(tmp_path / 'logs'), **changes),
                         quick_settings={})
    training.run(cfg, training.export_samples(cfg, dataset_location=export_root, dataset_version=EXPORT_VERSION,
                                              clip_N=16), on_save=on_save)
    return capsys.readouterr().out


def train_args(export_root, tmp_path, **overrides):
    args = {'dataset_location': export_root, 'dataset_version': EXPORT_VERSION, 'B': 1, 'S': 4,
            'crop_size': '128,128', 'iters': 1, 'max_iters': 3, 'log_freq': 4, 'val_freq': 2, 'save_freq': 2,
            'num_workers': 0, 'ckpt_dir': tmp_path / 'ckpt', 'log_dir': tmp_path / 'logs', 'clip_N': 16, 'seed': 0}
    args.update(overrides)
    return [f'--{key}={value}' for key, value in args.items()]


def steps_printed(stdout):
    return [int(m.group(1)) for m in STEP_LINE.finditer(stdout)]


def run_dir(tmp_path):
    (run,) = os.listdir(tmp_path / 'ckpt')
    return tmp_path / 'ckpt' / run


def test_steps_checkpoints_and_tensorboard(export_root, tmp_path, capsys):
    out = train(export_root, tmp_path, capsys)
    assert steps_printed(out) == [1, 2, 3]
    assert re.search(r'^1_4_64_i1_5e-4s_A_aa01_\d{6}; step 000001/3; ', out, re.M)
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


def test_on_save_gets_each_checkpoint_after_its_step_line(export_root, tmp_path, capsys):
    seen = []

    def on_save(step, folder):
        seen.append((step, sorted(os.listdir(folder)), steps_printed(capsys.readouterr().out)))

    train(export_root, tmp_path, capsys, on_save=on_save, max_iters=5, save_freq=2, val_freq=0)
    assert seen == [(2, ['model-000000002.pth'], [1, 2]),
                    (4, ['model-000000002.pth', 'model-000000004.pth'], [3, 4]),
                    (5, ['model-000000004.pth', 'model-000000005.pth'], [5])]  # the final save, keep_latest=2


def test_bf16_training_on_a_cpu_with_bf16_matrix_units(export_root, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(nets.precision, 'cpu_flags', lambda: {'avx512f', 'avx512_bf16'})
    out = train(export_root, tmp_path, capsys, amp='bf16', max_iters=2, val_freq=2, save_freq=2)
    assert steps_printed(out) == [1, 2]
    weights = torch.load(run_dir(tmp_path) / 'model-000000002.pth', weights_only=True)['model_state_dict']
    assert all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in weights.values())


def test_bf16_training_refused_at_setup_on_a_cpu_without_them(monkeypatch):
    monkeypatch.setattr(nets.precision, 'cpu_flags', lambda: {'avx512f', 'avx2'})
    with pytest.raises(SettingsError, match=r'^--amp=bf16 on the CPU needs bf16 matrix units'):
        training.setup(make_config(amp='bf16'), quick_settings={})


def lr_at(tmp_path, step):
    (run,) = os.listdir(tmp_path / 'logs')
    events = EventAccumulator(str(tmp_path / 'logs' / run / 't'))
    events.Reload()
    return {e.step: e.value for e in events.Scalars('_/current_lr')}[step]


def test_resume_continues_at_the_next_step_on_the_same_schedule(export_root, tmp_path, capsys):
    straight = tmp_path / 'straight'
    train(export_root, straight, capsys, max_iters=4, val_freq=0)
    first = tmp_path / 'first'
    train(export_root, first, capsys, max_iters=4, val_freq=0, save_freq=3)
    resumed = tmp_path / 'resumed'
    previous = resumed / 'ckpt' / 'previous'  # a run folder under --ckpt_dir, as the original names it
    os.makedirs(previous)
    shutil.copy(run_dir(first) / 'model-000000003.pth', previous)
    out = train(export_root, resumed, capsys, max_iters=4, val_freq=0, init_dir='previous')
    assert steps_printed(out) == [4]
    assert lr_at(resumed, 4) == pytest.approx(lr_at(straight, 4), rel=1e-6)
    before = torch.load(previous / 'model-000000003.pth', weights_only=True)['optimizer_state_dict']
    shutil.rmtree(previous)
    after = torch.load(run_dir(resumed) / 'model-000000004.pth', weights_only=True)['optimizer_state_dict']
    assert int(before['state'][0]['step']) == 3 and int(after['state'][0]['step']) == 4


def test_load_step_false_loads_the_model_only(export_root, tmp_path, capsys):
    first = tmp_path / 'first'
    train(export_root, first, capsys, max_iters=3, save_freq=3, val_freq=0)
    with pytest.raises(SettingsError, match='--load_step=False'):  # a finished run has nothing to train
        train(export_root, tmp_path / 'again', capsys, init_dir=str(run_dir(first)), max_iters=3)
    tuned = tmp_path / 'tuned'
    out = train(export_root, tuned, capsys, init_dir=str(run_dir(first)), load_step=False, max_iters=3,
                save_freq=3, val_freq=0)
    assert 'reading ckpt from' in out and steps_printed(out) == [1, 2, 3]
    for step in (1, 3):  # a fresh schedule: the learning rates of a fresh run
        assert lr_at(tuned, step) == pytest.approx(lr_at(first, step), rel=1e-6)
    optimizer = torch.load(run_dir(tuned) / 'model-000000003.pth', weights_only=True)['optimizer_state_dict']
    assert int(optimizer['state'][0]['step']) == 3  # a fresh optimizer, not the first run's 3 + 3


def test_two_processes_with_torchrun_hold_identical_weights(export_root, tmp_path, run_script):
    out = run_script('train.py', *train_args(export_root, tmp_path, max_iters=2, device='cpu'), ranks=2)
    assert out.returncode == 0, out.stderr[-3000:]
    checksums = dict(re.findall(r'rank (\d): weights checksum (\S+)', out.stdout))
    assert set(checksums) == {'0', '1'} and checksums['0'] == checksums['1']
    assert steps_printed(out.stdout) == [1, 2]  # printed by rank 0 only
    keys = torch.load(run_dir(tmp_path) / 'model-000000002.pth', weights_only=True)['model_state_dict']
    assert not any(k.startswith('module.') for k in keys)


def test_nan_loss_stops_with_the_step(export_root, tmp_path, capsys):
    # an absurd learning rate makes the run diverge within a few steps
    with pytest.raises(NonFiniteLoss) as error:
        train(export_root, tmp_path, capsys, lr=1e12, use_scheduler=False, max_iters=20, save_freq=1, val_freq=0)
    match = re.fullmatch(r'nan in loss at step (\d+); quitting \(nothing saved for this step\)', str(error.value))
    assert match, str(error.value)
    step = int(match.group(1))
    saved = sorted(int(p[-13:-4]) for p in glob.glob(str(tmp_path / 'ckpt' / '*' / '*.pth')))
    assert step not in saved and all(s < step for s in saved)


def test_ctrl_c_saves_a_checkpoint_first(export_root, tmp_path):
    args = train_args(export_root, tmp_path, max_iters=1000, save_freq=1000, val_freq=0)
    # a shell's background jobs start with SIGINT ignored; give the run Python's usual Ctrl-C
    proc = subprocess.Popen(script_command('train.py', *args), cwd=ROOT,
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


def test_overfitting_one_cached_clip_halves_the_loss(export_root, tmp_path, capsys):
    train(export_root, tmp_path, capsys, max_iters=100, val_freq=10, save_freq=1000, cache_len=1, use_augs=False)
    (run,) = os.listdir(tmp_path / 'logs')
    events = EventAccumulator(str(tmp_path / 'logs' / run / 'v'))
    events.Reload()
    losses = [e.value for e in events.Scalars('total_loss')]  # zero-velocity validation on the cached clip
    assert len(losses) == 10
    assert min(losses[-3:]) <= 0.5 * losses[0], losses
