"""Batch tracking (tracking/batch.py, track_videos.py): many videos, sharded over ranks,
resumable, robust."""

import os

import numpy as np
import pytest

from tests.fixtures.tapvid import make_video
from tracking import INTERACTIVE
from tracking.batch import BatchFailed, run_batch
from tracking.queries import grid_queries, stride_grid_queries
from utils.distributed import Ranks
from utils.errors import PipsError, SettingsError
from utils.video import video_info, write_mp4

FAST = ['--S=8', '--iters=1', '--image_size=128,160', '--N=16']
H, W, T = 96, 128, 10


def write_videos(folder, names=('v0', 'v1', 'v2')):
    os.makedirs(folder, exist_ok=True)
    for seed, name in enumerate(names):
        write_mp4(os.path.join(folder, f'{name}.mp4'), make_video(T=T, H=H, W=W, seed=seed)['video'], fps=10)
    return folder


def test_two_ranks_track_each_video_once_survive_a_corrupt_one_and_skip_on_rerun(tmp_path, golden_checkpoint,
                                                                                 run_script):
    videos = write_videos(str(tmp_path / 'videos'))
    (tmp_path / 'videos' / 'broken.mp4').write_bytes(b'not a video')
    out_dir = tmp_path / 'tracks'
    args = [f'--videos={videos}', f'--out_dir={out_dir}', f'--init_dir={golden_checkpoint}', '--overlay=True', *FAST]
    first = run_script('track_videos.py', *args, ranks=2)
    assert first.returncode != 0
    assert '4 videos: 3 tracked, 0 already done, 1 failed' in first.stdout
    assert 'failed broken: ' in first.stdout and 'broken.mp4: cannot open as a video' in first.stdout
    for name in ('v0', 'v1', 'v2'):
        assert first.stdout.count(f'tracked {name}: ') == 1
        data = np.load(out_dir / f'{name}.npz')
        queries = grid_queries(128, 160, 16) * [1, W / 160, H / 128]
        np.testing.assert_allclose(data['queries'], queries, rtol=1e-6)
        assert data['trajs'].shape == (T, 16, 2) and data['trajs'].dtype == np.float32
        np.testing.assert_allclose(data['trajs'][0], queries[:, 1:], rtol=1e-5)
        assert float(data['fps']) == 10.0
        assert video_info(str(out_dir / f'{name}.mp4'))[:3] == (T, H, W)
    assert sorted(os.listdir(out_dir)) == ['v0.mp4', 'v0.npz', 'v1.mp4', 'v1.npz', 'v2.mp4', 'v2.npz']

    written = {name: os.stat(out_dir / name).st_mtime_ns for name in os.listdir(out_dir)}
    again = run_script('track_videos.py', *args)
    assert again.returncode == 1, again.stderr
    assert 'error: 1 of 4 videos failed' in again.stderr
    assert '4 videos: 0 tracked, 3 already done, 1 failed' in again.stdout and 'tracked v' not in again.stdout
    assert {name: os.stat(out_dir / name).st_mtime_ns for name in os.listdir(out_dir)} == written


def run_main(videos, out_dir, **kwargs):
    """run_batch in this process, with untrained weights, as track_videos.py calls it; returns
    the PipsError it raised, or None."""
    options = INTERACTIVE.replace(S=8, iters=1, image_size=(128, 160))
    try:
        run_batch(videos, out_dir, options, ranks=Ranks(), init_dir='', N=16, **kwargs)
    except PipsError as exc:
        return exc
    return None


def test_list_file_with_per_video_queries(tmp_path, capsys, one_thread):
    write_videos(str(tmp_path / 'videos'))
    (tmp_path / 'list.txt').write_text('# my clips\nvideos/v0.mp4\n\nvideos/v1.mp4\n')
    (tmp_path / 'queries').mkdir()
    (tmp_path / 'queries' / 'v0.csv').write_text('t,x,y\n3,40.5,30.0\n0,100.0,60.0\n')
    error = run_main(videos=str(tmp_path / 'list.txt'), out_dir=str(tmp_path / 'out'),
                     queries_dir=str(tmp_path / 'queries'))
    out = capsys.readouterr().out
    assert isinstance(error, BatchFailed) and str(error) == '1 of 2 videos failed (listed above)'
    assert '2 videos: 1 tracked, 0 already done, 1 failed' in out
    assert f'failed v1: {tmp_path}/queries/v1.csv: no queries file for' in out
    data = np.load(tmp_path / 'out' / 'v0.npz')
    np.testing.assert_allclose(data['queries'], [[3, 40.5, 30.0], [0, 100.0, 60.0]])
    np.testing.assert_allclose(data['trajs'][3, 0], [40.5, 30.0], rtol=1e-6)  # row t of a query is the query
    assert not (tmp_path / 'out' / 'v1.npz').exists()


def test_glob_with_a_stride_grid(tmp_path, capsys, one_thread):
    write_videos(str(tmp_path / 'videos'), names=('a', 'b'))
    error = run_main(videos=str(tmp_path / 'videos' / 'a*.mp4'), out_dir=str(tmp_path / 'out'), grid_stride=32)
    assert error is None and '1 videos: 1 tracked' in capsys.readouterr().out
    data = np.load(tmp_path / 'out' / 'a.npz')
    np.testing.assert_array_equal(data['queries'], stride_grid_queries(H, W, 32).astype(np.float32))
    assert data['trajs'].shape == (T, (H // 32) * (W // 32), 2)
    assert sorted(os.listdir(tmp_path / 'out')) == ['a.npz']


@pytest.mark.parametrize('make, message', [
    (lambda d: None, 'no videos found'),
    (lambda d: write_videos(str(d / 'in' / 'x')) and write_videos(str(d / 'in'), names=('v0',)),
     'would both be written as v0.npz'),
])
def test_bad_batches_say_why(tmp_path, make, message):
    make(tmp_path)
    pattern = str(tmp_path / 'in' / '**' / '*.mp4')
    error = run_main(videos=pattern, out_dir=str(tmp_path / 'out'))
    assert isinstance(error, SettingsError) and message in str(error)
