"""The web app's work without a browser (tracking/session.py): opening videos, frames, query
points and grids, seeded untrained weights, tracking into a folder per session (equal to the
Tracker's tracks, also with two sessions at once), and the one-line messages."""

import os
import threading

import numpy as np
import pytest
import torch

from tests.fixtures.tapvid import make_video
from tracking import INTERACTIVE, Tracker
from tracking.formats import read_csv
from tracking.queries import QueryError, default_queries, stride_grid_queries
from tracking.session import (
    Clip,
    add_point,
    draw_queries,
    error_message,
    frame_queries,
    has_checkpoint,
    load_model,
    new_run_folder,
    open_video,
    read_frame,
    remove_point,
    track_clip,
)
from utils.errors import SettingsError
from utils.video import VideoError, read_video, video_info, write_mp4

SMALL = INTERACTIVE.replace(S=6, iters=1, image_size=(128, 160))
T, H, W = 12, 96, 128


@pytest.fixture(scope='module')
def clip_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('videos') / 'pan.mp4')
    write_mp4(path, make_video(T=T, H=H, W=W, seed=3)['video'], fps=12)
    return path


@pytest.fixture(scope='module')
def untrained():
    return load_model('', 'cpu')


def test_open_video_describes_it_and_names_uploads_by_their_own_name(clip_path, tmp_path):
    video = open_video(clip_path, 'My clip.mp4')
    assert (video.name, video.num_frames, video.height, video.width, video.fps) == ('My clip', T, H, W, 12.0)
    broken = tmp_path / 'a1b2c3' / 'upload.mp4'
    broken.parent.mkdir()
    broken.write_bytes(b'not a video')
    with pytest.raises(VideoError) as error:
        open_video(broken, 'holiday.mp4')
    assert str(error.value).startswith('holiday.mp4: cannot open as a video') and 'a1b2c3' not in str(error.value)
    with pytest.raises(VideoError, match=r'notes.txt: not a video file of a kind the app reads \(.mp4, .avi, .mov\)'):
        open_video(tmp_path / 'notes.txt')


def test_read_frame_and_clip_read_the_video_frames(clip_path):
    video = open_video(clip_path)
    frames = read_video(clip_path)
    np.testing.assert_array_equal(read_frame(video, 5), frames[5])
    with pytest.raises(VideoError, match=f'pan: has no frame {T}'):
        read_frame(video, T)
    clip = Clip(clip_path, 4)
    assert len(clip) == 4
    np.testing.assert_array_equal(np.stack(list(clip)), frames[:4])
    np.testing.assert_array_equal(np.stack(list(clip)), frames[:4])  # every pass reads the file again


def test_points_are_added_and_removed_by_their_number():
    points = add_point(add_point(add_point([], 0, 10, 20), 5, 30.0, 40.0), 5, 50, 60)
    assert points == [[0, 10.0, 20.0], [5, 30.0, 40.0], [5, 50.0, 60.0]]
    assert remove_point(points, 2) == [[0, 10.0, 20.0], [5, 50.0, 60.0]]
    for bad in (0, 4):
        with pytest.raises(QueryError, match='there is no point .*; the points are numbered 1 to 3'):
            remove_point(points, bad)


def test_queries_are_the_clicked_points_or_a_grid_on_the_shown_frame():
    points = [[0, 10.0, 20.0], [7, 30.0, 40.0]]
    np.testing.assert_array_equal(frame_queries('points', points, 3, (H, W)), points)
    with pytest.raises(QueryError, match='no points yet: click on the frame'):
        frame_queries('points', [], 3, (H, W))
    grid = frame_queries('grid', points, 3, (H, W), N=16, image_size=(128, 160))
    np.testing.assert_array_equal(grid[:, 1:], default_queries(H, W, (128, 160), 16)[:, 1:])
    assert (grid[:, 0] == 3).all()
    np.testing.assert_array_equal(frame_queries('stride', points, 4, (H, W), grid_stride=32),
                                  stride_grid_queries(H, W, 32, 4))
    with pytest.raises(SettingsError, match='query mode'):
        frame_queries('spiral', points, 0, (H, W))


@pytest.mark.parametrize('changes, message', [
    (dict(mode='grid', N=None), 'N must be an integer of at least 1; got None'),  # an emptied number field
    (dict(mode='stride', grid_stride=0), 'grid stride must be an integer of at least 1; got 0'),
    (dict(mode='grid', image_size=(None, 160)), 'model size must be two integers H,W of at least 128'),
])
def test_grid_settings_from_the_page_are_checked(changes, message):
    settings = dict(dict(mode='grid', N=16, grid_stride=8, image_size=(128, 160)), **changes)
    mode = settings.pop('mode')
    with pytest.raises(SettingsError, match=message):
        frame_queries(mode, [], 0, (H, W), **settings)


