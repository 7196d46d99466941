"""Visibility and confidence: the signals against independent computations, the rule, the
online stream, and tracks that the signals never change."""

import copy
import math
import os

import numpy as np
import pytest
import torch

import tracking.engine
from nets.corr import WindowedCorr
from tests.fixtures.videos import moving_video, occluded_video
from tracking import BENCHMARK, INTERACTIVE, TrackStream, load_pips, track_points
from tracking.confidence import (
    APPEARANCE,
    CONSISTENCY,
    FULL_RULE,
    LIGHT_RULE,
    PEAK,
    PEAK_RADIUS,
    PEAK_TEMPERATURE,
    Rule,
    check_iters,
    distance_256,
    window_signals,
)
from tracking.run import track_signals
from utils.errors import SettingsError

ON = dict(iters=2, image_size=None, confidence=True)
TRAINED = os.environ.get('PIPS_TRAINED_MODEL')  # a folder holding a trained checkpoint, for the slow tests
TRAINED_OPTIONS = INTERACTIVE.replace(S=8, iters=6, image_size=None)  # the procedural model's own settings
DRIFT_CORRELATION = 0.6  # the least correlation of consistency with drift (measured 0.81 with bench_learning's model)


def crowd(T, n, seed):
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, T, n), rng.uniform(0, 143, n), rng.uniform(0, 127, n)], axis=1)


def aligned_distance(track, check, t):
    """The oracle of the consistency signal: |track - check| after shifting the check by
    its offset from the track at frame t (its own frame numbers), at 256 x 256."""
    offsets = track.astype(np.float64) - check
    return distance_256(offsets, offsets[t], (128, 144))


@pytest.mark.parametrize('last_window', ['shift', 'short'])
def test_consistency_compares_each_track_with_a_track_from_its_far_end(model, last_window):
    T, S = 13, 5
    video = moving_video(T)
    queries = np.array([[0, 40.0, 50.0], [4, 70.5, 60.25], [T - 1, 90.0, 30.0]])
    options = BENCHMARK.replace(S=S, last_window=last_window, **ON)
    tracks, signals = track_signals(model, video, queries, options)
    check = options.replace(iters=check_iters(options.iters), confidence=False)
    for n, (t, _, _) in enumerate(queries.astype(int)):
        own = tracks.tracks[:, n]
        assert signals[t, n, CONSISTENCY] == 0
        if t < T - 1:  # the forward segment, tracked again from the last frame down to t
            back = track_points(model, video[t:][::-1].copy(), [[0, *own[-1]]], check).tracks[::-1, 0]
            np.testing.assert_allclose(signals[t:, n, CONSISTENCY], aligned_distance(own[t:], back, 0),
                                       atol=1e-3)  # float rounding of the tracks only (1e-4 px)
        if t > 0:  # the backward segment, tracked again from frame 0 up to t
            ahead = track_points(model, video[:t + 1], [[0, *own[0]]], check).tracks[:, 0]
            np.testing.assert_allclose(signals[:t, n, CONSISTENCY], aligned_distance(own[:t + 1], ahead, t)[:t],
                                       atol=1e-3)


def test_appearance_is_one_at_each_query_frame(model):
    T = 12
    queries = crowd(T, 9, seed=0)
    _, signals = track_signals(model, moving_video(T), queries, BENCHMARK.replace(S=5, **ON))
    frames, points = queries[:, 0].astype(int), np.arange(len(queries))
    np.testing.assert_allclose(signals[frames, points, APPEARANCE], 1.0, atol=1e-6)
    assert (signals[..., APPEARANCE] <= 1 + 1e-6).all() and (signals[..., APPEARANCE] > -1).all()
    assert ((signals[..., PEAK] > 0) & (signals[..., PEAK] <= 1)).all()


@pytest.fixture(scope='module')
def still_model(model):
    """The golden model with its last layer zeroed: it never moves a point."""
    still = copy.deepcopy(model)
    torch.nn.init.zeros_(still.delta_block.dense.weight)
    torch.nn.init.zeros_(still.delta_block.dense.bias)
    return still


def test_a_tracker_that_holds_still_on_a_static_scene_is_fully_consistent(still_model):
    T = 10
    video = np.repeat(moving_video(1), T, axis=0)
    queries = np.array([[0, 40.0, 50.0], [6, 70.5, 60.25], [T - 1, 12.0, 100.0]])
    tracks, signals = track_signals(still_model, video, queries, INTERACTIVE.replace(S=4, **ON))
    np.testing.assert_array_equal(tracks.tracks, np.broadcast_to(queries[:, 1:], (T, 3, 2)).astype(np.float32))
    assert (signals[..., CONSISTENCY] == 0).all()
    np.testing.assert_allclose(signals[..., APPEARANCE], 1.0, atol=1e-6)
    np.testing.assert_allclose(signals[..., PEAK], signals[:1, :, PEAK].repeat(T, axis=0), atol=1e-6)


