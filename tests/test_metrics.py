"""Metrics against hand-computed cases."""

import numpy as np
import pytest
import torch

from utils.metrics import SimplePool, compute_tapvid_metrics, paper_metrics, tapvid_queries


def as_batch(array):
    return torch.tensor(array, dtype=torch.float32)[None]


def test_frame_zero_is_excluded_from_d():
    # 3 frames, 1 point at 256x256; frame 0 is 100 px off, frames 1, 2 are 0.5 and 3 px off
    trajs_g = np.zeros((3, 1, 2))
    trajs_e = np.array([[[100.0, 0]], [[0.5, 0]], [[3.0, 0]]])
    m = paper_metrics(as_batch(trajs_e), as_batch(trajs_g), torch.ones(1, 3, 1), 256, 256)
    assert m['d_1'] == pytest.approx(50.0, abs=1e-3)
    assert m['d_2'] == pytest.approx(50.0, abs=1e-3)
    assert m['d_4'] == pytest.approx(100.0, abs=1e-3)
    assert m['d_avg'] == pytest.approx((50 + 50 + 100 + 100 + 100) / 5, abs=1e-3)


def test_distances_scaled_to_256_with_non_square_frames():
    # at 512 x 1024 (H x W) a 4 px error in x is 1 px at 256 scale, in y it is 2 px
    trajs_g = np.zeros((2, 2, 2))
    trajs_e = np.array([[[0, 0], [0, 0]], [[4.0, 0], [0, 4.0]]])
    m = paper_metrics(as_batch(trajs_e), as_batch(trajs_g), torch.ones(1, 2, 2), 512, 1024)
    assert m['d_1'] == pytest.approx(0.0, abs=1e-3)  # 1.0 and 2.0 are not < 1
    assert m['d_2'] == pytest.approx(50.0, abs=1e-3)  # only the x error is < 2
    assert m['median_l2'] == pytest.approx((0.5 + 1.0) / 2)  # medians of (0, 1) and (0, 2)


def test_survival_rule_with_invalid_frames():
    # one point, 4 frames: fine, far but invalid (counts as fine), far and valid (dies), fine
    trajs_g = np.zeros((4, 1, 2))
    trajs_e = np.array([[[0, 0]], [[50.0, 0]], [[50.0, 0]], [[0, 0]]])
    valids = torch.tensor([[[1.0], [0.0], [1.0], [1.0]]])
    m = paper_metrics(as_batch(trajs_e), as_batch(trajs_g), valids, 256, 256)
    assert m['survival'] == pytest.approx(50.0)  # alive at frames 0 and 1, dead from frame 2 on
    # d counts valid frames 2, 3 only: one of two within every threshold
    assert m['d_16'] == pytest.approx(50.0, abs=1e-3)


def test_median_l2_even_count_and_points_without_valid_frames():
    trajs_g = np.zeros((4, 2, 2))
    trajs_e = np.zeros((4, 2, 2))
    trajs_e[:, 0, 0] = [0, 1, 3, 10]
    valids = torch.tensor([[[1.0, 0.0]] * 4])  # point 1 is never valid
    m = paper_metrics(as_batch(trajs_e), as_batch(trajs_g), valids, 256, 256)
    assert m['median_l2'] == pytest.approx(2.0)  # median of 0, 1, 3, 10; point 1 left out
    valids[0, 0, 0] = 0  # training drops points invalid at frame 0
    m = paper_metrics(as_batch(trajs_e), as_batch(trajs_g), valids, 256, 256, drop_invalid_first=True)
    assert np.isnan(m['median_l2'])


def tapvid_case():
    # 1 video, 2 tracks, 4 frames, tracks in 256 px
    gt_tracks = np.zeros((1, 2, 4, 2))
    pred_tracks = np.zeros((1, 2, 4, 2))
    pred_tracks[0, 0, :, 0] = [0, 0.5, 3, 20]  # errors per frame for track 0
    pred_tracks[0, 1, :, 0] = [0, 0, 0, 0]
    gt_occluded = np.array([[[False, False, False, False], [True, False, False, True]]])
    return gt_tracks, pred_tracks, gt_occluded


def test_tapvid_first_counts_frames_after_the_query():
    gt_tracks, pred_tracks, gt_occluded = tapvid_case()
    query_points = np.array([[[0, 0, 0], [1, 0, 0]]], dtype=np.float64)  # track 1 queried at frame 1
    pred_occluded = np.zeros_like(gt_occluded)
    m = compute_tapvid_metrics(query_points, gt_occluded, gt_tracks, pred_occluded, pred_tracks, 'first')
    # evaluated: track 0 frames 1,2,3 (visible); track 1 frames 2 (visible), 3 (occluded)
    # visible evaluated: 4; within 1 px: frames 0/1 (0.5) and 1/2 (0) -> 2/4
    assert m['pts_within_1'][0] == pytest.approx(0.5)
    assert m['pts_within_4'][0] == pytest.approx(0.75)
    assert m['pts_within_16'][0] == pytest.approx(0.75)
    # jaccard at 1: TP 2; FP: predicted visible but occluded (track 1 frame 3) or too far (0/2, 0/3) -> 3
    assert m['jaccard_1'][0] == pytest.approx(2 / (4 + 3))
    assert m['occlusion_accuracy'][0] == pytest.approx(4 / 5)
    expected_avg = np.mean([0.5, 0.5, 0.75, 0.75, 0.75])
    assert m['average_pts_within_thresh'][0] == pytest.approx(expected_avg)


def test_tapvid_strided_counts_all_frames_but_the_query():
    gt_tracks, pred_tracks, gt_occluded = tapvid_case()
    query_points = np.array([[[2, 0, 0], [1, 0, 0]]], dtype=np.float64)
    pred_occluded = gt_occluded.copy()  # perfect occlusion predictions
    m = compute_tapvid_metrics(query_points, gt_occluded, gt_tracks, pred_occluded, pred_tracks, 'strided')
    # track 0 evaluated at frames 0, 1, 3 (errors 0, 0.5, 20); track 1 at 0, 2, 3 -> visible only frame 2
    assert m['pts_within_1'][0] == pytest.approx(3 / 4)
    assert m['occlusion_accuracy'][0] == pytest.approx(1.0)
    assert m['jaccard_1'][0] == pytest.approx(3 / (4 + 1))  # the 20 px miss is a false positive


def test_tapvid_queries_first_and_strided():
    points = np.arange(2 * 12 * 2, dtype=np.float64).reshape(2, 12, 2)
    occluded = np.zeros((2, 12), dtype=bool)
    occluded[0, :3] = True
    occluded[1, 5] = True
    q, idx = tapvid_queries(points, occluded, 'first')
    np.testing.assert_array_equal(idx, [0, 1])
    np.testing.assert_array_equal(q[:, 0], [3, 0])
    np.testing.assert_array_equal(q[0, 1:], [points[0, 3, 1], points[0, 3, 0]])  # [t, y, x]
    q, idx = tapvid_queries(points, occluded, 'strided')
    np.testing.assert_array_equal(q[:, 0], [5, 10, 0, 10])
    np.testing.assert_array_equal(idx, [0, 0, 1, 1])


def test_pool_keeps_the_last_items_and_ignores_nan():
    pool = SimplePool(3)
    assert np.isnan(pool.mean())
    pool.update([1.0, 2.0, float('nan'), 4.0, 6.0])
    assert len(pool) == 3
    assert pool.mean() == pytest.approx(5.0)
    assert pool.sample() in pool.items
