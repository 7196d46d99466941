"""The procedural PointOdyssey-format dataset (datasets/synthetic.py, make_synthetic_dataset.py):
exact tracks, occlusion by depth order, determinism, safe parallel writing, argument checks,
and the project's loaders on it pinned to the original's (tests/data/synthetic_reference.npz,
see tests/make_synthetic_reference.py)."""

import os
import signal
import socket
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from datasets import synthetic
from datasets.common import DatasetError
from datasets.pointodysseydataset import PointOdysseyClips
from datasets.pointodysseydataset_fullseq import PointOdysseyTestSequences
from tests.fixtures.pod_reference import assert_matches_reference, replay_plain_case
from tests.fixtures.scripts import ROOT
from utils.errors import SettingsError
from utils.files import HOST

REFERENCE = os.path.join(ROOT, 'tests', 'data', 'synthetic_reference.npz')
SMALL = dict(T=12, H=128, W=160, N=300)
GOOD = dict(out_dir='out', dset='train', n_seqs=2, seed=0, T=40, H=256, W=320, N=600, motion_blur=False)


@pytest.fixture(scope='module')
def scene():
    return synthetic.make_scene(seed=3, index=0, **SMALL)


@pytest.fixture(scope='module')
def frames(scene):
    return [synthetic.render_frame(scene, t) for t in range(SMALL['T'])]


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp('synthetic'))
    list(synthetic.make_sequences(folder, dset='train', n_seqs=2, seed=1, **SMALL))
    return folder


def bilinear(image, points):
    """image (h,w,C) sampled at ``points`` (M,2 x,y, inside the image) with bilinear weights: M,C."""
    h, w = image.shape[:2]
    x0 = np.minimum(np.floor(points[:, 0]).astype(int), w - 2)
    y0 = np.minimum(np.floor(points[:, 1]).astype(int), h - 2)
    fx, fy = (points[:, 0] - x0)[:, None], (points[:, 1] - y0)[:, None]
    image = image.astype(np.float64)
    return (image[y0, x0] * (1 - fx) * (1 - fy) + image[y0, x0 + 1] * fx * (1 - fy)
            + image[y0 + 1, x0] * (1 - fx) * fy + image[y0 + 1, x0 + 1] * fx * fy)


def local_range(texture, points, radius=3):
    """M: the largest channel range of ``texture`` (h,w,3) over the (2*radius+1)^2 texels
    around each of ``points`` (M,2 x,y)."""
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    spread = (cv2.dilate(texture, kernel) - cv2.erode(texture, kernel)).max(axis=2)  # h,w
    x, y = np.rint(points).astype(int).T
    return spread[y, x].astype(np.float64)


def test_visible_tracks_keep_their_texture_colour_in_every_frame(scene, frames):
    """A visible track's colour (the frame sampled at its position, before JPEG) is its
    texture point's colour times the layer's brightness at that frame. A frame pixel is the
    texture sampled at a point within about 1.4 / scale texels (scale >= 0.75 here, shear
    <= 0.2: under 2 texels) of the track's point, so the difference is bounded by the
    texture's range within 3 texels, plus 1.5 levels of rounding; and it is small on
    average, unlike the colour of another track's point (the control)."""
    errors, controls = [], []
    for t, frame in enumerate(frames):
        x, y = np.rint(scene.trajs[t]).astype(int).T
        clear = synthetic.visible_tracks(scene, t, cv2.erode(frame.ids, np.ones((3, 3), np.uint8)))
        clear &= synthetic.visible_tracks(scene, t, cv2.dilate(frame.ids, np.ones((3, 3), np.uint8)))
        clear &= (x > 0) & (x < SMALL['W'] - 1) & (y > 0) & (y < SMALL['H'] - 1)  # a 3x3 of its own layer
        sampled = bilinear(frame.rgb, scene.trajs[t])  # N,3
        for k, layer in enumerate(scene.layers):
            on = clear & (scene.track_layers == k)
            expected = bilinear(layer.texture, scene.track_points[on]) * scene.gains[t, k]  # n,3
            error = np.abs(sampled[on] - np.clip(expected, 0, 255)).max(axis=1)
            bound = local_range(layer.texture, scene.track_points[on]) * scene.gains[t, k] + 1.5
            assert (error <= bound).all(), (t, k, error[error > bound], bound[error > bound])
            errors.append(error)
            controls.append(np.abs(sampled[on] - np.roll(expected, 1, axis=0)).max(axis=1))
    errors, controls = np.concatenate(errors), np.concatenate(controls)
    assert len(errors) > SMALL['T'] * SMALL['N'] // 2
    assert np.median(errors) < 2 and np.median(controls) > 4 * np.median(errors)


