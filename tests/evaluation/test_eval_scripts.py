"""The benchmarks (evaluation/benchmarks.py) and their scripts (test_on_tap.py, test_on_cro.py,
test_on_pod.py) end to end, on golden and fixture data."""

import json
import os
import pickle

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from datasets.common import DatasetError
from datasets.pointodysseydataset_fullseq import PointOdysseyTestSequences
from evaluation.benchmarks import RunSettings, evaluate_cro, evaluate_pod, evaluate_tap
from evaluation.results import ResultsError
from saverloader import CheckpointError
from tests.fixtures.crohd import write_crohd
from tests.fixtures.pointodyssey import write_dataset
from tests.fixtures.scripts import ROOT
from tests.golden import DATA
from tracking import BENCHMARK
from utils.errors import SettingsError
from utils.metrics import paper_metrics

TAPVID_DEV = os.path.join(DATA, 'tapvid_dev')


def settings(tmp_path, checkpoint, **changes):
    """A benchmark run's settings with its logs and JSON in ``tmp_path``."""
    return RunSettings(init_dir=checkpoint, log_dir=str(tmp_path / 'logs'), out_json=str(tmp_path / 'out.json'),
                       **changes)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def test_tap_script_reproduces_the_original_metrics(tmp_path, golden_checkpoint, run_script):
    out_json = tmp_path / 'tap.json'
    out = run_script('test_on_tap.py', f'--log_dir={tmp_path}/logs', f'--dataset_location={TAPVID_DEV}',
                     f'--init_dir={golden_checkpoint}', '--S=8', '--iters=3', '--image_size=128,160',
                     f'--out_json={out_json}')
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


def test_tap_strided_protocol(tmp_path, golden_checkpoint, capsys):
    options = BENCHMARK.replace(S=8, iters=1, image_size=(128, 128))
    evaluate_tap(dataset_location=TAPVID_DEV, query_mode='tapvid_strided', options=options,
                 run=settings(tmp_path, golden_checkpoint))
    out = capsys.readouterr().out
    assert '; delta_avg ' in out and '; AJ ' in out
    mean = read_json(tmp_path / 'out.json')['mean']
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


def test_tap_skips_videos_without_visible_points_or_with_one_frame(tmp_path, golden_checkpoint, capsys):
    write_pickle(tmp_path / 'tapvid_davis.pkl', {'empty': tiny_video(occluded0=True), 'ok': tiny_video(),
                                                 'still': tiny_video(T=1)})
    evaluate_tap(dataset_location=str(tmp_path), options=BENCHMARK.replace(S=8, iters=1, image_size=(128, 128)),
                 run=settings(tmp_path, golden_checkpoint))
    out = capsys.readouterr().out
    assert 'skipping empty: no point is visible at frame 0' in out
    assert 'skipping still: 1 frame(s): tracking needs at least 2' in out
    result = read_json(tmp_path / 'out.json')
    assert [v['name'] for v in result['per_video']] == ['ok']
    assert [v['name'] for v in result['skipped']] == ['empty', 'still']
    assert all(np.isfinite(v) for v in result['mean'].values())


def test_an_empty_dataset_is_an_error_before_the_model_is_loaded(tmp_path):
    write_pickle(tmp_path / 'tapvid_davis.pkl', {})
    with pytest.raises(DatasetError, match=f'^{tmp_path}: no videos to evaluate here$'):
        evaluate_tap(dataset_location=str(tmp_path), options=BENCHMARK, run=settings(tmp_path, './nowhere'))


def test_a_rerun_does_not_replace_earlier_results_unless_told(tmp_path, golden_checkpoint):
    for earlier in ('out.jsonl', 'out.jsonl.rank1', 'out.json'):
        (tmp_path / earlier).write_text('{}\n')
        with pytest.raises(ResultsError, match=f'^{tmp_path / earlier}: holds the results of an earlier run; pass '
                                               '--resume=True to go on from them, --overwrite=True to replace them'):
            evaluate_tap(dataset_location=TAPVID_DEV, options=BENCHMARK, run=settings(tmp_path, './nowhere'))
        (tmp_path / earlier).unlink()
    (tmp_path / 'out.jsonl').write_text('{}\n')
    with pytest.raises(CheckpointError):  # told to: it goes on to the model
        evaluate_tap(dataset_location=TAPVID_DEV, options=BENCHMARK, run=settings(tmp_path, './nowhere',
                                                                                   overwrite=True))
    with pytest.raises(SettingsError, match='choose one'):
        settings(tmp_path, './nowhere', overwrite=True, resume=True)
    with pytest.raises(SettingsError, match="--overwrite must be True or False; got 'Flase'"):
        settings(tmp_path, './nowhere', overwrite='Flase')  # a misspelt flag never replaces results


