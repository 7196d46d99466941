"""utils.metrics on hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from utils.metrics import (
    SimplePool,
    compute_tapvid_metrics,
    masked_median_rows,
    paper_metrics,
    tapvid_queries,
)


def tracks_with_errors(errors):
    """(trajs_e, trajs_g) of shape 1,S,N,2: truth at (100, 100), estimates off by errors S,N,2."""
    errors = torch.tensor(errors, dtype=torch.float32)[None]
    trajs_g = torch.full_like(errors, 100.0)
    return trajs_g + errors, trajs_g


def test_frame_zero_is_left_out_of_d_but_not_of_survival():
    # frame 0 is 100 px off for both points; frames 1, 2: point 0 is 0.5 px off, point 1 is 3 px off
    trajs_e, trajs_g = tracks_with_errors([[[100, 0], [100, 0]], [[0.5, 0], [3, 0]], [[0, 0.5], [0, 3]]])
    m = paper_metrics(trajs_e, trajs_g, torch.ones(1, 3, 2), H=256, W=256)
    four = 4 / (4 + 1e-6)  # the masked mean's 1e-6
    assert m['d_1'] == pytest.approx(50 * four, rel=1e-6) and m['d_2'] == pytest.approx(50 * four, rel=1e-6)
    assert m['d_4'] == m['d_8'] == m['d_16'] == pytest.approx(100 * four, rel=1e-6)
    assert m['d_avg'] == pytest.approx(80 * four, rel=1e-6)
    assert m['survival'] == 0  # both tracks fail on frame 0, so they are dead from the start
    assert m['median_l2'] == pytest.approx((0.5 + 3) / 2)  # medians of [100, .5, .5] and [100, 3, 3]


def test_survival_counts_invalid_frames_as_ok():
    # point 0 fails only on an invalid frame; point 1 fails on valid frame 1 and dies there
    trajs_e, trajs_g = tracks_with_errors([[[0, 0], [0, 0]], [[20, 0], [20, 0]], [[0, 0], [0, 0]], [[0, 0], [0, 0]]])
    valids = torch.tensor([[1, 1], [0, 1], [1, 1], [1, 1]], dtype=torch.float32)[None]
    m = paper_metrics(trajs_e, trajs_g, valids, H=256, W=256)
    assert m['survival'] == pytest.approx((4 / 4 + 1 / 4) / 2 * 100)
    # a track that fails and is close again later stays dead
    assert m['survival'] < 100


def test_distances_are_measured_at_256_by_256():
    # at 128 x 512, 2 px in x is 1 px at 256 scale, 1 px in y is 2 px
    trajs_e, trajs_g = tracks_with_errors([[[0, 0], [0, 0]], [[2, 0], [0, 1]]])
    m = paper_metrics(trajs_e, trajs_g, torch.ones(1, 2, 2), H=128, W=512)
    assert m['d_1'] == 0  # a distance of exactly 1 is not below 1
    assert m['d_2'] == pytest.approx(50, rel=1e-5)  # only the x error (1.0 < 2; 2.0 is not)
    assert m['d_4'] == pytest.approx(100, rel=1e-5)
    assert m['median_l2'] == pytest.approx((0.5 + 1.0) / 2)  # medians of [0, 1] and [0, 2]


def test_d_is_one_masked_mean_over_the_whole_batch():
    trajs_g = torch.zeros(2, 2, 4, 2)
    trajs_e = trajs_g.clone()
    trajs_e[1, 1] = 50.0  # video 1 is far off on frame 1
    valids = torch.zeros(2, 2, 4)
    valids[:, 0] = 1
    valids[0, 1, 0] = 1  # video 0: one valid pair (close)
    valids[1, 1, :3] = 1  # video 1: three valid pairs (far)
    m = paper_metrics(trajs_e, trajs_g, valids, H=256, W=256)
    assert m['d_16'] == pytest.approx(25, rel=1e-5)  # 1 of 4 pairs, not the mean of 100% and 0%


def test_nothing_valid_gives_zero_d_and_nan_median_but_no_crash():
    trajs = torch.zeros(1, 3, 2, 2)
    m = paper_metrics(trajs, trajs, torch.zeros(1, 3, 2), H=256, W=256)
    assert m['d_avg'] == 0 and m['survival'] == 100
    assert math.isnan(m['median_l2'])


def test_median_l2_drops_points_without_valid_frames_and_optionally_invalid_first():
    # point 0: valid on all frames, 1 px off; point 1: invalid at frame 0, 5 px off; point 2: never valid
    trajs_e, trajs_g = tracks_with_errors([[[1, 0], [5, 0], [9, 0]]] * 3)
    valids = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 0]], dtype=torch.float32)[None]
    assert paper_metrics(trajs_e, trajs_g, valids, 256, 256)['median_l2'] == pytest.approx(3.0)
    assert paper_metrics(trajs_e, trajs_g, valids, 256, 256, drop_invalid_first=True)['median_l2'] == pytest.approx(1.0)


def test_masked_median_matches_numpy_even_and_odd_counts():
    x = torch.tensor([[4.0, 1.0, 3.0, 2.0], [1.0, 5.0, 3.0, 100.0], [1.0, 5.0, 3.0, 100.0], [7.0, 8.0, 9.0, 1.0],
                      [float('nan'), 1.0, 2.0, 3.0], [float('nan'), 1.0, 2.0, 3.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 1, 0], [1, 1, 1, 0]])
    got = masked_median_rows(x, mask.float())
    assert got[:3].tolist() == [2.5, 3.0, 3.0]  # (2 + 3) / 2; odd counts take the middle value
    assert math.isnan(got[3])  # no entry: NaN (left out by median_l2)
    assert got[4] == 1.5  # a NaN outside the mask is ignored
    assert math.isnan(got[5])  # a NaN inside the mask makes the median NaN, as numpy's


def test_masked_median_agrees_with_numpy_on_random_rows():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 50, (300, 17)).astype(np.float32)
    mask = rng.uniform(size=(300, 17)) < 0.5
    mask[0] = False
    want = [np.median(row[m]) if m.any() else np.nan for row, m in zip(x, mask)]
    got = masked_median_rows(torch.from_numpy(x), torch.from_numpy(mask).float()).numpy()
    np.testing.assert_array_equal(got, np.array(want, dtype=np.float32))


def original_formulas(trajs_e, trajs_g, valids, H, W):
    """The SPEC's definitions written out loop by loop, as an independent reference."""
    scale = np.array([W / 256, H / 256], np.float32)
    dists = np.linalg.norm(trajs_e / scale - trajs_g / scale, axis=-1)  # B,S,N
    out = {}
    for thr in (1, 2, 4, 8, 16):
        hits = (dists[:, 1:] < thr) * valids[:, 1:]
        out[f'd_{thr}'] = hits.sum() / (1e-6 + valids[:, 1:].sum()) * 100
    alive = np.cumprod(1 - (dists > 16) * valids, axis=1)
    out['survival'] = alive.mean() * 100
    medians = [np.median(dists[b, :, n][valids[b, :, n] > 0]) for b in range(dists.shape[0])
               for n in range(dists.shape[2]) if valids[b, :, n].sum() > 0]
    out['median_l2'] = np.mean(medians)
    return out