def test_hidden_tracks_in_the_frame_lie_under_a_nearer_layer(scene, frames):
    """In the frame, a visible track's pixel shows its own layer at its own depth; a hidden
    track's pixel shows a nearer layer (id and depth maps). The layer on top is also worked
    out from the poses, shapes and depths alone (not from the rendering) and agrees."""
    H, W = SMALL['H'], SMALL['W']
    hidden_count = 0
    for t, frame in enumerate(frames):
        visible = synthetic.visible_tracks(scene, t, frame.ids)
        x, y = scene.trajs[t].T
        inside = (x >= 0) & (x <= W - 1) & (y >= 0) & (y <= H - 1)
        pixels = np.floor(scene.trajs[t][inside].astype(np.float64) + 0.5)  # n,2
        column, row = pixels.astype(int).T
        own = scene.track_layers[inside]
        own_depth = np.rint(scene.depths[t, own])
        shown, depth = frame.ids[row, column].astype(int) - 1, frame.depth[row, column]
        hidden = ~visible[inside]
        assert (shown[~hidden] == own[~hidden]).all() and (depth[~hidden] == own_depth[~hidden]).all()
        assert (shown[hidden] != own[hidden]).all() and (depth[hidden] < own_depth[hidden]).all()
        top, _ = synthetic.topmost_layers(scene.layers, scene.poses, scene.depths, np.full(len(pixels), t), pixels)
        assert (top == shown).all()
        hidden_count += hidden.sum()
    assert hidden_count > 100


def test_tracks_are_their_layers_maps_of_fixed_texture_points(scene):
    for k in range(len(scene.layers)):
        on = scene.track_layers == k
        mapped = scene.layers[k].path.matrices(np.arange(SMALL['T'])) @ np.concatenate(
            [scene.track_points[on], np.ones((on.sum(), 1))], axis=1).T  # T,2,n
        np.testing.assert_allclose(scene.trajs[:, on], mapped.transpose(0, 2, 1), atol=1e-3)
    with_tracks = set(scene.track_layers.tolist())
    assert 0 in with_tracks and len(with_tracks) > len(scene.layers) // 2  # the background and objects


def test_many_tracks_are_visible_at_frame_0_and_some_start_later(frames, scene):
    visible0 = synthetic.visible_tracks(scene, 0, frames[0].ids)
    later = np.stack([synthetic.visible_tracks(scene, t, f.ids) for t, f in enumerate(frames)])[1:].any(axis=0)
    assert visible0.mean() > 0.6 and (later & ~visible0).sum() > 10


def test_motion_stays_plausible_for_point_tracking():
    """At 256x320, tracks move a few px per frame (half of them under 4 px) and never
    faster than the fastest object's path allows."""
    speeds = []
    for index in range(12):
        scene = synthetic.make_scene(seed=0, index=index, T=40, H=256, W=320, N=200)
        speeds.append(np.linalg.norm(np.diff(scene.trajs, axis=0), axis=-1).ravel())
    speeds = np.concatenate(speeds)
    assert 0.5 < np.median(speeds) < 4 and np.percentile(speeds, 99) < 12 and speeds.max() < 20


def test_motion_blur_changes_the_pixels_not_the_tracks(scene, frames):
    blurred_scene = synthetic.make_scene(seed=3, index=0, motion_blur=True, **SMALL)
    np.testing.assert_array_equal(blurred_scene.trajs, scene.trajs)
    blurred = synthetic.render_frame(blurred_scene, 5)
    assert (blurred.ids == frames[5].ids).all() and (blurred.depth == frames[5].depth).all()
    sharpness = [cv2.Laplacian(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for rgb in
                 (blurred.rgb, frames[5].rgb)]
    assert np.abs(blurred.rgb.astype(int) - frames[5].rgb).mean() > 0.3 and sharpness[0] < 0.9 * sharpness[1]


def file_contents(folder):
    """{path relative to ``folder``: bytes} of every file under it."""
    contents = {}
    for parent, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(parent, name), 'rb') as f:
                contents[os.path.relpath(os.path.join(parent, name), folder)] = f.read()
    return contents


def test_same_seed_writes_identical_files_and_more_sequences_extend_a_set(tmp_path):
    tiny = dict(T=3, H=128, W=128, N=20)
    list(synthetic.make_sequences(str(tmp_path / 'a'), n_seqs=2, seed=7, **tiny))
    list(synthetic.make_sequences(str(tmp_path / 'b'), n_seqs=1, seed=7, **tiny))
    list(synthetic.make_sequences(str(tmp_path / 'b'), n_seqs=2, seed=7, **tiny))
    first, again = file_contents(tmp_path / 'a'), file_contents(tmp_path / 'b')
    assert len(first) == 2 * (3 * 3 + 2) and first == again
    list(synthetic.make_sequences(str(tmp_path / 'c'), n_seqs=1, seed=8, **tiny))
    other_seed = file_contents(tmp_path / 'c')
    for name in ('anno.npz', 'rgbs/rgb_00000.jpg', 'masks/mask_00000.png'):
        assert first[f'train/seq_00000/{name}'] != other_seed[f'train/seq_00000/{name}']
        assert first[f'train/seq_00000/{name}'] != first[f'train/seq_00001/{name}']


