"""demo.py end to end on the stock clip with untrained weights, and its bad-input errors."""

import filecmp
import json
import os
import shutil
import subprocess
import sys

import av
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import saverloader
from nets.pips2 import Pips
from tests.fixtures.faults import preexec_file_size_limit
from tests.fixtures.scripts import ROOT, script_command
from tracking.formats import read_csv, read_tapvid
from tracking.queries import default_queries
from utils.video import write_mp4

CLIP = os.path.join(ROOT, 'stock_videos', 'bunny.mp4')
FAST = ['--S=8', '--iters=1', '--image_size=128,224']


@pytest.fixture(scope='module')
def untrained_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp('untrained')
    torch.manual_seed(0)
    saverloader.save(str(folder), None, Pips(), 1)
    return str(folder)


def run_demo(tmp_path, *args, cwd=ROOT):
    cmd = [sys.executable, os.path.join(ROOT, 'demo.py'), f'--out_dir={tmp_path}/out',
           f'--log_dir={tmp_path}/logs', *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_demo_writes_tracks_video_and_tensorboard(tmp_path, untrained_dir):
    out = run_demo(tmp_path, f'--init_dir={untrained_dir}', '--N=16', '--max_iters=2', *FAST)
    assert out.returncode == 0, out.stderr
    assert 'inference time:' in out.stdout and '; step 000001/3; itime' in out.stdout
    data = np.load(tmp_path / 'out' / 'bunny.npz')
    assert data['trajs'].shape == (16, 16, 2) and data['trajs'].dtype == np.float32
    assert data['queries'].shape == (16, 3) and float(data['fps']) == 25.0
    settings = json.loads(str(data['settings']))
    assert settings == {'S': 8, 'iters': 1, 'image_size': [128, 224], 'beautify': True, 'last_window': 'short',
                        'precision': 'fp32', 'confidence': True, 'consistency': True,
                        'checkpoint': os.path.realpath(f'{untrained_dir}/model-000000001.pth'),
                        'queries': 'grid of 16 points on frame 0', 'timestride': 1, 'frames': 16}
    # the grid spans the 640x360 clip (not the 224x128 model input), 8 model pixels in
    np.testing.assert_allclose(data['trajs'][0], data['queries'][:, 1:])
    q = data['queries']
    assert q[:, 1].min() == pytest.approx(8 * 640 / 224)
    assert q[:, 1].max() == pytest.approx(640 - 8 * 640 / 224)
    assert q[:, 2].max() == pytest.approx(360 - 8 * 360 / 128)
    with av.open(str(tmp_path / 'out' / 'bunny.mp4')) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == 'h264'
        assert (stream.codec_context.width, stream.codec_context.height) == (640, 360)
        assert sum(1 for _ in container.decode(video=0)) == 16
    runs = os.listdir(tmp_path / 'logs')
    events = EventAccumulator(str(tmp_path / 'logs' / runs[0] / 't'), size_guidance={'images': 0})
    events.Reload()
    assert 'outputs/trajs_on_rgbs' in events.Tags()['images']


def test_demo_queries_file_at_a_later_frame(tmp_path, untrained_dir):
    queries = tmp_path / 'q.csv'
    queries.write_text('t,x,y\n0,100.5,200.0\n5,320.0,180.0\n')
    out = run_demo(tmp_path, f'--init_dir={untrained_dir}', f'--queries={queries}', '--max_iters=1', *FAST)
    assert out.returncode == 0, out.stderr
    data = np.load(tmp_path / 'out' / 'bunny.npz')
    assert data['trajs'].shape == (8, 2, 2)
    np.testing.assert_array_equal(data['trajs'][5, 1], [320.0, 180.0])
    np.testing.assert_array_equal(data['trajs'][0, 0], [100.5, 200.0])


def test_dense_grid_from_another_folder(tmp_path, untrained_dir):
    out = run_demo(tmp_path, f'--init_dir={untrained_dir}', '--grid_stride=160', '--max_iters=1', *FAST,
                   cwd=tmp_path)  # the default clip is found beside demo.py
    assert out.returncode == 0, out.stderr
    data = np.load(tmp_path / 'out' / 'bunny.npz')
    assert data['trajs'].shape == (8, 4 * 2, 2)  # 640x360: x 79.5..559.5, y 79.5 and 239.5
    np.testing.assert_array_equal(np.unique(data['queries'][:, 2]), [79.5, 239.5])
    assert 'point-frame' in out.stderr  # the progress bar counts tracked work


def test_missing_reference_model_says_how_to_get_it(tmp_path):
    out = run_demo(tmp_path, f'--init_dir={tmp_path}/nothing', *FAST)
    assert out.returncode == 1
    assert 'sh get_reference_model.sh' in out.stderr and 'Traceback' not in out.stderr


def test_empty_init_dir_runs_untrained_with_a_warning(tmp_path):
    out = run_demo(tmp_path, "--init_dir=", '--N=4', '--max_iters=1', *FAST)
    assert out.returncode == 0, out.stderr
    assert 'UNTRAINED' in out.stdout


def test_checkpoint_with_wrong_keys(tmp_path):
    torch.save({'model_state_dict': {'fnet.conv1.weight': torch.zeros(1)}}, tmp_path / 'model-000000001.pth')
    out = run_demo(tmp_path, f'--init_dir={tmp_path}', *FAST)
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    assert 'model-000000001.pth' in out.stderr and 'missing keys' in out.stderr


@pytest.mark.parametrize('make_video, message', [
    (lambda d: d / 'missing.mp4', 'no such file'),
    (lambda d: (d / 'bad.mp4').write_bytes(b'garbage') and d / 'bad.mp4', 'cannot open as a video'),
    (lambda d: (d / 'empty').mkdir() or d / 'empty', 'no .jpg/.png images'),
])
def test_bad_videos(tmp_path, untrained_dir, make_video, message):
    video = make_video(tmp_path)
    out = run_demo(tmp_path, f'--filename={video}', f'--init_dir={untrained_dir}', *FAST)
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    assert str(video) in out.stderr and message in out.stderr


@pytest.mark.parametrize('content, message', [
    ('1,2\n3,4\n', "q.csv, line 1 ('1,2'): 2 values, not 3; expected one query a line, t,x,y"),
    ('0,10,10\n50,10,10\n', 'q.csv: a query is at frame 50 but --max_iters=1 tracks the first 8 of the 96 frames; '
                            '--max_iters=0 tracks them all'),
])
def test_bad_queries_files(tmp_path, untrained_dir, content, message):
    queries = tmp_path / 'q.csv'
    queries.write_text(content)
    out = run_demo(tmp_path, f'--init_dir={untrained_dir}', f'--queries={queries}', '--max_iters=1', *FAST)
    assert out.returncode == 1 and out.stderr.count('\n') == 1
    assert out.stderr.startswith('error: ') and message in out.stderr


def test_the_outputs_never_overwrite_the_video(tmp_path, untrained_dir):
    (tmp_path / 'in').mkdir()
    video = tmp_path / 'in' / 'bunny.mp4'
    shutil.copy(CLIP, video)
    out = run_demo(tmp_path, f'--filename={video}', f'--init_dir={untrained_dir}', f'--out_dir={tmp_path}/in', *FAST)
    assert out.returncode == 1
    assert out.stderr == (f'error: {video}: this output would overwrite the input {video}; write the outputs '
                          'elsewhere (--out_dir)\n')
    assert filecmp.cmp(video, CLIP, shallow=False) and os.listdir(tmp_path / 'in') == ['bunny.mp4']


@pytest.mark.parametrize('args, limit, message', [
    (lambda d: [f'--out_dir={d}/file/out'], None, '/file/out: cannot write here (Not a directory); --out_dir must be'),
    (lambda d: [], 32 << 10, '/out: cannot write here (File too large); --out_dir must be a writable folder'),
])
def test_output_folders_are_checked_before_any_work(tmp_path, untrained_dir, args, limit, message):
    (tmp_path / 'file').write_text('x')
    cmd = script_command('demo.py', f'--out_dir={tmp_path}/out', f'--log_dir={tmp_path}/logs',
                         f'--init_dir={untrained_dir}', *FAST, *args(tmp_path))
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                         preexec_fn=limit and preexec_file_size_limit(limit))
    assert out.returncode == 1 and out.stderr.count('\n') == 1 and message in out.stderr
    assert 'reading ckpt' not in out.stdout and 'inference time' not in out.stdout
    assert not os.path.exists(tmp_path / 'out') or os.listdir(tmp_path / 'out') == []


