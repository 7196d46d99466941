"""Training on exported fixture clips: steps, checkpoints, resume, DDP, NaN, stops, overfitting.

The loop runs in this process (training.run, as train.py calls it); train.py itself runs
where the process is the point (torchrun, signals).
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import nets.precision
import saverloader
import training
from datasets.common import DatasetError
from nets.pips2 import Pips
from saverloader import CheckpointError
from tests.fixtures.scripts import ROOT, script_command
from tests.fixtures.training import EXPORT_VERSION, export_fixture_clips, make_config
from training.loop import NonFiniteLoss
from utils import interrupts
from utils.errors import SettingsError

STEP_LINE = re.compile(r'; step (\d{6})/(\d+); rtime \d+\.\d\d; itime \d+\.\d\d; loss \d+\.\d{3}; '
                       r'loss_t \d+\.\d\d; d_t \d+\.\d; d_v (nan|\d+\.\d)')


@pytest.fixture(scope='module')
def export_root(tmp_path_factory):
    return export_fixture_clips(str(tmp_path_factory.mktemp('train_data')))


def train(export_root, tmp_path, capsys, wrap_samples=None, on_save=None, **changes):
    """training.run in this process on the exported clips, as train.py runs it (the stream
    through ``wrap_samples`` if given); returns what it printed."""
    capsys.readouterr()
    cfg = training.setup(make_config(ckpt_dir=str(tmp_path / 'ckpt'), log_dir=str(tmp_path / 'logs'), **changes),
                         quick_settings={})
    samples = training.export_samples(cfg, dataset_location=export_root, dataset_version=EXPORT_VERSION, clip_N=16)
    training.run(cfg, wrap_samples(samples) if wrap_samples else samples, on_save=on_save)
    return capsys.readouterr().out


def train_args(export_root, tmp_path, **overrides):
    args = {'dataset_location': export_root, 'dataset_version': EXPORT_VERSION, 'B': 1, 'S': 4,
            'crop_size': '128,128', 'iters': 1, 'max_iters': 3, 'log_freq': 4, 'val_freq': 2, 'save_freq': 2,
            'num_workers': 0, 'ckpt_dir': tmp_path / 'ckpt', 'log_dir': tmp_path / 'logs', 'clip_N': 16, 'seed': 0}
    args.update(overrides)
    return [f'--{key}={value}' for key, value in args.items()]


def steps_printed(stdout):
    return [int(m.group(1)) for m in STEP_LINE.finditer(stdout)]


def saved_steps(tmp_path):
    return sorted(int(p[-13:-4]) for p in glob.glob(str(tmp_path / 'ckpt' / '*' / '*.pth')))


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


def test_sigterm_to_the_process_group_with_workers_saves_and_the_run_resumes(export_root, tmp_path, capsys):
    # as SLURM, Kubernetes and `timeout` stop a job: SIGTERM to every process of its group,
    # the DataLoader workers included
    args = train_args(export_root, tmp_path, max_iters=1000, save_freq=1000, val_freq=0, num_workers=2)
    proc = subprocess.Popen(script_command('train.py', *args), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, 'OMP_NUM_THREADS': '1'})
    for line in proc.stdout:
        if '; step 000002/1000' in line:
            os.killpg(proc.pid, signal.SIGTERM)
            break
    rest, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    (step,) = saved_steps(tmp_path)
    run = run_dir(tmp_path).name
    assert step >= 2 and f'saved a checkpoint: {run_dir(tmp_path)}/model-{step:09d}.pth' in rest
    assert stderr == f'interrupted: step {step} is saved in {run_dir(tmp_path)}; resume with --init_dir={run}\n'
    deadline = time.time() + 30
    while time.time() < deadline:  # the workers are gone too
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError('processes of the stopped run are still alive')
    out = train(export_root, tmp_path, capsys, init_dir=run, max_iters=step + 1, save_freq=1000, val_freq=0)
    assert steps_printed(out) == [step + 1]
    assert saved_steps(tmp_path) == [step, step + 1]


class StopsAtBatch:
    """A sample stream that raises ``error`` instead of its ``number``-th batch."""

    def __init__(self, stream, number, error):
        self.stream, self.left, self.error = stream, number, error

    def next(self):
        self.left -= 1
        if self.left == 0:
            raise self.error
        return self.stream.next()


@pytest.mark.parametrize('error, after_signal, raised', [
    (RuntimeError('DataLoader worker (pid 12) is killed by signal: Terminated.'), True, KeyboardInterrupt),
    (DatasetError('clips: none of the 14 clips is readable'), False, DatasetError),
])
def test_a_stop_or_an_error_in_step_3_saves_step_2_first(export_root, tmp_path, capsys, monkeypatch, error,
                                                         after_signal, raised):
    monkeypatch.setattr(interrupts, 'stop_requested', lambda: after_signal)
    with pytest.raises(raised) as stop:
        train(export_root, tmp_path, capsys, wrap_samples=lambda samples: StopsAtBatch(samples, 3, error),
              max_iters=10, save_freq=1000, val_freq=0)
    assert saved_steps(tmp_path) == [2]
    out = capsys.readouterr().out
    cause = 'interrupted' if after_signal else f'stopped by an error ({error})'
    assert f'{cause} after step 2; saving a checkpoint first' in out
    if raised is KeyboardInterrupt:  # what the CLI prints after "interrupted: "
        run = run_dir(tmp_path).name
        assert str(stop.value) == f'step 2 is saved in {run_dir(tmp_path)}; resume with --init_dir={run}'


def test_a_checkpoint_that_cannot_be_written_is_not_tried_again(export_root, tmp_path, capsys, monkeypatch):
    calls = []

    def full_disk(folder, *args, **kwargs):
        calls.append(folder)
        raise CheckpointError(f'{folder}/model-000000002.pth: cannot write the checkpoint (No space left on device)')

    monkeypatch.setattr(saverloader, 'save', full_disk)
    with pytest.raises(CheckpointError, match='No space left on device'):
        train(export_root, tmp_path, capsys, max_iters=4, save_freq=2, val_freq=0)
    assert len(calls) == 1  # no second try on the way out
    assert 'saving a checkpoint first' not in capsys.readouterr().out


@pytest.mark.parametrize('changes, message', [
    (dict(B=0), '--B must be an integer of at least 1; got 0'),
    (dict(S=1), '--S must be an integer of at least 2; got 1'),
    (dict(iters=2.5), '--iters must be an integer of at least 1; got 2.5'),
    (dict(max_iters=0), '--max_iters must be an integer of at least 1; got 0'),
    (dict(save_freq=0), '--save_freq must be an integer of at least 1; got 0'),
    (dict(log_freq=-1), '--log_freq must be an integer of at least 1; got -1'),
    (dict(keep_latest=0), '--keep_latest must be an integer of at least 1; got 0'),
    (dict(num_workers=-2), '--num_workers must be an integer of at least 0; got -2'),
    (dict(n_pool=0), '--n_pool must be an integer of at least 1; got 0'),
    (dict(crop_size=(100, 128)), '--crop_size must be two integers H,W of at least 128 and multiples of 32'),
    (dict(crop_size=384), '--crop_size must be two integers H,W'),
    (dict(lr=0.0), '--lr must be a number above 0; got 0.0'),
    (dict(use_augs='Flase'), "--use_augs must be True or False; got 'Flase'"),
    (dict(amp='fp8'), "--amp must be one of '', 'fp32', 'bf16', 'fp16'; got 'fp8'"),
    (dict(seed=-1), '--seed must be an integer of at least 0; got -1'),
])
def test_values_that_cannot_work_are_refused_when_the_settings_are_made(changes, message):
    with pytest.raises(SettingsError, match='^' + re.escape(message)):
        make_config(**changes)


def test_ignore_load_given_once_is_one_substring_not_its_letters():
    assert make_config(ignore_load='corr').ignore_load == ['corr']


@pytest.mark.parametrize('folder', ['ckpt_dir', 'log_dir'])
def test_an_unwritable_output_folder_is_found_before_step_1(tmp_path, folder):
    (tmp_path / 'file').write_text('')
    paths = {'ckpt_dir': str(tmp_path / 'ckpt'), 'log_dir': str(tmp_path / 'logs'), folder: str(tmp_path / 'file')}
    with pytest.raises(SettingsError, match=f'file: cannot write here .*--{folder} must be a writable folder'):
        training.setup(make_config(**paths), quick_settings={})


def test_temporaries_of_killed_saves_are_swept_at_setup(tmp_path):
    old_run = tmp_path / 'ckpt' / 'old_run'
    old_run.mkdir(parents=True)
    dead = old_run / '.model-000001000.pth.tmp.some-host.123'  # another host's, long untouched
    dead.write_bytes(b'half a checkpoint')
    os.utime(dead, (time.time() - 3600, time.time() - 3600))
    kept = old_run / 'model-000000500.pth'
    kept.write_bytes(b'')
    training.setup(make_config(ckpt_dir=str(tmp_path / 'ckpt'), log_dir=str(tmp_path / 'logs')), quick_settings={})
    assert os.listdir(old_run) == [kept.name]


def test_a_bad_value_is_one_line_before_any_data_is_read(tmp_path, run_script):
    out = run_script('train.py', '--save_freq=0', f'--dataset_location={tmp_path}/nowhere', f'--ckpt_dir={tmp_path}/c',
                     f'--log_dir={tmp_path}/l', cwd=tmp_path)
    assert out.returncode == 1 and out.stderr == 'error: --save_freq must be an integer of at least 1; got 0\n'
    assert os.listdir(tmp_path) == []  # nothing made, nothing read


def test_overfitting_one_cached_clip_halves_the_loss(export_root, tmp_path, capsys):
    train(export_root, tmp_path, capsys, max_iters=100, val_freq=10, save_freq=1000, cache_len=1, use_augs=False)
    (run,) = os.listdir(tmp_path / 'logs')
    events = EventAccumulator(str(tmp_path / 'logs' / run / 'v'))
    events.Reload()
    losses = [e.value for e in events.Scalars('total_loss')]  # zero-velocity validation on the cached clip
    assert len(losses) == 10
    assert min(losses[-3:]) <= 0.5 * losses[0], losses