def test_written_files_are_in_the_pointodyssey_layout(root, tmp_path):
    seq_dir = os.path.join(root, 'train', 'seq_00000')
    scene = synthetic.make_scene(seed=1, index=0, **SMALL)
    T, N = SMALL['T'], SMALL['N']
    with np.load(os.path.join(seq_dir, 'anno.npz')) as anno:
        assert anno['trajs_2d'].shape == (T, N, 2) and anno['trajs_2d'].dtype == np.float32
        assert anno['visibs'].shape == anno['valids'].shape == (T, N) and anno['valids'].all()
        np.testing.assert_array_equal(anno['trajs_2d'], scene.trajs)
        assert anno['trajs_3d'].shape == (T, N, 3) and anno['intrinsics'].shape == (T, 3, 3)
        visibs = anno['visibs']
    for t in (0, T - 1):
        frame = synthetic.render_frame(scene, t)
        mask = cv2.imread(os.path.join(seq_dir, 'masks', 'mask_%05d.png' % t), cv2.IMREAD_UNCHANGED)
        depth = cv2.imread(os.path.join(seq_dir, 'depths', 'depth_%05d.png' % t), cv2.IMREAD_UNCHANGED)
        rgb = cv2.imread(os.path.join(seq_dir, 'rgbs', 'rgb_%05d.jpg' % t))[:, :, ::-1]
        assert mask.dtype == np.uint8 and (mask == frame.ids).all() and mask.min() >= 1
        assert depth.dtype == np.uint16 and (depth == frame.depth).all()
        assert np.abs(rgb.astype(int) - frame.rgb).mean() < 5  # JPEG quality 95, chroma at half resolution
        assert (visibs[t] == synthetic.visible_tracks(scene, t, frame.ids)).all()


def test_training_loader_reads_the_output(root):
    dataset = PointOdysseyClips(root, S=8, N=32, crop_size=(96, 128), resize_size=(128, 160), use_augs=True, seed=0)
    samples = [dataset[index] for index in range(len(dataset))]
    assert len(samples) == 2 * 3  # clips start at 0, 2, 4 (stride 1) in each sequence
    assert sum(gotit for _, gotit in samples) >= len(samples) - 1
    sample = next(sample for sample, gotit in samples if gotit)
    assert sample['rgbs'].shape == (8, 3, 96, 128) and sample['trajs'].shape == (8, 32, 2)
    assert sample['masks'].max() > 1 and sample['edges'].max() == 1


def test_test_loader_reads_the_output(root):
    sample = PointOdysseyTestSequences(root, dset='train', N=64)[1]
    with np.load(os.path.join(root, 'train', 'seq_00001', 'anno.npz')) as anno:
        trajs = anno['trajs_2d']
    assert sample['name'] == 'seq_00001' and (sample['H'], sample['W']) == (128, 160)
    assert sample['trajs'].shape == (SMALL['T'], 64, 2) and (sample['visibs'][0] == 1).all()
    distances = np.abs(sample['trajs'][:, :, None] - trajs[:, None]).max(axis=(0, 3))  # 64,N
    assert (distances.min(axis=1) == 0).all()  # each one of the written tracks, unchanged


def regenerate(folder, dset, settings):
    seed, n_seqs, T, H, W, N = (int(v) for v in settings)
    list(synthetic.make_sequences(folder, dset=dset, n_seqs=n_seqs, seed=seed, T=T, H=H, W=W, N=N))


def test_training_loader_matches_the_original_on_synthetic_data(tmp_path, monkeypatch):
    """Plain resize and plain crop clips (crop corner as the original drew it) of a freshly
    generated set: the same tracks, within 1e-3 px (regenerated data may differ from the
    stored run in the last bits of its floats on another CPU), the same visibility,
    validity, masks and edges, and frames within one level per pixel."""
    reference = np.load(REFERENCE)
    regenerate(str(tmp_path), 'train', reference['train_settings'])
    for case in range(4):
        _, sample, _ = replay_plain_case(monkeypatch, tmp_path, reference, case, S=8, crop_size=(96, 128),
                                         resize_size=(160, 224))
        assert_matches_reference(sample, reference, case, atol=1e-3)


