"""Track files in CSV and TAP-Vid form (tracking/formats.py) and the outputs a tracking run
writes in the chosen formats (tracking/outputs.py): round trips, layouts, errors."""

import os
import pickle
import shutil

import numpy as np
import pytest

from datasets.tapviddataset_fullseq import TapVidDavis
from tests.fixtures.videos import moving_video
from tracking.formats import TrackFileError, read_csv, read_tapvid, write_csv, write_tapvid
from tracking.outputs import check_formats, output_paths, write_outputs
from utils.errors import SettingsError
from utils.video import video_info

T, N, H, W = 6, 5, 128, 144


def random_tracks(seed=0):
    """(tracks T,N,2 float32 pixels, visible T,N bool, confidence T,N float32)."""
    rng = np.random.default_rng(seed)
    tracks = (rng.uniform(-3, 1, (T, N, 2)) * [W, H] / 2 + [W / 2, H / 2]).astype(np.float32)
    return tracks, rng.random((T, N)) > 0.3, rng.random((T, N)).astype(np.float32)


def test_csv_round_trip_is_exact_and_has_a_header_and_one_row_per_frame_and_point(tmp_path):
    tracks, _, _ = random_tracks()
    path = tmp_path / 'tracks.csv'
    write_csv(path, tracks)
    lines = path.read_text().splitlines()
    assert lines[0] == 'frame,point,x,y' and len(lines) == 1 + T * N
    frame, point, x, y = lines[1 + 2 * N + 3].split(',')
    assert (int(frame), int(point)) == (2, 3) and (np.float32(x), np.float32(y)) == tuple(tracks[2, 3])
    back, back_visible, back_confidence = read_csv(path)
    np.testing.assert_array_equal(back, tracks)
    assert back.dtype == np.float32 and back_visible is None and back_confidence is None


def test_csv_with_visibility_and_confidence_round_trips_in_any_row_order(tmp_path):
    tracks, visible, confidence = random_tracks(1)
    path = tmp_path / 'tracks.csv'
    write_csv(path, tracks, visible, confidence)
    header, *rows = path.read_text().splitlines()
    assert header == 'frame,point,x,y,visible,confidence'
    assert {row.split(',')[4] for row in rows} == {'0', '1'}
    path.write_text('\n'.join([header] + rows[::-1]) + '\n')
    back, back_visible, back_confidence = read_csv(path)
    np.testing.assert_array_equal(back, tracks)
    np.testing.assert_array_equal(back_visible, visible)
    np.testing.assert_array_equal(back_confidence, confidence)


@pytest.mark.parametrize('content, message', [
    ('t,x,y\n0,1,2\n', 'the header must be frame,point,x,y'),
    ('frame,point,x,y\n0,0,1.5,2\n1,1,3,4\n', 'one row for each of 2 frames x 2 points; got 2 rows'),
    ('frame,point,x,y\n0,0,1,2\n0,0,1,2\n1,1,3,4\n1,1,3,4\n', r'got 4 rows with a \(frame, point\) pair repeated'),
    ('frame,point,x,y\n0,0,1.5\n', 'expected rows of 4 numbers under the header'),
    ('frame,point,x,y\n0,0,left,2\n', 'cannot read this CSV'),
])
def test_malformed_csv_files_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / 'bad.csv'
    path.write_text(content)
    with pytest.raises(TrackFileError, match=message) as error:
        read_csv(path)
    assert str(path) in str(error.value)


def write_clip_tapvid(folder, tracks, visible):
    """<folder>/clip.tapvid.pkl (and clip.npz) of the tracks on a moving texture; returns its frames."""
    frames = moving_video(T, H, W)
    paths = output_paths(str(folder), 'clip', overlay=False, formats='tapvid')
    write_outputs(paths, trajs=tracks, queries=np.zeros((N, 3)), fps=10.0, settings={}, frames=iter(frames),
                  visible=visible)
    return frames


