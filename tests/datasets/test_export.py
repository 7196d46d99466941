"""export_mp4_dataset.py run in parallel and after a kill; ExportDataset reading it back."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import av
import numpy as np
import pytest
import torch

from datasets.common import DatasetError
from datasets.export import ExportIncomplete, check_arguments, export_clips, prepare_export_dir
from datasets.exportdataset import ExportDataset
from datasets.pointodysseydataset import PointOdysseyClips
from tests.fixtures.pointodyssey import write_dataset
from tests.fixtures.scripts import ROOT
from utils import claims
from utils.errors import SettingsError
from utils.files import HOST, process_start
from utils.video import write_mp4

S, N, CROP = 8, 16, (128, 128)
VERSION = 'ae_8_16_128x128'
N_STEPS = len(range(0, 24 - 8 + 1, 2)) + len(range(0, 24 - 16 + 1, 2))  # T=24, strides 1, 2 (4 is too long)


@pytest.fixture(scope='module')
def pod(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp('pod'))
    write_dataset(folder, dset='train', n_seqs=1, T=24, H=216, W=280, N=1500, seed=5)
    return folder


def export_cmd(pod, out_dir, seed, *extra):
    return [sys.executable, os.path.join(ROOT, 'export_mp4_dataset.py'), f'--dataset_location={pod}',
            f'--out_dir={out_dir}', f'--S={S}', f'--N={N}', '--crop_size=128,128', f'--seed={seed}',
            '--use_augs=False', '--log_freq=0', *extra]


def step_states(export_dir):
    """{step: 'clip' | 'skipped'}; fails on anything else left in the folder."""
    states = {}
    for name in os.listdir(export_dir):
        if re.fullmatch(r'\d{6}', name) and sorted(os.listdir(export_dir / name)) == ['rgb.mp4', 'track.npz']:
            states[int(name)] = 'clip'
        elif re.fullmatch(r'\.\d{6}\.skipped', name):
            states[int(name[1:7])] = 'skipped'
        else:
            raise AssertionError(f'leftover {name}')
    return states


@pytest.fixture(scope='module')
def exported(pod, tmp_path_factory):
    """Three export processes started together on the same folder: (export root, their stdouts)."""
    out_dir = tmp_path_factory.mktemp('export')
    procs = [subprocess.Popen(export_cmd(pod, out_dir, seed), cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for seed in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-800:] for _, err in outputs]
    return out_dir, [out for out, _ in outputs]


def test_parallel_processes_write_every_clip_exactly_once(exported):
    out_dir, outputs = exported
    states = step_states(out_dir / VERSION)
    assert sorted(states) == list(range(N_STEPS))
    clips = sorted(step for step, state in states.items() if state == 'clip')
    assert len(clips) >= N_STEPS // 2
    written = [int(s) for out in outputs for s in re.findall(r'this_step (\d+); itime', out)]
    assert sorted(written) == clips  # each clip by exactly one process
    assert re.search(r'8_em00_ae_\d{6}; step \d{6}/14; this_step \d{6}; itime \d+\.\d\d\n', ''.join(outputs))


def test_clips_hold_h264_and_tracks(exported):
    out_dir, _ = exported
    clip_dirs = sorted(p for p in (out_dir / VERSION).iterdir() if p.name.isdigit())
    for clip_dir in clip_dirs:
        with av.open(str(clip_dir / 'rgb.mp4')) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.name, stream.codec_context.pix_fmt) == ('h264', 'yuv420p')
            assert float(stream.average_rate) == 24 and (stream.height, stream.width) == CROP
            assert sum(1 for _ in container.decode(stream)) == S
        track_g = np.load(clip_dir / 'track.npz')['track_g']
        assert track_g.shape == (S, N, 4) and track_g.dtype == np.float32
        assert track_g[..., 3].sum() >= S * N / 2


def test_sigterm_to_the_group_leaves_whole_clips_and_a_rerun_after_a_kill_completes_the_set(pod, tmp_path):
    export_dir = tmp_path / VERSION
    proc = subprocess.Popen(export_cmd(pod, tmp_path, 0), cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (export_dir.exists() and any(n.isdigit() for n in os.listdir(export_dir))):
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGTERM)  # as a cluster stops a job
    stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130
    assert re.fullmatch(r'interrupted: \d+ clips written by this run, none half-written; run the same command again '
                        r'to finish the set\n', stderr), stderr
    step_states(export_dir)  # only whole clips: no lock, no temporary folder left
    # a SIGKILL cannot be caught: leave what one in the middle of step 0 and one just after
    # finishing step 1 leave behind: the dead process's locks and temporary folder
    token = f'{HOST} {proc.pid} {process_start(os.getpid())}\n'
    shutil.rmtree(export_dir / '000000', ignore_errors=True)
    (export_dir / '.000000.skipped').unlink(missing_ok=True)
    (export_dir / '.000000.lock').write_text(token)
    (export_dir / f'.000000.tmp.{HOST}.{proc.pid}').mkdir(exist_ok=True)
    (export_dir / '.000001.lock').write_text(token)
    rerun = subprocess.run(export_cmd(pod, tmp_path, 1), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-800:]
    assert sorted(step_states(export_dir)) == list(range(N_STEPS))
    assert re.search(r'this_step 000000; (itime|skipped)', rerun.stdout)


def test_claims(tmp_path):
    lock = str(tmp_path / '.000001.lock')
    assert claims.claim(lock, stale_seconds=600)
    assert not claims.claim(lock, stale_seconds=600)  # held by a live process
    claims.release(lock)
    assert not os.path.exists(lock)
    with open(lock, 'w') as f:
        f.write('some-other-machine 123 456\n')
    assert not claims.claim(lock, stale_seconds=600)  # another machine's fresh claim is respected
    os.utime(lock, (time.time() - 700, time.time() - 700))
    assert claims.claim(lock, stale_seconds=600)  # an old one is taken over
    assert open(lock).read().strip() == claims.owner_token()
    assert os.listdir(tmp_path) == ['.000001.lock']


def test_one_bad_file_fails_its_clips_alone_and_a_rerun_after_the_fix_exports_them(pod, tmp_path, capsys):
    shutil.copytree(os.path.join(pod, 'train', 'seq_000'), tmp_path / 'train' / 'seq_000')
    shutil.copytree(os.path.join(pod, 'train', 'seq_000'), tmp_path / 'train' / 'seq_001')
    anno = tmp_path / 'train' / 'seq_001' / 'anno.npz'
    anno.write_bytes(anno.read_bytes()[:5000])  # truncated
    jpeg = tmp_path / 'train' / 'seq_000' / 'rgbs' / 'rgb_00005.jpg'
    good_jpeg = jpeg.read_bytes()
    jpeg.write_bytes(b'not a jpeg')
    dataset = PointOdysseyClips(str(tmp_path), dset='train', S=S, N=N, crop_size=CROP, seed=0)
    export_dir = tmp_path / VERSION
    prepare_export_dir(str(export_dir), stale_seconds=600)
    with pytest.raises(ExportIncomplete, match=rf'^\d+ of {N_STEPS} clips failed .*; 1 sequence\(s\) were left out '
                                               rf'for an unreadable file \({re.escape(str(anno))}: cannot read the '
                                               r'annotations \(.*\); fix them and run the same command again'):
        export_clips(dataset, str(export_dir), seed=0)
    out = capsys.readouterr().out
    failed = {int(step) for step in re.findall(rf'this_step (\d+); failed: {re.escape(str(jpeg))}: missing or not a '
                                               r'readable image\n', out)}
    with_frame_5 = {step for step, (_, _, frames) in enumerate(dataset.clips) if 5 in frames}
    assert failed and failed <= with_frame_5 and out.count('failed: ') == len(failed)
    assert re.search(rf'\ndone: \d+ written, \d+ skipped, {len(failed)} failed, 0 already there', out)
    assert set(step_states(export_dir)) == set(range(N_STEPS)) - failed  # failed clips are left to retry
    jpeg.write_bytes(good_jpeg)
    with pytest.raises(ExportIncomplete, match='^1 sequence'):  # seq_001 is still unreadable
        export_clips(dataset, str(export_dir), seed=0)
    assert sorted(step_states(export_dir)) == list(range(N_STEPS))


def test_arguments_that_cannot_work_are_refused_by_name():
    good = dict(S=8, N=16, crop_size=(128, 128), max_iters=0, log_freq=0, stale_lock_s=600, seed=None,
                use_augs=True, quick=False)
    assert check_arguments(**good) == (128, 128)
    for changes, message in [(dict(S=1), '--S must be an integer of at least 2; got 1'),
                             (dict(N=0), '--N must be an integer of at least 1; got 0'),
                             (dict(crop_size=(128, 96)), '--crop_size must be two integers H,W of at least 64 and '
                                                         'multiples of 64; got (128, 96)'),
                             (dict(max_iters=-1), '--max_iters must be an integer of at least 0; got -1'),
                             (dict(stale_lock_s=0), '--stale_lock_s must be a number above 0; got 0'),
                             (dict(use_augs='no'), "--use_augs must be True or False; got 'no'")]:
        with pytest.raises(SettingsError, match='^' + re.escape(message) + '$'):
            check_arguments(**{**good, **changes})


def test_a_wrong_dataset_location_is_one_line_before_any_work(tmp_path, run_script):
    out = run_script('export_mp4_dataset.py', f'--dataset_location={tmp_path}/nowhere', f'--out_dir={tmp_path}/out',
                     '--log_freq=0', cwd=tmp_path)
    assert out.returncode == 1 and out.stderr == f'error: {tmp_path}/nowhere/train: no sequence folders here\n'
    assert os.listdir(tmp_path / 'out' / 'ae_36_128_384x512') == []


def write_fake_clip(clip_dir, T=S, H=144, W=160, M=40, seed=0):
    """A clip whose pixel (x, y) is coloured (x, y, 100), with M still tracks inside the
    frame; returns their positions M,2."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:H, 0:W]
    frame = np.stack([xs, ys, np.full_like(xs, 100)], axis=-1).astype(np.uint8)
    os.makedirs(clip_dir)
    write_mp4(os.path.join(clip_dir, 'rgb.mp4'), np.repeat(frame[None], T, axis=0))
    xy = rng.uniform([4, 4], [W - 5, H - 5], (M, 2))
    track_g = np.concatenate([np.repeat(xy[None], T, 0), np.ones((T, M, 2))], axis=-1).astype(np.float32)
    np.savez(os.path.join(clip_dir, 'track.npz'), track_g=track_g)
    return xy


