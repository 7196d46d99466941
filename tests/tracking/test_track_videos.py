"""Batch tracking (tracking/batch.py, track_videos.py): many videos, sharded over ranks,
resumable, robust."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.fixtures.scripts import ROOT, run_script, script_command
from tests.fixtures.tapvid import make_video
from tracking import INTERACTIVE
from tracking.batch import BatchFailed, run_batch
from tracking.formats import read_csv, read_tapvid
from tracking.outputs import write_outputs
from tracking.queries import grid_queries, stride_grid_queries
from utils.distributed import Ranks
from utils.errors import PipsError, SettingsError
from utils.files import HOST
from utils.video import video_info, write_mp4

FAST = ['--S=8', '--iters=1', '--image_size=128,160', '--N=16']
OPTIONS = INTERACTIVE.replace(S=8, iters=1, image_size=(128, 160))
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


def run_main(videos, out_dir, options=OPTIONS, **kwargs):
    """run_batch in this process, with untrained weights, as track_videos.py calls it; returns
    the PipsError it raised, or None."""
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


def listing(folder):
    return {name: os.stat(os.path.join(folder, name)).st_mtime_ns for name in sorted(os.listdir(folder))}


def test_outputs_never_overwrite_inputs(tmp_path, capsys):
    videos = write_videos(str(tmp_path / 'videos'), names=('v0',))
    before = listing(videos)
    error = run_main(videos=videos, out_dir=videos, overlay=True)
    assert isinstance(error, SettingsError)
    assert str(error) == (f'{videos}: the 1 videos found lie in --out_dir={videos}, whose files are outputs, never '
                          'inputs: write the outputs to another folder')
    (tmp_path / 'list.txt').write_text('videos/v0.mp4\n')
    error = run_main(videos=str(tmp_path / 'list.txt'), out_dir=videos, overlay=True)
    assert isinstance(error, SettingsError)
    assert str(error) == (f'{videos}/v0.mp4: this output would overwrite the input {tmp_path}/videos/v0.mp4; write '
                          'the outputs elsewhere (--out_dir)')
    assert listing(videos) == before and 'tracking' not in capsys.readouterr().out


def test_a_recursive_glob_never_takes_its_own_overlays(tmp_path, capsys, one_thread):
    write_videos(str(tmp_path / 'data' / 'day1'), names=('a', 'b'))
    pattern, out_dir = str(tmp_path / 'data' / '**' / '*.mp4'), str(tmp_path / 'data' / 'tracks')
    assert run_main(videos=pattern, out_dir=out_dir, overlay=True) is None
    assert sorted(os.listdir(out_dir)) == ['a.mp4', 'a.npz', 'b.mp4', 'b.npz']
    assert run_main(videos=pattern, out_dir=out_dir, overlay=True) is None
    assert '2 videos: 0 tracked, 2 already done, 0 failed' in capsys.readouterr().out


def test_outputs_record_their_settings_and_a_rerun_with_others_is_refused(tmp_path, capsys, one_thread):
    videos, out_dir = write_videos(str(tmp_path / 'videos'), names=('a', 'b')), tmp_path / 'out'
    assert run_main(videos=videos, out_dir=str(out_dir)) is None
    settings = json.loads(str(np.load(out_dir / 'a.npz')['settings']))
    assert settings == {'S': 8, 'iters': 1, 'image_size': [128, 160], 'beautify': True, 'last_window': 'short',
                        'precision': 'fp32', 'confidence': True, 'consistency': True, 'checkpoint': '',
                        'queries': 'grid of 16 points on frame 0'}
    written = listing(out_dir)
    error = run_main(videos=videos, out_dir=str(out_dir), options=OPTIONS.replace(S=6))
    assert str(error) == (f'2 of the 2 videos have outputs in {out_dir} made with other settings (a.npz: S: 8 -> 6): '
                          'to keep them, write to another --out_dir; to redo them, delete their .npz files')
    error = run_main(videos=videos, out_dir=str(out_dir), grid_stride=32)
    assert "(a.npz: queries: grid of 16 points on frame 0 -> every 32th pixel of frame 0)" in str(error)
    assert listing(out_dir) == written
    np.savez(out_dir / 'b.npz', trajs=np.zeros((T, 16, 2), np.float32))  # as an earlier version wrote it
    error = run_main(videos=videos, out_dir=str(out_dir))
    assert str(error).startswith('1 of the 2 videos have outputs in ') and '(b.npz: no settings recorded' in str(error)
    (out_dir / 'b.npz').write_bytes(b'truncated')  # unreadable: tracked again
    capsys.readouterr()
    assert run_main(videos=videos, out_dir=str(out_dir)) is None
    assert '2 videos: 1 tracked, 1 already done, 0 failed' in capsys.readouterr().out
    assert json.loads(str(np.load(out_dir / 'b.npz')['settings'])) == settings


def test_a_failing_disk_fails_its_video_and_the_batch_goes_on(tmp_path, capsys, monkeypatch, one_thread):
    videos, out_dir = write_videos(str(tmp_path / 'videos')), str(tmp_path / 'out')
    dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True)
    os.makedirs(out_dir)
    left = os.path.join(out_dir, f'.v0.npz.tmp.{HOST}.{int(dead.stdout)}')  # a killed run's temporary
    open(left, 'wb').close()
    real_write = write_outputs

    def write(paths, **kwargs):
        if paths['npz'].endswith('v1.npz'):
            raise OSError(errno.ENOSPC, 'No space left on device', paths['npz'])
        real_write(paths, **kwargs)

    monkeypatch.setattr('tracking.batch.write_outputs', write)
    error = run_main(videos=videos, out_dir=out_dir)
    out = capsys.readouterr().out
    assert isinstance(error, BatchFailed) and '3 videos: 2 tracked, 0 already done, 1 failed' in out
    assert f'failed v1: {out_dir}/v1.npz: No space left on device' in out
    assert sorted(os.listdir(out_dir)) == ['v0.npz', 'v2.npz']


def test_an_unwritable_output_folder_is_found_before_any_work(tmp_path, capsys):
    videos = write_videos(str(tmp_path / 'videos'), names=('a',))
    (tmp_path / 'file').write_text('x')
    error = run_main(videos=videos, out_dir=str(tmp_path / 'file' / 'out'))
    assert str(error) == (f'{tmp_path}/file/out: cannot write here (Not a directory); --out_dir must be a writable '
                          'folder')
    assert capsys.readouterr().out == ''


def test_a_video_too_small_for_its_settings_fails_alone(tmp_path, capsys, one_thread):
    folder = str(tmp_path / 'videos')
    write_mp4(os.path.join(folder, 'big.mp4'), make_video(T=4, H=128, W=160)['video'])
    write_mp4(os.path.join(folder, 'small.mp4'), make_video(T=4, H=96, W=160)['video'])
    error = run_main(videos=folder, out_dir=str(tmp_path / 'out'), options=OPTIONS.replace(image_size=None))
    out = capsys.readouterr().out
    assert isinstance(error, BatchFailed) and '2 videos: 1 tracked, 0 already done, 1 failed' in out
    assert 'failed small: the video is 160x96 but the model runs on frames of at least 128x128' in out


@pytest.mark.parametrize('stop', ['kill', 'group SIGTERM'])
def test_a_killed_batch_resumes_where_it_stopped(tmp_path, golden_checkpoint, stop):
    names = ('v0', 'v1', 'v2', 'v3')
    videos, out_dir = write_videos(str(tmp_path / 'videos'), names=names), tmp_path / 'tracks'
    args = [f'--videos={videos}', f'--out_dir={out_dir}', f'--init_dir={golden_checkpoint}', '--overlay=True', *FAST]
    process = subprocess.Popen(script_command('track_videos.py', *args), cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, 'OMP_NUM_THREADS': '1'},
                               start_new_session=True)
    deadline = time.time() + 120
    while not (out_dir / 'v0.npz').exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    if stop == 'kill':
        process.kill()
        process.wait()
    else:  # as a cluster stops a job: the whole group
        os.killpg(process.pid, signal.SIGTERM)
        stderr = process.communicate(timeout=60)[1]
        assert process.returncode == 130
        assert stderr.splitlines()[-1] == (f'interrupted: the finished videos are kept in {out_dir}, none '
                                           'half-written; run the same command again to track the rest')
    done = sorted(name for name in os.listdir(out_dir) if name.endswith('.npz'))
    assert 1 <= len(done) < len(names)
    again = run_script('track_videos.py', *args)
    assert again.returncode == 0, again.stderr
    assert f'4 videos: {4 - len(done)} tracked, {len(done)} already done, 0 failed' in again.stdout
    assert sorted(os.listdir(out_dir)) == sorted(f'{name}.{ext}' for name in names for ext in ('mp4', 'npz'))
    other = run_script('track_videos.py', *args[:-4], '--S=6', *args[-3:])
    assert other.returncode == 1 and other.stderr.count('\n') == 1
    assert other.stderr.startswith('error: 4 of the 4 videos have outputs in') and '(v0.npz: S: 8 -> 6)' in other.stderr


def test_chosen_formats_are_written_and_count_as_done(tmp_path, capsys, one_thread):
    write_videos(str(tmp_path / 'videos'), names=('a',))
    videos, out_dir = str(tmp_path / 'videos'), tmp_path / 'out'
    assert run_main(videos=videos, out_dir=str(out_dir), formats='csv') is None
    assert sorted(os.listdir(out_dir)) == ['a.csv', 'a.npz']  # the .npz, the run's record, always
    np.testing.assert_array_equal(read_csv(out_dir / 'a.csv')[0], np.load(out_dir / 'a.npz')['trajs'])
    assert run_main(videos=videos, out_dir=str(out_dir), formats=('npz', 'csv')) is None
    assert '1 videos: 0 tracked, 1 already done' in capsys.readouterr().out
    assert run_main(videos=videos, out_dir=str(out_dir), formats='tapvid') is None
    assert '1 videos: 1 tracked, 0 already done' in capsys.readouterr().out
    assert read_tapvid(out_dir / 'a.tapvid.pkl')[3].shape == (T, H, W, 3)
