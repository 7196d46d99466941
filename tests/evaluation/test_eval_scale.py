"""The benchmark loop at scale: torchrun sharding, resumable results, plots.

A TAP-Vid fixture of four videos (one with no point visible at frame 0, so skipped) is
evaluated once by one process (the reference); the other runs must give the same files.
Every process runs with one thread, as torchrun's workers do, so the numbers are
bit-identical.
"""

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from evaluation.loop import results_location
from evaluation.plots import track_curves, write_plots
from evaluation.results import ResultsError, ResultsFile
from tests.fixtures.scripts import ROOT, run_script, script_command
from tests.fixtures.tapvid import make_video, write_davis
from tests.golden import save_golden_checkpoint
from utils.distributed import Ranks
from utils.errors import SettingsError

NAMES = ('bear', 'dog', 'empty', 'fish')
FAST = ['--S=8', '--iters=1', '--image_size=128,160']
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """(dataset folder, checkpoint folder) shared by the tests."""
    root = tmp_path_factory.mktemp('scale')
    videos = {name: make_video(T=12, seed=i, hidden_at_start=range(6) if name == 'empty' else ())
              for i, name in enumerate(NAMES)}
    write_davis(str(root / 'davis'), videos=videos)
    return str(root / 'davis'), save_golden_checkpoint(root / 'ckpt')


def tap_args(dataset, out_dir, *extra):
    location, ckpt = dataset
    return ['test_on_tap.py', f'--dataset_location={location}', f'--init_dir={ckpt}', f'--log_dir={out_dir}/logs',
            *FAST, *extra]


@pytest.fixture(scope='module')
def reference(dataset, tmp_path_factory):
    """One uninterrupted single-process run: its folder (ref.json, ref.jsonl, plots, logs)."""
    out = tmp_path_factory.mktemp('reference')
    result = run_script(*tap_args(dataset, out, f'--out_json={out}/ref.json'))
    assert result.returncode == 0, result.stderr
    return out


def read(path):
    with open(path) as f:
        return f.read()


def test_reference_run_writes_results_and_plots(reference):
    result = json.loads(read(reference / 'ref.json'))
    assert [v['name'] for v in result['per_video']] == ['bear', 'dog', 'fish']
    assert result['skipped'] == [{'name': 'empty', 'reason': 'no point is visible at frame 0'}]
    lines = read(reference / 'ref.jsonl').splitlines()
    assert json.loads(lines[0])['config']['query_mode'] == 'first'
    records = [json.loads(line) for line in lines[1:]]
    assert [r['index'] for r in records] == [0, 1, 2, 3] and records[2]['skipped']
    for record, per_video in zip([records[i] for i in (0, 1, 3)], result['per_video']):
        assert {'name': record['name'], **record['metrics']} == per_video
        # the survival curve holds the paper's survival metric: its mean over frames
        curves = record['curves']
        assert np.mean(np.array(curves['alive']) / curves['tracks']) * 100 == pytest.approx(
            record['metrics']['survival'], abs=1e-3)
    for plot, size in (('survival', (800, 450)), ('per_video', (800, 900)), ('error_by_frame', (800, 450))):
        path = reference / f'ref_{plot}.png'
        assert read_bytes(path)[:8] == PNG_SIGNATURE
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.size == size
    run_dir = next((reference / 'logs').iterdir())
    events = EventAccumulator(str(run_dir / 'x'), size_guidance={'images': 0})
    events.Reload()
    assert {'plots/survival', 'plots/per_video', 'plots/error_by_frame'} <= set(events.Tags()['images'])


def read_bytes(path):
    with open(path, 'rb') as f:
        return f.read()


def test_two_ranks_give_the_single_process_results(dataset, reference, tmp_path):
    result = run_script(*tap_args(dataset, tmp_path, f'--out_json={tmp_path}/ref.json'), ranks=2)
    assert result.returncode == 0, result.stderr
    assert read(tmp_path / 'ref.json') == read(reference / 'ref.json')
    assert read(tmp_path / 'ref.jsonl') == read(reference / 'ref.jsonl')  # merged in index order
    assert not list(tmp_path.glob('ref.jsonl.rank*'))  # the part files are merged away
    for step in ('000001/4', '000002/4', '000004/4'):
        assert result.stdout.count(f'; step {step}; ') == 1
    assert result.stdout.count('wrote plots') == 1  # rank 0 alone reports