def test_export_dataset_reads_n_of_the_stored_tracks(tmp_path):
    stored = [write_fake_clip(str(tmp_path / 'v' / f'{step:06d}'), seed=step) for step in range(2)]
    dataset = ExportDataset(str(tmp_path), 'v', S=S, N=N, crop_size=(144, 160), use_augs=False)
    for index in (0, 1, 0):
        sample = dataset[index]
        rgbs, track_g = sample['rgbs'], sample['track_g'].numpy()
        assert rgbs.shape == (S, 3, 144, 160) and rgbs.dtype == torch.uint8 and track_g.shape == (S, N, 4)
        which = np.abs(track_g[0, :, None, :2] - stored[index][None]).max(axis=-1).argmin(axis=1)
        np.testing.assert_allclose(track_g[0, :, :2], stored[index][which], atol=1e-4)  # N distinct stored tracks
        assert len(set(which)) == N
        x, y = np.round(track_g[0, :, :2]).astype(int).T
        colour = rgbs[0].numpy()[:2, y, x].astype(int)  # the frame's pixel (x, y) is coloured (x, y)
        assert np.abs(colour - [x, y]).max() <= 4  # lossy video, else exact: not cropped
    every = ExportDataset(str(tmp_path), 'v', S=S, N=None, crop_size=(144, 160))
    assert every.N == 40 and every[1]['track_g'].shape == (S, 40, 4)
    np.testing.assert_allclose(every[1]['track_g'][0, :, :2].numpy(), stored[1], atol=1e-4)  # all, stored order