def test_peak_share_is_the_softmax_mass_near_the_estimate():
    torch.manual_seed(0)
    C, H, W = 16, 20, 24
    fmaps = torch.randn(1, 2, C, H, W)
    target = torch.randn(1, 1, 3, C).expand(1, 2, 3, C)
    cells = torch.tensor([[5, 7], [0, 19], [23, 10]])  # x, y on the feature map; one on the edge
    corr = WindowedCorr(fmaps)
    got = window_signals(corr, (cells * 8.0).expand(1, 2, 3, 2), target, stride=8)  # 1,2,3,2
    r = corr.radius
    for s in range(2):
        for n, (x, y) in enumerate(cells.tolist()):
            dots = torch.zeros(2 * r + 1, 2 * r + 1, dtype=torch.float64)
            for i, dy in enumerate(range(-r, r + 1)):
                for j, dx in enumerate(range(-r, r + 1)):
                    if 0 <= y + dy < H and 0 <= x + dx < W:
                        dots[i, j] = fmaps[0, s, :, y + dy, x + dx].double() @ target[0, s, n].double()
            own = target[0, s, n].double() @ target[0, s, n].double()
            mass = torch.softmax(dots.flatten() / own / PEAK_TEMPERATURE, 0).view_as(dots)
            near = slice(r - PEAK_RADIUS, r + PEAK_RADIUS + 1)
            assert got[0, s, n, 1].item() == pytest.approx(mass[near, near].sum().item(), abs=1e-5)
            feature = fmaps[0, s, :, y, x].double()
            cosine = feature @ target[0, s, n].double() / feature.norm() / target[0, s, n].double().norm()
            assert got[0, s, n, 0].item() == pytest.approx(cosine.item(), abs=1e-5)


def test_the_rule_is_a_logistic_of_the_signals():
    signals = np.array([[[0.9, 0.6, 0.5], [0.2, 0.1, 12.0], [0.5, 0.3, np.nan]]])
    rule = Rule(bias=-1.5, appearance=3.0, peak=2.0, consistency=-1.25, threshold=0.4)
    for n, (a, p, c) in enumerate(signals[0]):
        logit = -1.5 + 3.0 * a + 2.0 * p - 1.25 * math.log1p(c)
        assert rule.confidence(signals)[0, n] == pytest.approx(1 / (1 + math.exp(-logit)), abs=1e-6, nan_ok=True)
    light = Rule(bias=-1.5, appearance=3.0, peak=2.0, consistency=None, threshold=0.4)
    np.testing.assert_allclose(light.confidence(signals)[0, 2], 1 / (1 + math.exp(1.5 - 1.5 - 0.6)), atol=1e-6)
    for fitted in (FULL_RULE, LIGHT_RULE):
        assert 0 < fitted.threshold < 1 and fitted.appearance > 0


def test_a_query_confidence_does_not_depend_on_the_other_queries(model):
    T = 13
    video = moving_video(T)
    one = np.array([[4, 60.5, 70.25]])
    options = BENCHMARK.replace(S=6, **ON)
    alone, alone_signals = track_signals(model, video, one, options)
    together, together_signals = track_signals(model, video, np.concatenate([crowd(T, 12, 1), one, crowd(T, 5, 2)]),
                                               options)
    np.testing.assert_allclose(together_signals[:, 12:13, :2], alone_signals[..., :2], atol=1e-5)
    np.testing.assert_allclose(together_signals[:, 12:13, 2], alone_signals[..., 2], atol=1e-3)  # px, as tracks
    np.testing.assert_allclose(together.confidence[:, 12:13], alone.confidence, atol=1e-4)


def test_point_chunks_and_states_on_disk_change_no_signal(model, monkeypatch):
    T = 12
    video = moving_video(T)
    queries = crowd(T, 10, seed=3)
    plain = track_signals(model, video, queries, BENCHMARK.replace(S=5, **ON))[1]
    monkeypatch.setattr(tracking.engine, 'STATE_RAM_BUDGET', 0)
    chunked = track_signals(model, video, queries, BENCHMARK.replace(S=5, point_chunk=3, **ON))[1]
    np.testing.assert_allclose(chunked, plain, atol=1e-3)  # float rounding of smaller products only


