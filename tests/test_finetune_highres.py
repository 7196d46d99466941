"""finetune_highres.py on a PointOdyssey-format fixture: the original's defaults, steps,
checkpoints and resume."""

import inspect
import os
import subprocess
import sys

import pytest
import torch

import finetune_highres
from tests.fixtures.pointodyssey import write_dataset
from tests.test_train import ROOT, steps_printed


@pytest.fixture(scope='module')
def pod_root(tmp_path_factory):
    folder = tmp_path_factory.mktemp('finetune_data')
    write_dataset(str(folder), dset='train', n_seqs=1, T=20, H=180, W=256, N=300, seed=3)
    return str(folder)


def run_finetune(pod_root, tmp_path, **overrides):
    args = {'dataset_location': pod_root, 'B': 1, 'crop_size': '128,128', 'S': 8, 'N': 8, 'iters': 1, 'max_iters': 2,
            'save_freq': 1, 'num_workers': 0, 'ckpt_dir': tmp_path / 'ckpt', 'log_dir': tmp_path / 'logs', 'seed': 0}
    args.update(overrides)
    command = [sys.executable, os.path.join(ROOT, 'finetune_highres.py')] + [f'--{k}={v}' for k, v in args.items()]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'})


def test_defaults_are_the_originals():
    defaults = {name: p.default for name, p in inspect.signature(finetune_highres.main).parameters.items()}
    assert {key: defaults[key] for key in ('B', 'S', 'N', 'iters', 'crop_size', 'val_freq', 'log_dir')} == {
        'B': 2, 'S': 38, 'N': 64, 'iters': 4, 'crop_size': (512, 896), 'val_freq': 0,
        'log_dir': './logs_finetune_highres'}
    assert finetune_highres.CLIP_GRAD == 1.0 and finetune_highres.STRIDES == (1, 2)


def test_trains_saves_and_resumes_on_raw_frames(pod_root, tmp_path):
    out = run_finetune(pod_root, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert steps_printed(out.stdout) == [1, 2]
    (run,) = os.listdir(tmp_path / 'ckpt')
    assert run.startswith('1_8_8_i1_5e-4s_A_ac00_')
    assert sorted(os.listdir(tmp_path / 'ckpt' / run)) == ['model-000000001.pth', 'model-000000002.pth']
    assert os.listdir(tmp_path / 'logs' / run) == ['t']  # no validation by default

    out = run_finetune(pod_root, tmp_path, init_dir=run, max_iters=3)
    assert out.returncode == 0, out.stderr[-2000:]
    assert steps_printed(out.stdout) == [3]
    (resumed,) = set(os.listdir(tmp_path / 'ckpt')) - {run}
    optimizer = torch.load(tmp_path / 'ckpt' / resumed / 'model-000000003.pth', weights_only=True)
    assert int(optimizer['optimizer_state_dict']['state'][0]['step']) == 3


def test_missing_data_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        finetune_highres.main(dataset_location=str(tmp_path / 'nowhere'), crop_size=(128, 128), device='cpu')
    assert info.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [f'error: {tmp_path / "nowhere" / "train"}: '
                                                            'no sequence folders here']