def test_export_dataset_second_pass_runs_on_bgr(tmp_path):
    import albumentations as A
    write_fake_clip(str(tmp_path / 'v' / '000000'), M=N)
    dataset = ExportDataset(str(tmp_path), 'v', S=S, crop_size=(144, 160), use_augs=True)
    dataset.color_augmenter = A.ReplayCompose([A.ToGray(p=1.0)])  # weights R 0.299, G 0.587, B 0.114
    plain = ExportDataset(str(tmp_path), 'v', S=S, crop_size=(144, 160))
    rgb = plain[0]['rgbs'][0].float().numpy()  # 3,H,W
    gray = dataset[0]['rgbs'][0, 0].float().numpy()
    as_bgr = 0.114 * rgb[0] + 0.587 * rgb[1] + 0.299 * rgb[2]  # red weighed as blue: the original's order
    assert np.abs(gray - as_bgr).mean() < 1 < np.abs(gray - (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])).mean()


def test_export_dataset_skips_a_corrupt_clip_and_says_which(exported, tmp_path, capsys):
    shutil.copytree(exported[0] / VERSION, tmp_path / VERSION)
    clips = sorted(p for p in (tmp_path / VERSION).iterdir() if p.name.isdigit())
    bad = clips[1] / 'rgb.mp4'
    bad.write_bytes(bad.read_bytes()[:600])
    dataset = ExportDataset(str(tmp_path), VERSION, S=S, N=N, crop_size=CROP, use_augs=True)
    for _ in range(2):
        sample = dataset[1]
        assert sample['rgbs'].shape == (S, 3, *CROP) and sample['rgbs'].float().mean() > 10
        assert sample['track_g'][0, :, 3].sum() > 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if 'skipping' in line]
    assert len(warnings) == 1 and str(clips[1]) in warnings[0]  # reported once, by path
    for clip in clips:
        (clip / 'track.npz').write_bytes(b'')
    with pytest.raises(DatasetError, match=r'none of the \d+ clips is readable'):
        ExportDataset(str(tmp_path), VERSION, S=S, N=N, crop_size=CROP)