@pytest.mark.parametrize('preset', [BENCHMARK, INTERACTIVE])
def test_the_signals_never_change_the_tracks(model, preset):
    T = 12
    video = moving_video(T)
    queries = np.array([[0, 30.0, 40.0], [0, 100.0, 90.0], [5, 60.0, 64.0], [T - 1, 130.0, 110.0]])
    options = preset.replace(S=5, iters=2, image_size=None)
    off = track_points(model, video, queries, options.replace(confidence=False))
    assert off.visible is None and off.confidence is None
    for consistency in (True, False):
        on = track_points(model, video, queries, options.replace(confidence=True, consistency=consistency))
        np.testing.assert_array_equal(on.tracks, off.tracks)
        assert on.confidence.shape == (T, 4) and on.confidence.dtype == np.float32 and on.visible.dtype == bool
        rule = FULL_RULE if consistency else LIGHT_RULE
        np.testing.assert_array_equal(on.visible, on.confidence >= rule.threshold)
        np.testing.assert_array_equal(on.confidence[queries[:, 0].astype(int), np.arange(4)], 1.0)
        assert ((on.confidence >= 0) & (on.confidence <= 1)).all()


def test_the_stream_emits_confidence_that_never_changes(model):
    S = 5
    T = 1 + 3 * (S - 1)
    video = moving_video(T)
    queries = crowd(T, 6, seed=4)
    queries[:3, 0] = 0
    options = INTERACTIVE.replace(S=S, beautify=False, **ON)  # consistency on: the stream goes without it
    stream = TrackStream(model, queries[:3], options)
    emitted = {}
    for i, frame in enumerate(video):
        if i == 6:
            stream.add(queries[3:] * [0, 1, 1] + [i, 0, 0])
        for final in stream.push(frame):
            emitted[final.t] = final
    result = stream.finish()
    for t, final in emitted.items():
        started = np.isfinite(final.xy[:, 0])  # the rows before a query's frame come with finish
        np.testing.assert_array_equal(final.confidence[started], result.confidence[t, :len(started)][started])
        assert np.isnan(final.confidence[~started]).all() and not final.visible[~started].any()
        np.testing.assert_array_equal(final.visible, final.confidence >= LIGHT_RULE.threshold)
    offline = track_points(model, video, queries[:3], BENCHMARK.replace(S=S, consistency=False, **ON))
    np.testing.assert_array_equal(result.confidence[:, :3], offline.confidence)
    off = TrackStream(model, queries[:3], options.replace(confidence=False))
    assert all(final.confidence is None for frame in video for final in off.push(frame))
    assert off.finish().confidence is None


def test_confidence_settings_are_checked():
    with pytest.raises(SettingsError, match='confidence must be True or False'):
        INTERACTIVE.replace(confidence='yes')
    with pytest.raises(SettingsError, match='consistency must be True or False'):
        BENCHMARK.replace(consistency=1)
    with pytest.raises(SettingsError, match='track_signals needs options.confidence'):
        track_signals(None, np.zeros((2, 128, 128, 3), np.uint8), [[0, 1.0, 1.0]], BENCHMARK)


@pytest.fixture(scope='module')
def trained_model():
    """A model that tracks (PIPS_TRAINED_MODEL: a checkpoint folder, such as the one
    benchmarks/bench_learning.py trains on procedural data); skips without one."""
    if not TRAINED or not os.path.isdir(TRAINED):
        pytest.skip('set PIPS_TRAINED_MODEL to a folder with a trained checkpoint to run this test')
    return load_pips(TRAINED, 'cpu')


@pytest.mark.slow
def test_on_a_static_scene_consistency_follows_the_trained_models_drift(trained_model):
    """On a still video every move is an error: the forward-backward distance must follow
    the drift of the tracks from their queries (a tracker that holds still gives 0: the
    test with ``still_model`` above)."""
    T = 16
    video = np.repeat(moving_video(1, 128, 160), T, axis=0)
    grid = np.stack(np.meshgrid(np.arange(16.0, 160, 32), np.arange(16.0, 128, 32)), axis=-1).reshape(-1, 2)
    queries = np.concatenate([np.zeros((len(grid), 1)), grid], axis=1)
    tracks, signals = track_signals(trained_model, video, queries, TRAINED_OPTIONS)
    drift = np.linalg.norm((tracks.tracks - tracks.tracks[:1]) * 256.0 / np.array([160, 128]), axis=-1)  # T,N
    assert np.corrcoef(drift.ravel(), signals[..., CONSISTENCY].ravel())[0, 1] > DRIFT_CORRELATION


@pytest.mark.slow
def test_a_point_hidden_by_a_passing_occluder_loses_confidence_while_hidden(trained_model):
    video, hidden = occluded_video(24)
    tracks = track_points(trained_model, video, [[0, 80.0, 64.0]], TRAINED_OPTIONS)
    confidence, visible = tracks.confidence[:, 0], tracks.visible[:, 0]
    before = np.arange(len(hidden)) < np.argmax(hidden)
    before[0] = False  # the query frame (confidence 1 by definition)
    assert confidence[hidden].max() < confidence[before].min()
    assert visible[before].all() and not visible[hidden][1:].any()  # from the occluder's second frame on
