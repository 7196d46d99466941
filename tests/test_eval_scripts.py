"""test_on_tap.py / test_on_cro.py / test_on_pod.py end to end, on golden and fixture data."""

import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.fixtures.crohd import write_crohd
from tests.fixtures.pointodyssey import write_dataset
from tests.golden import DATA, save_golden_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TAPVID_DEV = os.path.join(DATA, 'tapvid_dev')


@pytest.fixture(scope='module')
def golden_ckpt(tmp_path_factory):
    return save_golden_checkpoint(tmp_path_factory.mktemp('golden_ckpt'))


def run_script(script, tmp_path, *args):
    cmd = [sys.executable, os.path.join(ROOT, script), f'--log_dir={tmp_path}/logs', *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_tap_reproduces_the_original_metrics(tmp_path, golden_ckpt):
    out_json = tmp_path / 'tap.json'
    out = run_script('test_on_tap.py', tmp_path, f'--dataset_location={TAPVID_DEV}', f'--init_dir={golden_ckpt}',
                     '--S=8', '--iters=3', '--image_size=128,160', f'--out_json={out_json}')
    assert out.returncode == 0, out.stderr
    assert '; step 000002/2; rtime ' in out.stdout and '; d_x ' in out.stdout and '; med_x ' in out.stdout
    result = json.loads(out_json.read_text())
    with open(os.path.join(TAPVID_DEV, 'expected_metrics.json')) as f:
        expected = json.load(f)
    assert [v['name'] for v in result['per_video']] == ['dog', 'cat']
    for got, want in zip(result['per_video'] + [result['mean']], expected['per_video'] + [expected['mean']]):
        for key in ('d_avg', 'survival', 'median_l2'):
            assert got[key] == pytest.approx(want[key], abs=0.5), key
    # the TAP-Vid family of the same tracks: the same distances at 256 scale, as fractions
    assert 0 <= result['mean']['average_jaccard'] <= result['mean']['average_pts_within_thresh'] <= 1
    assert result['mean']['pts_within_16'] == pytest.approx(result['mean']['d_16'] / 100, abs=0.02)
    run = os.listdir(tmp_path / 'logs')[0]
    events = EventAccumulator(str(tmp_path / 'logs' / run / 'x'))
    events.Reload()
    assert events.Scalars('_/d_avg')[-1].value == pytest.approx(expected['mean']['d_avg'], abs=0.5)


def test_tap_strided_protocol(tmp_path, golden_ckpt):
    out_json = tmp_path / 'tap.json'
    out = run_script('test_on_tap.py', tmp_path, f'--dataset_location={TAPVID_DEV}', f'--init_dir={golden_ckpt}',
                     '--S=8', '--iters=1', '--image_size=128,128', '--query_mode=tapvid_strided',
                     f'--out_json={out_json}')
    assert out.returncode == 0, out.stderr
    assert '; delta_avg ' in out.stdout and '; AJ ' in out.stdout
    mean = json.loads(out_json.read_text())['mean']
    assert set(mean) >= {'average_jaccard', 'average_pts_within_thresh', 'occlusion_accuracy'}
    assert 'd_avg' not in mean


def write_pickle(path, videos):
    with open(path, 'wb') as f:
        pickle.dump(videos, f)


def tiny_video(T=6, N=4, occluded0=False):
    rng = np.random.default_rng(0)
    occluded = np.zeros((N, T), bool)
    occluded[:, 0] = occluded0
    return {'video': rng.integers(0, 255, (T, 128, 128, 3), dtype=np.uint8),
            'points': rng.uniform(0.2, 0.8, (N, T, 2)).astype(np.float32), 'occluded': occluded}


def test_tap_skips_a_video_without_visible_points(tmp_path, golden_ckpt):
    write_pickle(tmp_path / 'tapvid_davis.pkl', {'empty': tiny_video(occluded0=True), 'ok': tiny_video()})
    out_json = tmp_path / 'tap.json'
    out = run_script('test_on_tap.py', tmp_path, f'--dataset_location={tmp_path}', f'--init_dir={golden_ckpt}',
                     '--S=8', '--iters=1', '--image_size=128,128', f'--out_json={out_json}')
    assert out.returncode == 0, out.stderr
    assert 'skipping empty: no point is visible at frame 0' in out.stdout
    result = json.loads(out_json.read_text())
    assert [v['name'] for v in result['per_video']] == ['ok']
    assert all(np.isfinite(v) for v in result['mean'].values())


@pytest.mark.parametrize('make, message', [
    (lambda d: None, 'tapvid_davis.pkl: no such file'),
    (lambda d: (d / 'tapvid_davis.pkl').write_bytes(b'junk'), 'cannot read this pickle'),
    (lambda d: write_pickle(d / 'tapvid_davis.pkl', {'v': {'video': np.zeros((2, 8, 8, 3), np.uint8)}}),
     "video v has no 'points' entry"),
])
def test_tap_bad_datasets(tmp_path, golden_ckpt, make, message):
    make(tmp_path)
    out = run_script('test_on_tap.py', tmp_path, f'--dataset_location={tmp_path}', f'--init_dir={golden_ckpt}')
    assert out.returncode == 1
    assert message in out.stderr and 'Traceback' not in out.stderr


def test_cro_end_to_end(tmp_path, golden_ckpt):
    write_crohd(str(tmp_path / 'crohd'), T=40)
    out_json = tmp_path / 'cro.json'
    out = run_script('test_on_cro.py', tmp_path, f'--dataset_location={tmp_path}/crohd', f'--init_dir={golden_ckpt}',
                     '--S=16', '--iters=1', '--image_size=128,160', '--min_clip_len=16', f'--out_json={out_json}')
    assert out.returncode == 0, out.stderr
    result = json.loads(out_json.read_text())
    assert [v['name'] for v in result['per_video']] == ['HT21-01_000000']
    assert set(result['mean']) == {'d_1', 'd_2', 'd_4', 'd_8', 'd_16', 'd_avg', 'survival', 'median_l2'}
    assert all(np.isfinite(v) for v in result['mean'].values())


@pytest.mark.parametrize('legacy', [False, True])
def test_pod_end_to_end(tmp_path, golden_ckpt, legacy):
    write_dataset(str(tmp_path / 'pod'), dset='test', n_seqs=1, T=20, H=128, W=192, N=80, legacy=legacy)
    out_json = tmp_path / 'pod.json'
    out = run_script('test_on_pod.py', tmp_path, f'--dataset_location={tmp_path}/pod', f'--init_dir={golden_ckpt}',
                     '--S=8', '--iters=1', '--image_size=128,192', '--N=16', f'--out_json={out_json}')
    assert out.returncode == 0, out.stderr
    result = json.loads(out_json.read_text())
    assert [v['name'] for v in result['per_video']] == ['seq_000']
    assert 0 <= result['mean']['d_avg'] <= 100


def test_missing_checkpoint_says_what_to_do(tmp_path):
    out = run_script('test_on_pod.py', tmp_path, f'--dataset_location={tmp_path}', '--init_dir=./nowhere')
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    # the dataset is checked first: its problem is reported before the model's
    assert 'no sequence folders' in out.stderr
    write_dataset(str(tmp_path), dset='test', n_seqs=1, T=10, H=128, W=128, N=20)
    out = run_script('test_on_pod.py', tmp_path, f'--dataset_location={tmp_path}', '--init_dir=./nowhere')
    assert out.returncode == 1 and 'sh get_reference_model.sh' in out.stderr


def test_no_cuda_hard_coded():
    for script in ('demo.py', 'train.py', 'test_on_tap.py', 'test_on_cro.py', 'test_on_pod.py'):
        assert '.cuda()' not in open(os.path.join(ROOT, script)).read()


@pytest.mark.parametrize('script', ['test_on_tap.py', 'test_on_cro.py', 'test_on_pod.py', 'track_videos.py'])
def test_bad_precision_is_one_line(tmp_path, script):
    out = run_script(script, tmp_path, '--precision=int8')
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    assert "--precision must be one of fp32, bf16, fp16; got 'int8'" in out.stderr