def test_tapvid_file_has_tapvids_layout_and_round_trips(tmp_path):
    tracks, visible, _ = random_tracks(2)
    path = tmp_path / 'clip.tapvid.pkl'
    frames = write_clip_tapvid(tmp_path, tracks, visible)
    with open(path, 'rb') as f:
        data = pickle.load(f)
    assert list(data) == ['clip'] and sorted(data['clip']) == ['occluded', 'points', 'video']
    video = data['clip']
    assert video['points'].shape == (N, T, 2) and video['points'].dtype == np.float32
    assert video['occluded'].shape == (N, T) and video['occluded'].dtype == bool
    assert all(isinstance(jpeg, bytes) and jpeg[:2] == b'\xff\xd8' for jpeg in video['video'])
    np.testing.assert_array_equal(video['occluded'], ~visible.T)
    name, back, back_visible, back_frames = read_tapvid(path)
    assert name == 'clip'
    np.testing.assert_array_equal(back_visible, visible)
    # two float32 roundings of values up to 3 x 144 px: at most 2 * 2**-24 * 432 = 5e-5 px
    np.testing.assert_allclose(back, tracks, rtol=0, atol=1e-4)
    assert back_frames.shape == frames.shape
    assert np.abs(back_frames.astype(float) - frames).mean() < 3.0  # JPEG quality 95: 2.4 grey levels here


def test_project_tapvid_loader_reads_the_tapvid_output(tmp_path):
    tracks, visible, _ = random_tracks(3)
    visible[0, 1] = False  # the PIPs++ protocol keeps the points visible at frame 0
    write_clip_tapvid(tmp_path, tracks, visible)
    shutil.copy(tmp_path / 'clip.tapvid.pkl', tmp_path / 'tapvid_davis.pkl')
    sample, = list(TapVidDavis(str(tmp_path), 'davis'))
    assert sample['name'] == 'clip' and tuple(sample['rgbs'].shape) == (T, 3, H, W)
    kept = visible[0]
    # x / (W-1) in float32 and back: at most 2 float32 roundings of 432 px, 5e-5 px
    np.testing.assert_allclose(sample['trajs'].numpy(), tracks[:, kept], rtol=0, atol=1e-4)
    np.testing.assert_array_equal(sample['valids'].numpy(), visible[:, kept].astype(np.float32))


def test_without_visibility_every_point_is_marked_visible(tmp_path):
    tracks, _, _ = random_tracks(4)
    path = tmp_path / 'v.tapvid.pkl'
    write_tapvid(path, tracks, [b'jpeg'] * T, (H, W))
    with open(path, 'rb') as f:
        assert not pickle.load(f)['v']['occluded'].any()


def test_all_formats_and_the_overlay_come_from_one_pass_over_the_frames(tmp_path):
    tracks, _, _ = random_tracks(5)
    frames = np.ascontiguousarray(moving_video(T + 3, H, W))  # longer: only the tracked frames are written
    reads = []

    def one_pass():
        for frame in frames:
            reads.append(1)
            yield frame

    paths = output_paths(str(tmp_path), 'clip', overlay=True, formats='csv,tapvid')
    assert sorted(os.path.basename(p) for p in paths.values()) == [
        'clip.csv', 'clip.mp4', 'clip.npz', 'clip.tapvid.pkl']  # the .npz, the run's record, always
    queries = np.array([[0, 1.0, 2.0]] * N)
    write_outputs(paths, trajs=tracks, queries=queries, fps=10.0, settings={'S': 8}, frames=one_pass())
    assert len(reads) <= T + 1
    assert video_info(paths['mp4'])[:3] == (T, H, W)
    np.testing.assert_array_equal(np.load(paths['npz'])['trajs'], tracks)
    np.testing.assert_array_equal(read_csv(paths['csv'])[0], tracks)
    assert len(read_tapvid(paths['tapvid'])[3]) == T


def test_formats_are_checked_by_name():
    assert check_formats('npz,csv') == ('npz', 'csv')
    assert check_formats(('tapvid', 'npz', 'tapvid')) == ('tapvid', 'npz')
    for bad in ('npz,json', '', ()):
        with pytest.raises(SettingsError, match='--formats takes names from npz,csv,tapvid'):
            check_formats(bad)