def test_a_mostly_unreadable_export_gives_its_readable_clip_every_time(tmp_path, capsys):
    bad = [tmp_path / 'v' / f'{step:06d}' for step in range(30)]
    for clip_dir in bad:
        clip_dir.mkdir(parents=True)  # no rgb.mp4, no track.npz
    (bad[3] / 'track.npz').write_bytes(b'')
    stored = write_fake_clip(str(tmp_path / 'v' / '000030'), M=N)
    dataset = ExportDataset(str(tmp_path), 'v', S=S, N=N, crop_size=(144, 160))
    for index in range(31):  # reported clips no longer count against the search for a readable one
        np.testing.assert_allclose(dataset[index]['track_g'][0, :, :2].numpy(), stored, atol=1e-4)
    named = re.findall(r'^warning: skipping unreadable clip (\S+): ', capsys.readouterr().err, re.M)
    assert sorted(named) == sorted(map(str, bad))  # each once


def test_export_dataset_size_checks(tmp_path):
    with pytest.raises(DatasetError, match='no exported clips'):
        ExportDataset(str(tmp_path), 'v')
    write_fake_clip(str(tmp_path / 'v' / '000000'))
    for crop in ((96, 128), (192, 160)):  # larger clips are not cropped, smaller ones not padded
        with pytest.raises(DatasetError, match=f'clips are 144x160 but crop_size is {crop[0]}x{crop[1]}'):
            ExportDataset(str(tmp_path), 'v', S=S, N=N, crop_size=crop)
    with pytest.raises(DatasetError, match='clips hold 8 frames, fewer than S=36'):
        ExportDataset(str(tmp_path), 'v', S=36, N=N, crop_size=(144, 160))
    with pytest.raises(DatasetError, match='clips hold 40 tracks, fewer than the N=64 asked for'):
        ExportDataset(str(tmp_path), 'v', S=S, N=64, crop_size=(144, 160))