@pytest.mark.parametrize('make, message', [
    (lambda d: None, 'tapvid_davis.pkl: no such file'),
    (lambda d: (d / 'tapvid_davis.pkl').write_bytes(b'junk'), 'cannot read this pickle'),
    (lambda d: write_pickle(d / 'tapvid_davis.pkl', {'v': {'video': np.zeros((2, 8, 8, 3), np.uint8)}}),
     "video v has no 'points' entry"),
])
def test_tap_bad_datasets(tmp_path, golden_checkpoint, make, message):
    make(tmp_path)
    with pytest.raises(DatasetError, match=message):
        evaluate_tap(dataset_location=str(tmp_path), options=BENCHMARK, run=settings(tmp_path, golden_checkpoint))


def test_cro_end_to_end(tmp_path, golden_checkpoint):
    write_crohd(str(tmp_path / 'crohd'), T=40)
    evaluate_cro(dataset_location=str(tmp_path / 'crohd'), min_clip_len=16,
                 options=BENCHMARK.replace(S=16, iters=1, image_size=(128, 160)),
                 run=settings(tmp_path, golden_checkpoint))
    result = read_json(tmp_path / 'out.json')
    assert [v['name'] for v in result['per_video']] == ['HT21-01_000000']
    assert set(result['mean']) == {'d_1', 'd_2', 'd_4', 'd_8', 'd_16', 'd_avg', 'survival', 'median_l2'}
    assert all(np.isfinite(v) for v in result['mean'].values())


@pytest.mark.parametrize('legacy', [False, True])
def test_pod_end_to_end(tmp_path, golden_checkpoint, legacy):
    write_dataset(str(tmp_path / 'pod'), dset='test', n_seqs=1, T=20, H=128, W=192, N=80, legacy=legacy)
    evaluate_pod(dataset_location=str(tmp_path / 'pod'), N=16,
                 options=BENCHMARK.replace(S=8, iters=1, image_size=(128, 192)),
                 run=settings(tmp_path, golden_checkpoint))
    result = read_json(tmp_path / 'out.json')
    assert [v['name'] for v in result['per_video']] == ['seq_000']
    assert 0 <= result['mean']['d_avg'] <= 100


def test_pod_zero_motion_baseline_holds_each_point_at_its_frame_0_position(tmp_path):
    write_dataset(str(tmp_path / 'pod'), dset='test', n_seqs=2, T=12, H=128, W=192, N=80)
    options = BENCHMARK.replace(S=8, iters=1, image_size=(128, 192))
    means = evaluate_pod(dataset_location=str(tmp_path / 'pod'), N=16, options=options, zero_motion=True,
                         run=settings(tmp_path, './nowhere'))  # no model is loaded
    expected = []
    for sample in PointOdysseyTestSequences(str(tmp_path / 'pod'), dset='test', N=16):
        trajs = torch.from_numpy(sample['trajs'])[None]  # 1,T,n,2 at the model's size already
        expected.append(paper_metrics(trajs[:, :1].expand_as(trajs), trajs, sample['valids'][None], 128, 192))
    assert len(expected) == 2 and expected[0]['d_avg'] < 100  # the fixture's points move
    for key, value in means.items():
        assert value == pytest.approx(np.mean([e[key] for e in expected]), rel=1e-6), key
    assert read_json(tmp_path / 'out.json')['mean'] == means


def test_missing_checkpoint_says_what_to_do(tmp_path):
    # the dataset is checked first: its problem is reported before the model's
    with pytest.raises(DatasetError, match='no sequence folders'):
        evaluate_pod(dataset_location=str(tmp_path), options=BENCHMARK, run=settings(tmp_path, './nowhere'))
    write_dataset(str(tmp_path), dset='test', n_seqs=1, T=10, H=128, W=128, N=20)
    with pytest.raises(CheckpointError, match='sh get_reference_model.sh'):
        evaluate_pod(dataset_location=str(tmp_path), options=BENCHMARK, run=settings(tmp_path, './nowhere'))


def test_no_cuda_hard_coded():
    for script in ('demo.py', 'train.py', 'test_on_tap.py', 'test_on_cro.py', 'test_on_pod.py'):
        assert '.cuda()' not in open(os.path.join(ROOT, script)).read()


def test_resume_and_overwrite_together_are_one_line(tmp_path, run_script):
    out = run_script('test_on_pod.py', '--resume=True', '--overwrite=True', cwd=tmp_path)
    assert out.returncode == 1 and out.stderr == ('error: --resume=True goes on from the earlier results and '
                                                  '--overwrite=True replaces them: choose one\n')
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('script', ['test_on_tap.py', 'test_on_cro.py', 'test_on_pod.py', 'track_videos.py'])
def test_bad_precision_is_one_line(tmp_path, script, run_script):
    out = run_script(script, '--precision=int8', cwd=tmp_path)
    assert out.returncode == 1 and 'Traceback' not in out.stderr
    assert out.stderr == "error: precision must be one of fp32, bf16, fp16; got 'int8'\n"
