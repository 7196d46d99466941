"""The tracking engine: shared encoding, spilled backward features, online streams, dense grids."""

import os

import numpy as np
import pytest

import tracking.engine
from saverloader import CheckpointError
from tests.fixtures.videos import moving_video
from tracking import BENCHMARK, INTERACTIVE, Tracker, TrackStream, track_points
from tracking.queries import stride_grid_queries

FAST = dict(iters=1, image_size=None)


def random_queries(T, n, seed, frames=None):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, T, n) if frames is None else rng.choice(frames, n)
    return np.stack([t, rng.uniform(0, 143, n), rng.uniform(0, 127, n)], axis=1)


def test_each_frame_is_encoded_once_and_sharing_changes_nothing(model, monkeypatch):
    T, S = 15, 6
    video = moving_video(T)
    queries = random_queries(T, 12, seed=0, frames=[0, 3, 14])
    encoded = []
    encode = model.encode
    monkeypatch.setattr(model, 'encode', lambda rgbs: encoded.append(rgbs.shape[1]) or encode(rgbs))
    tracks = track_points(model, video, queries, BENCHMARK.replace(S=S, **FAST)).tracks
    assert sum(encoded) == T
    for t in (3, 14):  # a query frame tracked on its own
        mine = queries[:, 0] == t
        alone = track_points(model, video, queries[mine], BENCHMARK.replace(S=S, **FAST)).tracks
        np.testing.assert_array_equal(tracks[:, mine], alone)


def test_a_track_does_not_depend_on_the_other_queries(model):
    T = 13
    video = moving_video(T)
    one = np.array([[4, 60.5, 70.25]])
    crowd = np.concatenate([random_queries(T, 30, seed=1), one, random_queries(T, 9, seed=2)])
    alone = track_points(model, video, one, BENCHMARK.replace(S=6, **FAST)).tracks
    together = track_points(model, video, crowd, BENCHMARK.replace(S=6, **FAST)).tracks
    np.testing.assert_allclose(together[:, 30:31], alone, atol=1e-4)  # float rounding only


def test_point_chunks_and_states_on_disk_change_nothing(model, monkeypatch):
    T = 12
    video = moving_video(T)
    queries = random_queries(T, 10, seed=3, frames=[0, 5])
    plain = track_points(model, video, queries, BENCHMARK.replace(S=5, **FAST)).tracks
    chunked = track_points(model, video, queries, BENCHMARK.replace(S=5, point_chunk=3, **FAST)).tracks
    monkeypatch.setattr(tracking.engine, 'STATE_RAM_BUDGET', 0)
    on_disk = track_points(model, video, queries, BENCHMARK.replace(S=5, point_chunk=3, **FAST)).tracks
    np.testing.assert_allclose(chunked, plain, atol=1e-4)  # float rounding of smaller products only
    np.testing.assert_array_equal(on_disk, chunked)


def open_files_in(folder):
    """Files this process holds open under ``folder`` (deleted ones included)."""
    links = []
    for fd in os.listdir('/proc/self/fd'):
        try:
            links.append(os.readlink(f'/proc/self/fd/{fd}'))
        except OSError:  # the descriptor listdir itself used
            pass
    return [link for link in links if link.startswith(str(folder))]


@pytest.mark.parametrize('stop', [None, RuntimeError, KeyboardInterrupt])
def test_the_spill_file_lives_only_while_tracking(model, tmp_path, stop):
    T = 9
    seen = []

    def frames():
        for t, frame in enumerate(moving_video(T)):
            if t == T - 1:
                seen.append(len(open_files_in(tmp_path)))
                if stop is not None:
                    raise stop('stopped')
            yield frame

    queries = [[0, 30.0, 40.0], [T - 1, 50.0, 60.0]]
    if stop is None:
        track_points(model, frames(), queries, BENCHMARK.replace(S=5, spill_dir=tmp_path, **FAST))
    else:
        with pytest.raises(stop):
            track_points(model, frames(), queries, BENCHMARK.replace(S=5, spill_dir=tmp_path, **FAST))
    assert seen == [1]  # the spill was open while frames came ...
    assert open_files_in(tmp_path) == [] and os.listdir(tmp_path) == []  # ... and is gone now


def test_one_pass_stream_with_a_last_frame_query_keeps_a_window(model, monkeypatch):
    S, T = 5, 30
    held = []
    push = tracking.engine.Sweep.push

    def counting_push(self, fmap, frame=None):
        push(self, fmap, frame)
        held.append(len(self.features))

    monkeypatch.setattr(tracking.engine.Sweep, 'push', counting_push)
    tracks = track_points(model, iter(moving_video(T)), [[T - 1, 40.0, 50.0]], BENCHMARK.replace(S=S, **FAST)).tracks
    assert tracks.shape == (T, 1, 2) and np.isfinite(tracks).all()
    assert max(held) <= S and len(held) == 2 * T  # forward sweep, then the backward one


def run_stream(stream, video, adds=None):
    """Push every frame; returns {t: (push index, xy)} of the emitted rows and the tracks."""
    emitted = {}
    for i, frame in enumerate(video):
        if adds and i in adds:
            stream.add(adds[i])
        for t, xy, _, _ in stream.push(frame):
            assert t not in emitted
            emitted[t] = (i, xy)
    return emitted, stream.finish().tracks