def test_paper_metrics_match_the_definitions_on_random_tracks():
    rng = np.random.default_rng(1)
    trajs_g = rng.uniform(0, 400, (2, 9, 7, 2)).astype(np.float32)
    trajs_e = trajs_g + rng.normal(0, 6, trajs_g.shape).astype(np.float32)
    valids = (rng.uniform(size=(2, 9, 7)) < 0.8).astype(np.float32)
    got = paper_metrics(torch.from_numpy(trajs_e), torch.from_numpy(trajs_g), torch.from_numpy(valids), 320, 448)
    want = original_formulas(trajs_e, trajs_g, valids, 320, 448)
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-5, abs=1e-5), key
    assert set(got) == {'d_1', 'd_2', 'd_4', 'd_8', 'd_16', 'd_avg', 'survival', 'median_l2'}


def one_query(T, frame, gt_occluded, pred_occluded, errors):
    """compute_tapvid_metrics inputs for one video with one query at ``frame``; the truth
    sits at (50, 50) and the predictions are off by ``errors`` (T values, in x)."""
    gt = np.full((1, 1, T, 2), 50.0)
    pred = gt.copy()
    pred[0, 0, :, 0] += errors
    return (np.array([[[frame, 50.0, 50.0]]]), np.array(gt_occluded)[None, None], gt,
            np.array(pred_occluded)[None, None], pred)


