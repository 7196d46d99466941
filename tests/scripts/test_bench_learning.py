"""benchmarks/bench_learning.py end to end at a tiny budget: the files it writes, and figures
that are the evaluation code's own for the same checkpoints and baselines."""

import json
import re

import pytest
import torch
from PIL import Image

from evaluation.benchmarks import RunSettings, evaluate_pod
from tracking import BENCHMARK

TINY = dict(train_seqs=2, heldout_seqs=1, T=12, heldout_T=10, H=128, W=128, track_N=200, steps=2, evals=2, B=1, S=4,
            N=8, iters=1, crop_size='128,128', use_augs=False, eval_S=4, eval_iters=1, eval_N=8, num_workers=0,
            amp='', seed=3)


def bench_args(out_dir, **changes):
    return [f'--{key}={value}' for key, value in dict(TINY, out_dir=out_dir, **changes).items()]


def test_tiny_run_writes_the_curve_and_the_evaluation_codes_figures(tmp_path, run_script, one_thread):
    out = run_script('benchmarks/bench_learning.py', *bench_args(tmp_path))
    assert out.returncode == 0, out.stderr[-3000:]
    with open(tmp_path / 'learning.json') as f:
        report = json.load(f)
    curve = report['curve']
    assert [point['step'] for point in curve] == [1, 2] and 0 < curve[0]['minutes'] <= curve[1]['minutes']
    assert report['final'] == curve[-1] and report['settings']['steps'] == 2
    with Image.open(tmp_path / 'learning.png') as image:
        assert image.size == (800, 288)

    options = BENCHMARK.replace(S=4, iters=1, image_size=(128, 128))

    def evaluate(name, **kwargs):
        run = RunSettings(init_dir=kwargs.pop('init_dir', ''), log_dir=str(tmp_path / 'check'),
                          out_json=str(tmp_path / 'check' / f'{name}.json'))
        return evaluate_pod(dataset_location=str(tmp_path / 'data'), N=8, options=options, run=run, **kwargs)

    assert report['baselines']['zero_motion'] == evaluate('zero', zero_motion=True)
    torch.manual_seed(3)  # the untrained weights are drawn from --seed
    assert report['baselines']['untrained'] == evaluate('untrained')
    bench_only = ('step', 'minutes', 'cpu_minutes', 'load')  # when, not what, the checkpoint scored
    final = {key: value for key, value in report['final'].items() if key not in bench_only}
    assert final == evaluate('final', init_dir=report['checkpoint_dir'])  # the newest checkpoint, step 2
    assert f'trained: d_avg {final["d_avg"]:6.2f}' in out.stdout


BAD_BUDGETS = [(dict(evals=0), '--evals must be an integer of at least 1; got 0'),
               (dict(steps=2, evals=3), r'--steps \(2\) must be at least --evals \(3\)'),
               (dict(steps=0, minutes=0), r'--minutes \(of training, without --steps\) must be a number above 0'),
               (dict(B=0), '--B must be an integer of at least 1; got 0'),
               (dict(threads=-1), '--threads must be an integer of at least 0; got -1')]


@pytest.mark.parametrize('changes, message', BAD_BUDGETS)
def test_bad_budget_is_one_line(tmp_path, run_script, changes, message):
    out = run_script('benchmarks/bench_learning.py', *bench_args(tmp_path, **changes))
    assert out.returncode == 1
    assert out.stderr.strip().startswith('error: ') and len(out.stderr.strip().splitlines()) == 1
    assert re.search(message, out.stderr)
    assert not (tmp_path / 'data').exists()  # refused before any data is made