def test_online_equals_offline_when_windows_cover_the_video(model):
    S = 6
    T = 1 + 3 * (S - 1)
    video = moving_video(T)
    queries = random_queries(T, 7, seed=4, frames=[0])
    emitted, tracks = run_stream(TrackStream(model, queries, INTERACTIVE.replace(S=S, beautify=False, **FAST)), video)
    offline = track_points(model, video, queries, BENCHMARK.replace(S=S, **FAST)).tracks
    np.testing.assert_array_equal(tracks, offline)
    assert sorted(emitted) == list(range(T))
    for t, (_, xy) in emitted.items():
        np.testing.assert_array_equal(xy, offline[t])


def test_online_contract_latency_finality_and_added_queries(model):
    S, T = 6, 17
    video = moving_video(T)
    first = random_queries(T, 4, seed=5, frames=[0, 2])
    later = np.array([[6, 70.0, 60.0], [9, 30.0, 90.0]])  # added when frame 6 is pushed
    now = np.array([[8, 100.0, 40.0]])  # added after frame 8 was pushed: its own frame
    stream = TrackStream(model, first, INTERACTIVE.replace(S=S, **FAST))
    emitted = {}
    for i, frame in enumerate(video):
        if i == 6:
            stream.add(later)
        for t, xy, _, _ in stream.push(frame):
            emitted[t] = (i, xy)
        if i == 8:
            stream.add(now)
            with pytest.raises(ValueError, match='frame 8 .* or later; got frame 7'):
                stream.add([[7, 10.0, 10.0]])
    tracks = stream.finish().tracks
    assert tracks.shape == (T, 7, 2) and np.isfinite(tracks).all()
    assert sorted(emitted)[:T - S + 1] == list(range(T - S + 1))
    for t, (i, xy) in emitted.items():
        assert i - t <= S - 1  # final at most S-1 frames after it was pushed
        known = xy.shape[0]
        started = np.isfinite(xy[:, 0])
        np.testing.assert_array_equal(xy[started], tracks[t, :known][started])  # emitted rows never change
        queries = np.concatenate([first, later, now])[:known]
        np.testing.assert_array_equal(started, queries[:, 0] <= t)  # NaN before a query's frame
    for q, row in zip(np.concatenate([first, later, now]), np.arange(7)):
        np.testing.assert_array_equal(tracks[int(q[0]), row], q[1:].astype(np.float32))


def test_online_without_backward_leaves_rows_before_a_query_empty(model, tmp_path):
    video = moving_video(10)
    options = INTERACTIVE.replace(S=5, spill_dir=tmp_path, **FAST)
    stream = TrackStream(model, [[0, 30.0, 40.0], [4, 50.0, 60.0]], options, backward=False)
    _, tracks = run_stream(stream, video)
    assert np.isnan(tracks[:4, 1]).all() and np.isfinite(tracks[4:, 1]).all() and np.isfinite(tracks[:, 0]).all()


def test_a_bad_last_window_rule_fails_before_reading_frames(model):
    def frames():
        raise AssertionError('no frame should be read')
        yield

    with pytest.raises(ValueError, match="last_window must be one of 'shift', 'short'; got 'end'"):
        track_points(model, frames(), [[0, 1.0, 1.0]], BENCHMARK.replace(S=5, last_window='end', **FAST))


def test_stride_grid_queries_cover_the_frame_evenly():
    grid = stride_grid_queries(10, 16, 4)
    assert grid.shape == (3 * 4, 3)
    np.testing.assert_array_equal(np.unique(grid[:, 1]), [1.5, 5.5, 9.5, 13.5])
    np.testing.assert_array_equal(np.unique(grid[:, 2]), [1.5, 5.5, 9.5])
    assert (grid[:, 0] == 0).all()
    with pytest.raises(ValueError, match='positive'):
        stride_grid_queries(10, 16, 0)


def test_tracker_dense_grid_written_to_a_memmap(model, tmp_path):
    video = moving_video(7)
    tracker = Tracker(model, S=5, iters=1, image_size=None)
    out = tmp_path / 'tracks.npy'
    in_file = tracker(video, grid_stride=24, out=out).tracks
    in_ram = tracker(video, grid_stride=24).tracks
    assert in_ram.shape == (7, 5 * 6, 2)  # 128x144 frames
    np.testing.assert_array_equal(np.load(out), in_ram)
    np.testing.assert_array_equal(np.asarray(in_file), in_ram)


def test_bf16_tracks_stay_close_to_fp32_and_bad_precision_is_refused(model):
    video = moving_video(6)
    queries = [[0, 30.0, 40.0], [3, 70.0, 64.0]]
    fp32 = track_points(model, video, queries, BENCHMARK.replace(S=5, **FAST)).tracks
    bf16 = track_points(model, video, queries, BENCHMARK.replace(S=5, precision='bf16', **FAST)).tracks
    assert bf16.dtype == np.float32 and np.abs(bf16 - fp32).mean() < 0.5
    with pytest.raises(ValueError, match='precision must be one of fp32, bf16, fp16'):
        track_points(model, video, queries, BENCHMARK.replace(S=5, precision='fp64', **FAST))


def test_tracker_from_checkpoint_loads_strictly(model, golden_checkpoint, tmp_path):
    tracker = Tracker.from_checkpoint(golden_checkpoint, device='cpu', S=5, iters=1, image_size=None)
    video = moving_video(5)
    np.testing.assert_array_equal(tracker(video, [[0, 30.0, 40.0]]).tracks,
                                  Tracker(model, S=5, iters=1, image_size=None)(video, [[0, 30.0, 40.0]]).tracks)
    with pytest.raises(CheckpointError, match='get_reference_model.sh'):
        Tracker.from_checkpoint(tmp_path / 'nothing', device='cpu')
