"""The Python tracking API keeps one set of rules: the same frames are accepted and refused
offline (``track_points``, ``Tracker``) and online (``TrackStream.push``); what can be
checked is checked before any frame is encoded; a stream used wrongly says so; ``out=``
never destroys an existing file."""

import os

import numpy as np
import PIL.Image
import pytest
import torch

from tests.fixtures.videos import moving_video
from tracking import INTERACTIVE, Tracker, track_points
from tracking.queries import QueryError
from tracking.stream import StreamError
from utils.errors import SettingsError
from utils.video import VideoError, write_mp4

OPTIONS = INTERACTIVE.replace(S=4, iters=1, image_size=None)
VIDEO = moving_video(3)  # 3,128,144,3 uint8
QUERIES = [[0, 30.0, 40.0], [1, 100.0, 60.0]]


@pytest.fixture(scope='module')
def reference(model):
    """The tracks of VIDEO as a uint8 array, offline and online."""
    offline = track_points(model, VIDEO, QUERIES, OPTIONS).tracks
    stream = Tracker(model, OPTIONS).stream(QUERIES)
    for frame in VIDEO:
        stream.push(frame)
    return offline, stream.finish().tracks


@pytest.fixture
def no_encoding(model, monkeypatch):
    """Fail the test if the model encodes a frame: what is checked must be checked first."""
    def encode(*args, **kwargs):
        raise AssertionError('a frame was encoded before the check')
    monkeypatch.setattr(model, 'encode', encode)


def with_alpha(frame):
    return np.concatenate([frame, frame[..., :1]], axis=2)


def with_nan(frame):
    frame = frame.astype(np.float32)
    frame[5, 7, 1] = np.nan
    return frame


BAD_FRAMES = [
    (lambda f: f / 255.0, 'float pixels in 0..1; frames are 0..255 (multiply by 255)'),
    (lambda f: torch.from_numpy(f).permute(2, 0, 1) / 255.0, 'float pixels in 0..1'),
    (lambda f: f.astype(np.uint16) * 257, 'frames must be uint8, or floats in 0..255; got uint16'),
    (lambda f: f.tolist(), 'frames must be uint8, or floats in 0..255; got int64'),
    (lambda f: f > 100, 'frames must be uint8, or floats in 0..255; got bool'),
    (with_nan, 'NaN or infinite pixels'),
    (lambda f: np.where(f > 100, np.inf, f).astype(np.float32), 'NaN or infinite pixels'),
    (lambda f: np.full(f.shape, -0.5), 'float pixels must be in 0..255; got -0.5..-0.5'),
    (lambda f: np.full(f.shape, 256.0), 'float pixels must be in 0..255; got 256..256'),
    (lambda f: f.transpose(2, 0, 1), 'a numpy frame must be H,W,3 RGB; got shape (3, 128, 144)'),
    (lambda f: f[..., 0], 'a numpy frame must be H,W,3 RGB; got shape (128, 144)'),
    (with_alpha, 'a numpy frame must be H,W,3 RGB; got shape (128, 144, 4)'),
    (lambda f: torch.from_numpy(f), 'a tensor frame must be 3,H,W RGB; got shape (128, 144, 3)'),
    (lambda f: f[:0], 'the frame is empty (144x0)'),
    (lambda f: [[1, 2, 3], [4, 5]], 'not an array of pixels'),
]


@pytest.mark.parametrize('spoil, message', BAD_FRAMES)
def test_offline_and_online_refuse_the_same_frames_before_encoding(model, no_encoding, spoil, message):
    bad = spoil(VIDEO[0])
    with pytest.raises(VideoError) as offline:
        track_points(model, [bad, VIDEO[1]], QUERIES, OPTIONS)
    with pytest.raises(VideoError) as online:
        Tracker(model, OPTIONS).stream(QUERIES).push(bad)
    assert str(offline.value) == str(online.value)
    assert str(online.value).startswith(f'frame 0: {message}')


def test_a_refused_frame_changes_nothing_in_a_stream(model, reference):
    stream = Tracker(model, OPTIONS).stream(QUERIES)
    stream.push(VIDEO[0])
    with pytest.raises(VideoError, match=r'^frame 1: float pixels in 0..1'):
        stream.push(VIDEO[1] / 255.0)
    with pytest.raises(VideoError, match=r'^frame 1 is 72x128 but the video started at 144x128'):
        stream.push(VIDEO[1][:, :72])
    for frame in VIDEO[1:]:
        stream.push(frame)
    np.testing.assert_array_equal(stream.finish().tracks, reference[1])


@pytest.mark.parametrize('make', [
    lambda v: v.astype(np.float32),
    lambda v: torch.from_numpy(v).permute(0, 3, 1, 2).contiguous(),
    lambda v: torch.from_numpy(v).permute(0, 3, 1, 2).double(),
    lambda v: list(v),
    lambda v: (frame for frame in v),
    lambda v: [torch.from_numpy(frame).permute(2, 0, 1) for frame in v],
    lambda v: [PIL.Image.fromarray(frame) for frame in v],
], ids=['float32 array', 'uint8 tensor', 'float64 tensor', 'list', 'generator', 'list of tensors', 'PIL images'])
def test_every_accepted_form_of_a_video_gives_the_same_tracks(model, reference, make):
    tracks = Tracker(model, OPTIONS)(make(VIDEO), QUERIES).tracks
    np.testing.assert_array_equal(tracks, reference[0])