def test_draw_queries_marks_the_points_of_the_shown_frame_only(clip_path):
    frame = read_frame(open_video(clip_path), 0)
    before = frame.copy()
    drawn = draw_queries(frame, [[0, 40.0, 30.0], [1, 100.0, 70.0]], 0, numbered=True)
    np.testing.assert_array_equal(frame, before)  # the frame itself is left as it was
    changed = np.abs(drawn.astype(int) - frame).sum(axis=-1) > 0  # H,W
    assert changed[28:33, 38:43].all()  # the dot at (40, 30)
    assert not changed[60:80, 90:110].any()  # nothing where the frame-1 point is
    np.testing.assert_array_equal(draw_queries(frame, [[1, 100.0, 70.0]], 0), frame)


def test_untrained_weights_are_the_same_every_time_and_leave_the_random_state(untrained):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    again = load_model('', 'cpu')
    assert torch.equal(torch.rand(3), expected_next)
    for name, value in untrained.state_dict().items():
        assert torch.equal(again.state_dict()[name], value), name


def test_has_checkpoint_only_for_a_folder_with_a_checkpoint(tmp_path, golden_checkpoint):
    assert has_checkpoint(golden_checkpoint)
    for folder in (str(tmp_path), str(tmp_path / 'missing'), ''):
        assert not has_checkpoint(folder)


def test_track_clip_writes_the_trackers_tracks_into_the_run_folder(clip_path, untrained, tmp_path, one_thread):
    video = open_video(clip_path)
    queries = [[0, 30.0, 20.0], [6, 64.0, 48.0]]
    out_dir = new_run_folder(str(tmp_path / 'session'))
    result, paths = track_clip(untrained, video, queries, num_frames=9, options=SMALL, out_dir=out_dir,
                               formats=('npz', 'csv'), progress=False)
    expected = Tracker(untrained, SMALL)(read_video(clip_path)[:9], queries).tracks
    np.testing.assert_array_equal(result.tracks, expected)
    assert sorted(paths) == ['csv', 'mp4', 'npz'] and all(os.path.dirname(p) == out_dir for p in paths.values())
    np.testing.assert_array_equal(read_csv(paths['csv'])[0], expected)
    np.testing.assert_array_equal(np.load(paths['npz'])['trajs'], expected)
    assert video_info(paths['mp4'])[:3] == (9, H, W)


def test_a_session_keeps_only_its_latest_run(tmp_path):
    first = new_run_folder(str(tmp_path / 'session'))
    (tmp_path / 'session' / 'other').mkdir()
    second = new_run_folder(str(tmp_path / 'session'))
    assert first != second and not os.path.exists(first) and os.path.isdir(second)
    assert sorted(os.listdir(tmp_path / 'session')) == sorted(['other', os.path.basename(second)])


def test_two_sessions_tracking_at_once_keep_their_own_results(clip_path, untrained, tmp_path):
    video = open_video(clip_path)
    jobs = {'a': [[0, 30.0, 20.0]], 'b': [[3, 90.0, 60.0], [0, 10.0, 10.0]]}
    alone = {key: track_clip(untrained, video, queries, num_frames=T, options=SMALL, progress=False,
                             out_dir=new_run_folder(str(tmp_path / 'alone')))[0].tracks
             for key, queries in jobs.items()}
    paths = {}

    def run(key):
        paths[key] = track_clip(untrained, video, jobs[key], num_frames=T, options=SMALL, progress=False,
                                out_dir=new_run_folder(str(tmp_path / key)))[1]

    threads = [threading.Thread(target=run, args=(key,)) for key in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert paths['a']['csv'] != paths['b']['csv']
    for key in jobs:
        # threads share the CPU's thread pool, so float sums may round differently: 1e-4 px
        np.testing.assert_allclose(read_csv(paths[key]['csv'])[0], alone[key], rtol=0, atol=1e-4)


@pytest.mark.parametrize('num_frames, queries, error, message', [
    (T + 1, [[0, 1.0, 1.0]], SettingsError, f'frames to track must be between 2 and {T}; got {T + 1}'),
    (4, [[5, 1.0, 1.0]], QueryError, r'pan, query 0 \(5, 1, 1\): the frame t is past the end \(frames 0..3\)'),
    (4, [[0, 500.0, 1.0]], QueryError, rf'pan, query 0 \(0, 500, 1\): the point lies outside the {W}x{H} frame'),
])
def test_track_clip_checks_before_tracking(clip_path, untrained, tmp_path, num_frames, queries, error, message):
    with pytest.raises(error, match=message):
        track_clip(untrained, open_video(clip_path), queries, num_frames=num_frames, options=SMALL,
                   out_dir=str(tmp_path), progress=False)
    assert os.listdir(tmp_path) == []


def test_error_messages_are_one_line_naming_the_video_not_its_temporary_path(clip_path):
    video = open_video(clip_path, 'mine.mp4')
    assert error_message(VideoError(f'{clip_path}: corrupt video'), video) == 'error: mine: corrupt video'
    assert error_message(FileNotFoundError(2, 'No such file or directory', '/x/y')) == \
        'error: /x/y: No such file or directory'
    assert error_message(KeyError('S')) == "error: KeyError: 'S'"
    assert error_message(torch.cuda.OutOfMemoryError('CUDA out of memory')).startswith('error: out of GPU memory')
