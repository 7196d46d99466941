"""Long-video tracking: the original window schedule, streaming, any-frame queries."""

import weakref

import numpy as np
import pytest
import torch

from tests.fixtures.videos import moving_video
from tracking import BENCHMARK, track_points


def reference_loop(model, video, xy0, S_max, iters):
    """The original evaluation loop, written plainly over the whole video in memory."""
    rgbs = torch.from_numpy(video).permute(0, 3, 1, 2).float()[None]  # 1,T,3,H,W
    T = rgbs.shape[1]
    trajs_e = torch.from_numpy(xy0).float()[None, None].repeat(1, T, 1, 1)
    cur, feat_init = 0, None
    while True:
        end = cur + S_max
        if end > T:
            cur, end = max(cur - (end - T), 0), T
        feats = None if feat_init is None else [f[:, :end - cur] for f in feat_init]
        with torch.no_grad():
            preds, _, feat_init, _ = model(trajs_e[:, cur:end], rgbs[:, cur:end], iters=iters,
                                           feat_init=feats)
        trajs_e[:, cur:end] = preds[-1]
        trajs_e[:, end:] = trajs_e[:, end - 1:end]
        if end >= T:
            return trajs_e[0].numpy()
        cur = cur + S_max - 1


@pytest.mark.parametrize('T', [5, 8, 15, 21])
def test_matches_original_window_schedule(model, T):
    video = moving_video(T)
    xy0 = np.array([[20.0, 30.0], [70.5, 64.2], [130.0, 100.0]])
    queries = np.concatenate([np.zeros((3, 1)), xy0], axis=1)
    got = track_points(model, video, queries, BENCHMARK.replace(S=8, iters=2, image_size=None)).tracks
    want = reference_loop(model, video, xy0, S_max=8, iters=2)
    assert got.shape == (T, 3, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_resizing_maps_back_to_video_pixels(model):
    video = moving_video(6, H=128, W=144)
    big = np.repeat(np.repeat(video, 2, axis=1), 2, axis=2)  # same content at 2x
    queries = np.array([[0, 40.0, 50.0], [0, 100.0, 80.0]])
    small = track_points(model, video, queries, BENCHMARK.replace(S=8, iters=2, image_size=None)).tracks
    large = track_points(model, big, queries * [1, 2, 2], BENCHMARK.replace(S=8, iters=2, image_size=(128, 144))).tracks
    np.testing.assert_allclose(large / 2, small, atol=0.05)


def test_streaming_holds_only_a_window_of_frames(model):
    S, T = 6, 40
    alive = {'now': 0, 'max': 0}

    def frames():
        for frame in moving_video(T):
            tensor = torch.from_numpy(frame).permute(2, 0, 1).float()
            alive['now'] += 1
            alive['max'] = max(alive['max'], alive['now'])
            weakref.finalize(tensor, lambda: alive.__setitem__('now', alive['now'] - 1))
            yield tensor

    options = BENCHMARK.replace(S=S, iters=1, image_size=None)
    tracks = track_points(model, frames(), np.array([[0, 30.0, 40.0]]), options).tracks
    assert tracks.shape == (T, 1, 2)
    assert alive['max'] <= S + 2


def test_queries_at_later_frames(model):
    T, t = 12, 5
    video = moving_video(T)
    queries = np.array([[0, 30.0, 40.0], [t, 61.3, 70.7], [T - 1, 90.0, 60.0]])
    tracks = track_points(model, video, queries, BENCHMARK.replace(S=8, iters=2, image_size=None)).tracks
    assert tracks.shape == (T, 3, 2)
    np.testing.assert_array_equal(tracks[t, 1], queries[1, 1:].astype(np.float32))
    np.testing.assert_array_equal(tracks[T - 1, 2], queries[2, 1:].astype(np.float32))
    # forward half: the clip from t on; backward half: the reversed clip from t down to 0
    fwd = track_points(model, video[t:], [[0, 61.3, 70.7]], BENCHMARK.replace(S=8, iters=2, image_size=None)).tracks
    bwd = track_points(model, video[t::-1].copy(), [[0, 61.3, 70.7]],
                       BENCHMARK.replace(S=8, iters=2, image_size=None)).tracks
    np.testing.assert_allclose(tracks[t:, 1], fwd[:, 0], atol=1e-4)
    np.testing.assert_allclose(tracks[:t + 1, 1], bwd[::-1, 0], atol=1e-4)


def test_single_frame_video_returns_queries(model):
    options = BENCHMARK.replace(S=8, iters=1, image_size=None)
    tracks = track_points(model, moving_video(1), [[0, 10.0, 20.0]], options).tracks
    np.testing.assert_array_equal(tracks, [[[10.0, 20.0]]])


@pytest.mark.parametrize('queries, message', [
    (np.zeros((3, 2)), 'N,3 array'),
    (np.zeros((0, 3)), 'N,3 array'),
    ([[0, np.nan, 1.0]], 'NaN'),
    ([[-1, 1.0, 1.0]], 'non-negative integer'),
    ([[1.5, 1.0, 1.0]], 'non-negative integer'),
    ([[9, 1.0, 1.0]], 'query is at frame 9 but the video has 4 frames'),
])
def test_bad_queries(model, queries, message):
    with pytest.raises(ValueError, match=message):
        track_points(model, moving_video(4), queries, BENCHMARK.replace(S=8, iters=1, image_size=None))


def test_window_size_checked(model):
    with pytest.raises(ValueError, match='at least 2'):
        track_points(model, moving_video(4), [[0, 10.0, 20.0]], BENCHMARK.replace(S=1, iters=1, image_size=None))