def test_test_loader_matches_the_original_on_synthetic_data(tmp_path):
    reference = np.load(REFERENCE)
    regenerate(str(tmp_path), 'test', reference['test_settings'])
    sample = PointOdysseyTestSequences(str(tmp_path), dset='test', N=reference['test_trajs'].shape[1])[0]
    np.testing.assert_allclose(sample['trajs'], reference['test_trajs'], atol=1e-3)
    assert (sample['visibs'] == reference['test_visibs']).all() and (sample['valids'] == reference['test_valids']).all()


def test_finished_sequences_are_kept_and_leftovers_of_dead_runs_removed(tmp_path):
    tiny = dict(T=2, H=128, W=128, N=5)
    split = tmp_path / 'train'
    assert [o for _, o in synthetic.make_sequences(str(tmp_path), n_seqs=1, **tiny)] == ['written']
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    dead_temp = split / f'.seq_00001.tmp.{HOST}.{dead.pid}'
    live_temp = split / f'.seq_00002.tmp.{HOST}.{os.getppid()}'
    remote_temp = split / '.seq_00003.tmp.another-host.1'
    for folder in (dead_temp, live_temp, remote_temp):
        folder.mkdir()
    outcomes = [o for _, o in synthetic.make_sequences(str(tmp_path), n_seqs=4, **tiny)]
    assert outcomes == ['present', 'written', 'busy', 'busy']
    assert not dead_temp.exists() and live_temp.exists() and remote_temp.exists()
    assert sorted(os.listdir(split)) == sorted([live_temp.name, remote_temp.name, 'seq_00000', 'seq_00001'])
    with pytest.raises(DatasetError, match='seq_00000: made with other settings: N=5 \\(now 6\\)'):
        list(synthetic.make_sequences(str(tmp_path), n_seqs=1, **{**tiny, 'N': 6}))


def test_photographs_load_from_the_wheel_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError('a photograph tried to reach the network')
    monkeypatch.setattr(socket.socket, 'connect', no_network)
    for name in synthetic.PHOTOS:
        image = synthetic.photo.__wrapped__(name)
        assert image.dtype == np.uint8 and image.shape[2] == 3 and min(image.shape[:2]) >= 128


@pytest.mark.parametrize('changes, message', [
    (dict(n_seqs=0), 'n_seqs must be an integer from 1'),
    (dict(T=1), 'T must be an integer from 2'),
    (dict(T=4.5), 'T must be an integer'),
    (dict(H=100), 'H must be an integer from 128 to 4096'),
    (dict(W=5000), 'W must be an integer from 128 to 4096'),
    (dict(N=0), 'N must be an integer from 1'),
    (dict(N=True), 'N must be an integer'),
    (dict(seed=-1), 'seed must be an integer from 0'),
    (dict(dset='../train'), 'dset must be a plain folder name'),
    (dict(dset=''), 'dset must be a plain folder name'),
    (dict(out_dir=''), 'out_dir must be a folder path'),
    (dict(T=10000, N=5000), 'T \\* N must be at most'),
    (dict(motion_blur='yes'), 'motion_blur must be True or False'),
])
def test_bad_arguments_are_refused_by_name(changes, message):
    synthetic.check_settings(**GOOD)
    with pytest.raises(ValueError, match=message):
        synthetic.check_settings(**{**GOOD, **changes})


def test_an_unwritable_out_dir_is_refused_before_any_work(tmp_path):
    (tmp_path / 'file').write_text('')
    with pytest.raises(SettingsError, match='cannot write here'):
        synthetic.make_sequences(str(tmp_path / 'file'), n_seqs=1)


def test_script_prints_one_error_line_and_exits_1(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(ROOT, 'make_synthetic_dataset.py'),
                             f'--out_dir={tmp_path}', '--H=64'], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1 and result.stdout == ''
    assert result.stderr == 'error: H must be an integer from 128 to 4096; got 64\n'
    assert not os.listdir(tmp_path)


def test_a_group_sigterm_keeps_the_finished_sequences_and_says_how_to_go_on(tmp_path):
    command = [sys.executable, os.path.join(ROOT, 'make_synthetic_dataset.py'), f'--out_dir={tmp_path}',
               '--n_seqs=500', '--T=8', '--H=128', '--W=128', '--N=50']
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    split_dir = tmp_path / 'train'
    deadline = time.time() + 120
    while not (split_dir / synthetic.sequence_name(1)).exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGTERM)  # as a cluster stops a job
    stderr = process.communicate(timeout=60)[1]
    assert process.returncode == 130
    assert stderr.splitlines()[-1] == (f'interrupted: the finished sequences are kept in {split_dir}, none '
                                       'half-written; run the same command again to make the rest')
    kept = os.listdir(split_dir)
    assert 2 <= len(kept) < 500 and all((split_dir / name / 'anno.npz').exists() for name in kept)
