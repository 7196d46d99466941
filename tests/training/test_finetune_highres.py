"""finetune_highres.py on a PointOdyssey-format fixture: the original's defaults, steps,
checkpoints and resume."""

import ast
import os
import re

import pytest
import torch

import training
from datasets.common import DatasetError
from tests.fixtures.pointodyssey import write_dataset
from tests.fixtures.scripts import ROOT
from tests.fixtures.training import make_config

STEP = re.compile(r'; step (\d{6})/\d+; rtime ')


@pytest.fixture(scope='module')
def pod_root(tmp_path_factory):
    folder = tmp_path_factory.mktemp('finetune_data')
    write_dataset(str(folder), dset='train', n_seqs=1, T=20, H=180, W=256, N=300, seed=3)
    return str(folder)


def finetune(pod_root, tmp_path, capsys, **changes):
    """training.run on raw frames in this process, as finetune_highres.py runs it; returns what
    it printed."""
    capsys.readouterr()
    settings = dict(B=1, S=8, N=8, iters=1, max_iters=2, save_freq=1, val_freq=0, exp_name='ac00', clip_grad=1.0,
                    ckpt_dir=str(tmp_path / 'ckpt'), log_dir=str(tmp_path / 'logs'))
    cfg = training.setup(make_config(**{**settings, **changes}), quick_settings={})
    training.run(cfg, training.raw_samples(cfg, dataset_location=pod_root))
    return capsys.readouterr().out


def steps_printed(out):
    return [int(step) for step in STEP.findall(out)]


def script_defaults(script):
    """{argument: default} of a script's main, read from its source (scripts are not imported)."""
    with open(os.path.join(ROOT, script)) as f:
        tree = ast.parse(f.read())
    main = next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == 'main')
    names = [a.arg for a in main.args.args][-len(main.args.defaults):]
    constants = {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                 and isinstance(node.value, ast.Constant)}
    return {name: ast.literal_eval(value) for name, value in zip(names, main.args.defaults)}, constants


def test_defaults_are_the_originals():
    defaults, constants = script_defaults('finetune_highres.py')
    assert {key: defaults[key] for key in ('B', 'S', 'N', 'iters', 'crop_size', 'val_freq', 'log_dir')} == {
        'B': 2, 'S': 38, 'N': 64, 'iters': 4, 'crop_size': (512, 896), 'val_freq': 0,
        'log_dir': './logs_finetune_highres'}
    assert constants['CLIP_GRAD'] == 1.0 and training.data.FINETUNE_STRIDES == (1, 2)


def test_trains_saves_and_resumes_on_raw_frames(pod_root, tmp_path, capsys):
    out = finetune(pod_root, tmp_path, capsys)
    assert steps_printed(out) == [1, 2]
    (run,) = os.listdir(tmp_path / 'ckpt')
    assert run.startswith('1_8_8_i1_5e-4s_A_ac00_')
    assert sorted(os.listdir(tmp_path / 'ckpt' / run)) == ['model-000000001.pth', 'model-000000002.pth']
    assert os.listdir(tmp_path / 'logs' / run) == ['t']  # no validation by default

    out = finetune(pod_root, tmp_path, capsys, init_dir=run, max_iters=3)
    assert steps_printed(out) == [3]
    (resumed,) = set(os.listdir(tmp_path / 'ckpt')) - {run}
    optimizer = torch.load(tmp_path / 'ckpt' / resumed / 'model-000000003.pth', weights_only=True)
    assert int(optimizer['optimizer_state_dict']['state'][0]['step']) == 3


def test_missing_data_is_one_line(tmp_path, run_script, capsys):
    out = run_script('finetune_highres.py', f'--dataset_location={tmp_path / "nowhere"}', '--crop_size=128,128',
                     '--device=cpu', cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr == f'error: {tmp_path / "nowhere" / "train"}: no sequence folders here\n'
    with pytest.raises(DatasetError, match='no sequence folders here'):
        finetune(str(tmp_path / 'nowhere'), tmp_path, capsys)
