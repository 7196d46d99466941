"""The benchmark loop's accounting, with scoring functions that stand in for tracking: a metric
undefined for a video (NaN), a video that fails, a video skipped, and nothing scored. The
loop runs in this process as the test scripts run it."""

import json

import numpy as np
import pytest

from datasets.common import DatasetError
from evaluation.loop import VideosFailed, run_benchmark
from evaluation.plots import track_curves
from evaluation.scoring import SkipVideo
from utils.distributed import Ranks

CURVES = track_curves(np.ones((3, 2)), np.ones((3, 2)), np.zeros(2, np.int64))
SAMPLES = [{'name': name} for name in ('a', 'b', 'c', 'd')]


def score(model, sample, sw, broken=('c',)):
    """a: median_l2 undefined; b: scored; c: its frame file is unreadable (while broken); d: skipped."""
    name = sample['name']
    if name in broken:
        raise DatasetError(f'{name}/rgb_00003.jpg: missing or not a readable image')
    if name == 'd':
        raise SkipVideo('no point is visible at frame 0')
    return {'a': {'d_avg': 50.0, 'median_l2': float('nan')}, 'b': {'d_avg': 70.0, 'median_l2': 10.0},
            'c': {'d_avg': 90.0, 'median_l2': 20.0}}[name], CURVES


def benchmark(tmp_path, score, resume=False, samples=SAMPLES):
    return run_benchmark(samples=samples, score=score, model=None, run_name='run', config={'S': 8}, ranks=Ranks(),
                         log_dir=str(tmp_path / 'logs'), out_json=str(tmp_path / 'out.json'), resume=resume,
                         metric_names=['d_avg', 'median_l2'], line=[('d_x', 'd_avg')])


def strict_json(text):
    def refuse(constant):
        raise AssertionError(f'{constant} is not JSON')
    return json.loads(text, parse_constant=refuse)


def test_failed_videos_are_reported_kept_out_and_retried_by_resume(tmp_path, capsys):
    with pytest.raises(VideosFailed, match=r'^1 of 4 videos failed \(first: c: c/rgb_00003\.jpg: missing or not a '
                                           r'readable image\); they are not in .*out\.jsonl, so --resume=True '
                                           r'retries them$'):
        benchmark(tmp_path, score)
    out = capsys.readouterr().out
    assert 'failed c: c/rgb_00003.jpg: missing or not a readable image' in out
    assert '2 videos scored, 1 skipped, 1 failed' in out
    result = strict_json((tmp_path / 'out.json').read_text())
    assert result['failed'] == [{'name': 'c', 'reason': 'c/rgb_00003.jpg: missing or not a readable image'}]
    assert [r.get('name') for r in map(strict_json, (tmp_path / 'out.jsonl').read_text().splitlines())] == \
        [None, 'a', 'b', 'd']  # the settings line, then every video but the failed one
    means = benchmark(tmp_path, lambda model, sample, sw: score(model, sample, sw, broken=()), resume=True)
    out = capsys.readouterr().out
    assert 'resuming: 3 of 4 videos already scored' in out and out.count('; step ') == 1
    assert '; step 000003/4; ' in out
    assert means == {'d_avg': 70.0, 'median_l2': 15.0}
    assert strict_json((tmp_path / 'out.json').read_text())['failed'] == []


def test_an_undefined_metric_is_null_left_out_of_its_mean_and_named(tmp_path, capsys):
    with pytest.raises(VideosFailed):
        benchmark(tmp_path, score)
    out = capsys.readouterr().out
    assert 'median_l2 is undefined (null) for 1 of 2 videos (a); its mean is over the other 1' in out
    result = strict_json((tmp_path / 'out.json').read_text())
    assert result['mean'] == {'d_avg': 60.0, 'median_l2': 10.0}
    assert result['undefined'] == {'median_l2': ['a']}
    assert result['per_video'][0] == {'name': 'a', 'd_avg': 50.0, 'median_l2': None}
    for line in (tmp_path / 'out.jsonl').read_text().splitlines():
        strict_json(line)  # the results file is valid JSON too


def test_a_run_that_scores_no_video_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match=r'^none of the 1 videos could be scored \(each was skipped, see above\)$'):
        benchmark(tmp_path, score, samples=[{'name': 'd'}])
    assert strict_json((tmp_path / 'out.json').read_text())['skipped'][0]['name'] == 'd'


class UnreadableSecond(list):
    """Samples whose second video cannot be read at all (its name unknown)."""

    def __getitem__(self, index):
        if index == 1:
            raise DatasetError('b/anno.npz: cannot read the annotations (File is not a zip file)')
        return super().__getitem__(index)


def test_a_video_that_cannot_be_read_is_reported_by_its_index_and_kept_out(tmp_path, capsys):
    with pytest.raises(VideosFailed, match=r'^1 of 4 videos failed \(first: video 1: b/anno\.npz: cannot read'):
        benchmark(tmp_path, lambda model, sample, sw: score(model, sample, sw, broken=()),
                  samples=UnreadableSecond(SAMPLES))
    assert 'failed video 1: b/anno.npz: cannot read the annotations' in capsys.readouterr().out
    assert [r.get('name') for r in map(strict_json, (tmp_path / 'out.jsonl').read_text().splitlines())] == \
        [None, 'a', 'c', 'd']