@pytest.mark.parametrize('args, message', [
    (['--timestride=0'], 'error: timestride must be an integer of at least 1; got 0\n'),
    (['--image_size=None', '--filename=SMALL'], 'error: the video is 112x96 but the model runs on frames of at least '
                                                '128x128 and image_size=None keeps'),
])
def test_arguments_that_cannot_work_are_one_line(tmp_path, untrained_dir, args, message):
    write_mp4(tmp_path / 'small.mp4', np.zeros((4, 96, 112, 3), np.uint8))
    args = [arg.replace('SMALL', str(tmp_path / 'small.mp4')) for arg in args]
    out = run_demo(tmp_path, f'--init_dir={untrained_dir}', *FAST, *args)
    assert out.returncode == 1 and out.stderr.count('\n') == 1 and out.stderr.startswith(message)


def test_bad_precision(tmp_path):
    out = run_demo(tmp_path, '--precision=fp64', *FAST)
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    assert out.stderr == "error: precision must be one of fp32, bf16, fp16; got 'fp64'\n"


def test_demo_writes_the_chosen_track_formats(tmp_path, untrained_dir):
    out = run_demo(tmp_path, f'--init_dir={untrained_dir}', '--N=4', '--max_iters=1', '--formats=csv,tapvid', *FAST)
    assert out.returncode == 0, out.stderr
    folder = tmp_path / 'out'
    assert sorted(os.listdir(folder)) == ['bunny.csv', 'bunny.mp4', 'bunny.npz', 'bunny.tapvid.pkl']
    assert f'wrote {folder}/bunny.npz, {folder}/bunny.csv, {folder}/bunny.tapvid.pkl, {folder}/bunny.mp4;' in out.stdout
    tracks, _, _ = read_csv(folder / 'bunny.csv')
    np.testing.assert_array_equal(np.load(folder / 'bunny.npz')['trajs'], tracks)
    assert tracks.shape == (8, 4, 2)
    np.testing.assert_allclose(tracks[0], default_queries(360, 640, (128, 224), 4)[:, 1:], rtol=1e-6)
    name, from_tapvid, _, frames = read_tapvid(folder / 'bunny.tapvid.pkl')
    assert name == 'bunny' and frames.shape == (8, 360, 640, 3)
    np.testing.assert_allclose(from_tapvid, tracks, rtol=0, atol=1e-4)  # float32 x / (W-1) and back


def test_unknown_track_format(tmp_path):
    out = run_demo(tmp_path, "--init_dir=", '--formats=npz,json', *FAST)
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    assert out.stderr.startswith("error: --formats takes names from npz,csv,tapvid separated by commas; got ")
