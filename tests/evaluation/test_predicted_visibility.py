"""TAP-Vid metrics of the predicted visibility: new keys next to the published ones, which
stay exactly as they were."""

import json
import os

import numpy as np
import pytest

from evaluation.benchmarks import RunSettings, evaluate_tap, tapvid_scores
from evaluation.scoring import OCCLUSION_METRICS, PREDVIS_METRICS, TAPVID_METRICS
from tests.golden import DATA
from tracking import BENCHMARK
from utils.metrics import compute_tapvid_metrics

TAPVID_DEV = os.path.join(DATA, 'tapvid_dev')


def test_predicted_visibility_metrics_are_the_tapvid_metrics_of_that_visibility():
    rng = np.random.default_rng(0)
    N, T = 5, 9
    query_points = np.stack([rng.integers(0, 3, N), rng.uniform(0, 255, N), rng.uniform(0, 255, N)], axis=1)
    gt_points = rng.uniform(0, 255, (N, T, 2))
    gt_occluded = rng.random((N, T)) < 0.3
    pred_tracks = gt_points + rng.normal(0, 6, (N, T, 2))
    pred_visible = rng.random((N, T)) < 0.7
    scores = tapvid_scores(query_points, gt_points, gt_occluded, pred_tracks, 'first', pred_visible)
    assert scores == tapvid_scores(query_points, gt_points, gt_occluded, pred_tracks, 'first', None) | {
        key: scores[key] for key in PREDVIS_METRICS}
    predicted = compute_tapvid_metrics(query_points[None], gt_occluded[None], gt_points[None], ~pred_visible[None],
                                       pred_tracks[None], 'first')
    for name, key in zip(PREDVIS_METRICS, OCCLUSION_METRICS):
        assert scores[name] == pytest.approx(float(predicted[key][0]))


@pytest.mark.parametrize('query_mode', ['first', 'tapvid_strided'])
def test_confidence_adds_metrics_and_changes_none_of_the_published_ones(tmp_path, golden_checkpoint, query_mode):
    means = {}
    for confidence in (False, True):
        out_json = tmp_path / f'{confidence}.json'
        run = RunSettings(init_dir=golden_checkpoint, log_dir=str(tmp_path / 'logs'), out_json=str(out_json))
        evaluate_tap(dataset_location=TAPVID_DEV, query_mode=query_mode, run=run,
                     options=BENCHMARK.replace(S=8, iters=1, image_size=(128, 128), confidence=confidence))
        means[confidence] = json.loads(out_json.read_text())['mean']
    assert set(means[True]) == set(means[False]) | set(PREDVIS_METRICS)
    assert {key: means[True][key] for key in means[False]} == means[False]
    assert set(TAPVID_METRICS) <= set(means[False])
    assert all(0 <= means[True][key] <= 1 for key in PREDVIS_METRICS)