def test_tapvid_first_scores_frames_after_the_query_strided_all_but_the_query():
    args = one_query(4, 1, [False] * 4, [False] * 4, [0.0, 100.0, 0.0, 100.0])
    first = compute_tapvid_metrics(*args, query_mode='first')  # frames 2, 3
    strided = compute_tapvid_metrics(*args, query_mode='strided')  # frames 0, 2, 3
    assert first['pts_within_16'].tolist() == [0.5]
    assert strided['pts_within_16'].tolist() == pytest.approx([2 / 3])
    assert first['average_pts_within_thresh'].shape == (1,)


def test_tapvid_jaccard_counts_occlusion_predictions():
    # query at frame 0 ('first': frames 1..4 scored); truth occluded on frames 3, 4
    # frame 1: visible, predicted visible, 3 px off (a true positive from thr 4 up, else a false positive)
    # frame 2: visible, predicted occluded, exact (counts for pts_within; no TP, no FP)
    # frame 3: occluded, predicted visible (a false positive); frame 4: occluded, predicted occluded
    args = one_query(5, 0, [False, False, False, True, True], [False, False, True, False, True],
                     [0.0, 3.0, 0.0, 0.0, 0.0])
    m = compute_tapvid_metrics(*args, query_mode='first')
    assert m['occlusion_accuracy'].tolist() == [0.5]
    assert [m[f'jaccard_{t}'][0] for t in (1, 2, 4, 8, 16)] == pytest.approx([0, 0, 1 / 3, 1 / 3, 1 / 3])
    assert [m[f'pts_within_{t}'][0] for t in (1, 2, 4, 8, 16)] == pytest.approx([0.5, 0.5, 1, 1, 1])
    assert m['average_jaccard'][0] == pytest.approx(0.2)
    assert m['average_pts_within_thresh'][0] == pytest.approx(0.8)


def test_tapvid_thresholds_are_strict_and_metrics_are_per_video():
    T = 3
    query_points = np.zeros((2, 1, 3))
    gt = np.zeros((2, 1, T, 2))
    pred = gt.copy()
    pred[0, 0, 1:, 0] = 4.0  # video 0: exactly 4 px off: not within 4
    pred[1, 0, 1:, 1] = 3.9  # video 1: within 4
    occluded = np.zeros((2, 1, T), bool)
    pred_occluded = occluded.copy()
    pred_occluded[1, 0, 1] = True  # video 1 gets one occlusion flag wrong
    m = compute_tapvid_metrics(query_points, occluded, gt, pred_occluded, pred, 'first')
    assert m['pts_within_4'].tolist() == [0.0, 1.0] and m['pts_within_8'].tolist() == [1.0, 1.0]
    assert m['occlusion_accuracy'].tolist() == [1.0, 0.5]
    with pytest.raises(ValueError, match='query_mode'):
        compute_tapvid_metrics(query_points, occluded, gt, pred_occluded, pred, 'last')


def test_tapvid_queries_first_and_strided():
    T = 11
    points = np.stack(np.meshgrid(np.arange(T), np.arange(3)), axis=-1).astype(np.float64)  # N,T,2: x=t, y=n
    occluded = np.zeros((3, T), bool)
    occluded[0, :2] = True  # track 0 first visible at frame 2
    occluded[1] = True  # track 1 never visible
    occluded[2, 5] = True  # track 2 hidden on frame 5
    queries, index = tapvid_queries(points, occluded, 'first')
    assert index.tolist() == [0, 2]
    assert queries.tolist() == [[2, 0, 2], [0, 2, 0]]  # [t, y, x]
    queries, index = tapvid_queries(points, occluded, 'strided')  # frames 0, 5, 10, by frame then track
    assert index.tolist() == [2, 0, 0, 2]
    assert queries[:, 0].tolist() == [0, 5, 10, 10]
    assert tapvid_queries(points, np.ones((3, T), bool), 'first')[0].shape == (0, 3)


def test_simple_pool_keeps_the_last_n_and_skips_nan():
    pool = SimplePool(3)
    assert math.isnan(pool.mean())
    pool.update([1.0, float('nan'), 5.0])
    assert pool.mean() == 3.0
    pool.update([7.0, 9.0])  # 1 and NaN fall out
    assert len(pool) == 3 and pool.mean() == 7.0
    assert pool.sample() in (5.0, 7.0, 9.0)
