"""export_mp4_dataset.py in parallel and after a kill, and ExportDataset reading it back."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from datasets.common import DatasetError
from datasets.exportdataset import ExportDataset
from tests.fixtures.pointodyssey import write_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VERSION = 'ae_8_16_128x128'


@pytest.fixture(scope='module')
def pod(tmp_path_factory):
    folder = tmp_path_factory.mktemp('pod')
    write_dataset(str(folder), dset='train', n_seqs=1, T=24, H=180, W=256, N=400, seed=5)
    return str(folder)


def export_cmd(pod, out_dir, seed):
    return [sys.executable, os.path.join(ROOT, 'export_mp4_dataset.py'), f'--dataset_location={pod}',
            f'--out_dir={out_dir}', '--S=8', '--N=16', '--crop_size=128,128', '--use_augs=False', f'--seed={seed}']


def finished_steps(export_dir):
    """{step: 'clip' | 'skipped'}; fails on leftovers (locks, temporary folders)."""
    states = {}
    for name in os.listdir(export_dir):
        if re.fullmatch(r'\d{6}', name):
            states[int(name)] = 'clip'
        elif re.fullmatch(r'\.\d{6}\.skipped', name):
            states[int(name[1:7])] = 'skipped'
        else:
            raise AssertionError(f'leftover {name}')
    return states


def clips_written(export_dir):
    return export_dir.exists() and any(name.isdigit() for name in os.listdir(export_dir))


def n_clips(pod):
    T, S = 24, 8
    return sum(len(range(0, T - (S - 1) * stride, 2)) for stride in (1, 2, 4))


def test_three_processes_write_each_clip_once(pod, tmp_path):
    procs = [subprocess.Popen(export_cmd(pod, tmp_path, seed), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for seed in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outputs]
    states = finished_steps(tmp_path / VERSION)
    assert sorted(states) == list(range(n_clips(pod)))
    written = [int(s) for out, _ in outputs for s in re.findall(r'this_step (\d+)', out)]
    assert sorted(written) == sorted(s for s, state in states.items() if state == 'clip')  # each exactly once
    assert re.search(rf'{VERSION}; step \d{{6}}/\d+; this_step \d{{6}}; itime \d+\.\d\d', outputs[0][0] + outputs[1][0])
    dataset = ExportDataset(str(tmp_path), VERSION, S=8, N=16, crop_size=(128, 128))
    for i in range(len(dataset)):
        sample = dataset[i]
        assert sample['rgbs'].shape == (8, 3, 128, 128) and sample['rgbs'].dtype == torch.uint8
        assert sample['track_g'].shape == (8, 16, 4)


def test_killed_run_is_completed_by_a_rerun(pod, tmp_path):
    proc = subprocess.Popen(export_cmd(pod, tmp_path, 0), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    export_dir = tmp_path / VERSION
    deadline = time.time() + 120
    while time.time() < deadline and not clips_written(export_dir):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # also leave what a kill in the middle of a clip leaves: a lock and a temporary folder of a dead process
    dead = subprocess.Popen(['true'])
    dead.wait()
    host = os.uname().nodename
    (export_dir / f'.tmp_000003_{host}_{dead.pid}').mkdir(exist_ok=True)
    if not (export_dir / '000003').exists():
        (export_dir / '.000003.lock').write_text(f'{host} {dead.pid} 0\n')
    out = subprocess.run(export_cmd(pod, tmp_path, 1), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert sorted(finished_steps(export_dir)) == list(range(n_clips(pod)))


def test_export_dataset_skips_a_corrupt_clip(pod, tmp_path, capsys):
    subprocess.run(export_cmd(pod, tmp_path, 0), cwd=ROOT, check=True, capture_output=True)
    export_dir = tmp_path / VERSION
    clips = sorted(n for n in os.listdir(export_dir) if n.isdigit())
    bad = export_dir / clips[1] / 'rgb.mp4'
    bad.write_bytes(bad.read_bytes()[:200])
    dataset = ExportDataset(str(tmp_path), VERSION, S=8, N=16, crop_size=(96, 128), use_augs=True)
    sample = dataset[1]
    assert sample['rgbs'].shape == (8, 3, 96, 128)
    assert str(bad.parent) in capsys.readouterr().err
    track = sample['track_g'].numpy()
    usable = track[0, :, 2] * track[0, :, 3] > 0
    assert usable.any() and (track[0, usable, 0] >= 1).all() and (track[0, usable, 0] <= 126).all()
    assert np.isfinite(track).all()


def test_export_dataset_errors(tmp_path):
    with pytest.raises(DatasetError, match='no exported clips'):
        ExportDataset(str(tmp_path), VERSION)