def test_a_dark_float_frame_in_0_255_is_not_taken_for_0_1(model):
    video = VIDEO.astype(np.float32)
    video[0] = (video[0] > 128)  # a frame of 0s and 1s: black in 0..255 (a fade from black)
    tracks = track_points(model, video, QUERIES, OPTIONS).tracks
    assert tracks.shape == (3, 2, 2) and np.isfinite(tracks).all()


def test_what_can_be_checked_is_checked_before_any_frame_is_encoded(model, no_encoding, tmp_path):
    tracker = Tracker(model, OPTIONS)
    with pytest.raises(QueryError, match=r'query 1 \(3, 100, 60\): the frame t is past the end \(frames 0..2\)'):
        tracker(list(VIDEO), [[0, 30.0, 40.0], [3, 100.0, 60.0]])
    with pytest.raises(QueryError, match='the point lies outside the 144x128 frame'):
        tracker(VIDEO, [[0, 144.0, 40.0]])
    write_mp4(tmp_path / 'clip.mp4', VIDEO)
    with pytest.raises(QueryError, match='frame t is past the end'):
        tracker(str(tmp_path / 'clip.mp4'), [[3, 1.0, 1.0]])
    with pytest.raises(SettingsError, match=r"the video is 112x96 but .* set image_size \(--image_size=H,W\) to resize "
                                            'the frames, e.g. 128,150'):
        tracker(moving_video(3, H=96, W=112), QUERIES)
    with pytest.raises(QueryError, match='a query is at frame 5 but the video has 3 frames'):
        track_points(model, iter(VIDEO), [[5, 1.0, 1.0]], OPTIONS, num_frames=3)
    for empty in (VIDEO[:0], [], iter([])):
        with pytest.raises(VideoError, match='^the video has no frames$'):
            tracker(empty, QUERIES)


def test_a_stream_refuses_a_first_frame_too_small_and_takes_a_good_one(model, reference):
    stream = Tracker(model, OPTIONS).stream(QUERIES)
    with pytest.raises(SettingsError, match='the video is 112x96'):
        stream.push(moving_video(1, H=96, W=112)[0])
    for frame in VIDEO:
        stream.push(frame)
    np.testing.assert_array_equal(stream.finish().tracks, reference[1])


def test_a_stream_after_finish_says_so(model):
    stream = Tracker(model, OPTIONS).stream(QUERIES)
    for frame in VIDEO:
        stream.push(frame)
    stream.finish()
    for use in (stream.finish, lambda: stream.push(VIDEO[0]), lambda: stream.add([[3, 1.0, 1.0]])):
        with pytest.raises(StreamError, match=r'^the stream is finished \(finish\(\) was called\): start a new one'):
            use()


def test_a_stream_stopped_by_an_error_says_where(model, monkeypatch):
    stream = Tracker(model, OPTIONS).stream(QUERIES)
    stream.push(VIDEO[0])
    monkeypatch.setattr(model, 'encode', lambda *args: (_ for _ in ()).throw(RuntimeError('out of memory')))
    with pytest.raises(RuntimeError, match='out of memory'):
        stream.push(VIDEO[1])
    monkeypatch.undo()
    for use in (stream.finish, lambda: stream.push(VIDEO[1])):
        with pytest.raises(StreamError, match=r'^the stream stopped on an error at frame 1 \(RuntimeError: out of '
                                              r'memory\); start a new one$'):
            use()


def test_a_stream_finished_before_a_query_frame_says_so_once(model):
    stream = Tracker(model, OPTIONS).stream([[5, 1.0, 1.0]])
    stream.push(VIDEO[0])
    with pytest.raises(QueryError, match='a query is at frame 5 but the video has 1 frames'):
        stream.finish()
    with pytest.raises(StreamError, match=r'stopped on an error at finish\(\) \(QueryError: a query is at frame 5'):
        stream.finish()


def test_a_failed_run_leaves_an_existing_out_file_as_it_was(model, reference, tmp_path):
    out = tmp_path / 'tracks.npy'
    np.save(out, np.arange(6.0))
    before = out.read_bytes()
    with pytest.raises(VideoError, match='frame 2'):
        track_points(model, [VIDEO[0], VIDEO[1], VIDEO[2] / 255.0], QUERIES, OPTIONS, out=out)
    assert out.read_bytes() == before and os.listdir(tmp_path) == ['tracks.npy']
    tracks = track_points(model, list(VIDEO), QUERIES, OPTIONS, out=out).tracks
    assert os.listdir(tmp_path) == ['tracks.npy'] and tracks.filename == str(out)
    np.testing.assert_array_equal(np.load(out), reference[0])


def test_out_needs_a_length_and_never_names_the_video(model, no_encoding, tmp_path):
    with pytest.raises(SettingsError, match='out= needs the number of frames up front: pass num_frames=, or give the '
                                            'video as a path, an array or a list'):
        Tracker(model, OPTIONS)((frame for frame in VIDEO), QUERIES, out=tmp_path / 'tracks.npy')
    video = tmp_path / 'clip.mp4'
    write_mp4(video, VIDEO)
    before = video.read_bytes()
    with pytest.raises(SettingsError, match=f'{video}: this output would overwrite the input {video}'):
        Tracker(model, OPTIONS)(str(video), QUERIES, out=str(video))
    assert video.read_bytes() == before