def test_resume_after_a_torn_line_gives_the_uninterrupted_results(dataset, reference, tmp_path):
    header, *records = read(reference / 'ref.jsonl').splitlines(keepends=True)
    # an interrupted 2-rank run: rank 0 finished video 0, rank 1 was killed writing video 1
    (tmp_path / 'run.jsonl.rank0').write_text(header + records[0])
    (tmp_path / 'run.jsonl.rank1').write_text(header + records[1][:len(records[1]) // 2])
    result = run_script(*tap_args(dataset, tmp_path, f'--out_json={tmp_path}/run.json', '--resume=True'))
    assert result.returncode == 0, result.stderr
    assert 'resuming: 1 of 4 videos already scored' in result.stdout
    assert '; step 000001/4; ' not in result.stdout and '; step 000002/4; ' in result.stdout
    assert read(tmp_path / 'run.json') == read(reference / 'ref.json')
    assert read(tmp_path / 'run.jsonl') == read(reference / 'ref.jsonl')

    # resuming with other settings is refused, saying which
    with pytest.raises(ResultsError, match=r'run.jsonl: written with other settings \(iters 1 there, 2 now\)'):
        ResultsFile(str(tmp_path / 'run.jsonl'), {**json.loads(header)['config'], 'iters': 2}, Ranks(), resume=True)


@pytest.mark.slow
def test_sigterm_to_the_group_leaves_whole_lines_and_resume_finishes(dataset, reference, tmp_path):
    env = {**os.environ, 'OMP_NUM_THREADS': '1'}
    proc = subprocess.Popen(script_command(*tap_args(dataset, tmp_path, f'--out_json={tmp_path}/run.json')),
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    results = tmp_path / 'run.jsonl'
    deadline = time.time() + 300
    while not (results.exists() and len(read(results).splitlines()) >= 2) and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, 'the run ended before it could be interrupted'
    os.killpg(proc.pid, signal.SIGTERM)  # as a cluster stops a job
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert stderr.splitlines()[-1] == (f'interrupted: the videos scored so far are in {results}; run the same '
                                       'command with --resume=True to go on')
    assert 'Traceback' not in stderr
    text = read(results)
    assert text.endswith('\n') and all(json.loads(line) for line in text.splitlines())
    assert not (tmp_path / 'run.json').exists()
    result = run_script(*tap_args(dataset, tmp_path, f'--out_json={tmp_path}/run.json', '--resume=True'))
    assert result.returncode == 0, result.stderr
    assert read(tmp_path / 'run.json') == read(reference / 'ref.json')


def test_track_curves_by_hand():
    # 2 tracks queried at frame 0, 1 at frame 2; distances at 256x256
    dists = np.array([[0, 0, 0], [20, 1, 0], [1, 1, 0], [1, 30, 40]], float)  # T=4, N=3
    valids = np.array([[1, 1, 1], [0, 1, 1], [1, 1, 1], [1, 1, 0]])  # track 0 off by 20 on an invalid frame
    curves = track_curves(dists, valids, [0, 0, 2])
    assert curves['alive'] == [3, 3, 2, 1]  # track 1 dies at frame 3; track 2 (invalid at its frame 3) lives
    assert curves['tracks'] == [3, 3, 2, 2]
    assert curves['err_sum'] == [0, 1, 2, 31] and curves['err_count'] == [3, 2, 3, 2]


def test_results_path_needed_to_resume(tmp_path):
    with pytest.raises(SettingsError, match='--resume=True needs --out_json or --results'):
        results_location(out_json=None, results=None, resume=True, log_dir=str(tmp_path), run_name='run')
    assert results_location(out_json='a/b.json', results=None, resume=True, log_dir='', run_name='') == 'a/b.jsonl'


def test_plots_of_many_videos_stay_readable(tmp_path):
    rng = np.random.default_rng(0)
    per_video, named_curves = [], []
    for k in range(150):
        T = int(rng.integers(20, 60))
        dists = rng.gamma(2, 2 + k / 30, (T, 8)).cumsum(axis=0) / 10
        per_video.append({'name': f'video_{k:03d}', 'd_avg': float(rng.uniform(0, 100))})
        named_curves.append((f'video_{k:03d}', track_curves(dists, np.ones((T, 8)), np.zeros(8, int))))
    paths = write_plots(per_video, named_curves, str(tmp_path / 'many'))
    assert [os.path.basename(p) for p in paths] == ['many_survival.png', 'many_per_video.png',
                                                    'many_error_by_frame.png']
    for path, size in zip(paths, [(800, 450), (800, 380), (800, 450)]):
        assert read_bytes(path)[:8] == PNG_SIGNATURE
        with Image.open(path) as image:
            assert image.size == size
