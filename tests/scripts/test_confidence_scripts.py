"""benchmarks/fit_confidence.py and benchmarks/bench_confidence.py end to end on tiny
procedural sets, with the golden weights."""

import json

import numpy as np
from PIL import Image

from evaluation.confidence import THRESHOLDS
from tracking.confidence import Rule

TINY = ['--n_seqs=2', '--T=10', '--H=128', '--W=128', '--N=8', '--S=4', '--iters=1']


def test_fit_prints_and_writes_the_two_rules(tmp_path, run_script, golden_checkpoint):
    out_json = tmp_path / 'fit.json'
    out = run_script('benchmarks/fit_confidence.py', f'--init_dir={golden_checkpoint}', f'--data_dir={tmp_path}',
                     f'--out_json={out_json}', *TINY)
    assert out.returncode == 0, out.stderr[-3000:]
    with open(out_json) as f:
        report = json.load(f)
    for name in ('FULL_RULE', 'LIGHT_RULE'):
        rule = Rule(**report['rules'][name])
        assert f'{name} = {rule!r}' in out.stdout  # the line to paste is the rule written
        assert rule.threshold in THRESHOLDS and np.isfinite(rule.bias)
    assert report['rules']['LIGHT_RULE']['consistency'] is None
    assert set(report['auc']) == {'appearance', 'peak', 'consistency', 'FULL_RULE', 'LIGHT_RULE'}
    assert all(0 <= value <= 1 for value in report['auc'].values())
    assert sorted(p.name for p in (tmp_path / 'fit').iterdir()) == ['seq_00000', 'seq_00001']


def test_bench_reports_the_published_protocol_beside_the_predicted_visibility(tmp_path, run_script,
                                                                              golden_checkpoint):
    out_json, plot = tmp_path / 'bench.json', tmp_path / 'calibration.png'
    out = run_script('benchmarks/bench_confidence.py', f'--init_dir={golden_checkpoint}', f'--data_dir={tmp_path}',
                     f'--out_json={out_json}', f'--plot={plot}', *TINY)
    assert out.returncode == 0, out.stderr[-3000:]
    with open(out_json) as f:
        report = json.load(f)
    published, full, light = report['visibility']
    assert published['share_visible'] == 1.0 and 0 <= full['share_visible'] <= 1
    # the position metric does not depend on the predicted visibility; the occlusion ones do
    assert published['average_pts_within_thresh'] == full['average_pts_within_thresh']
    assert published['average_pts_within_thresh'] == light['average_pts_within_thresh']
    assert published['average_jaccard'] <= published['average_pts_within_thresh']
    with Image.open(plot) as image:
        assert image.width > 100 and image.height > 100
    assert f'OA {published["occlusion_accuracy"] * 100:.1f}' in out.stdout
