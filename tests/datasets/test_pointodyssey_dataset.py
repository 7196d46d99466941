"""The PointOdyssey training loader on fixtures in the real on-disk layout, pinned to the
original's outputs (tests/data/pod_reference.npz, see tests/make_pod_reference.py)."""

import os
import shutil

import cv2
import numpy as np
import pytest
import torch

import datasets.pointodysseydataset as pod
from datasets import augment
from datasets.augment import Clip
from datasets.pointodysseydataset import PointOdysseyClips, PointOdysseyDataset
from tests.fixtures.pod_reference import assert_matches_reference, replay_plain_case
from tests.fixtures.pointodyssey import write_arrays, write_dataset, write_reference_sequence
from tests.golden import DATA

S, N, CROP, RESIZE = 8, 16, (128, 160), (160, 224)


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp('pod'))
    write_dataset(folder, dset='train', n_seqs=1, T=24, H=180, W=256, N=400, seed=3)
    write_dataset(folder, dset='legacy', n_seqs=1, T=24, H=180, W=256, N=400, seed=3, legacy=True)
    return folder


def make(root, use_augs=False, dset='train', seed=0, N=N, **kwargs):
    return PointOdysseyClips(root, dset=dset, use_augs=use_augs, S=S, N=N, crop_size=CROP, resize_size=RESIZE,
                             seed=seed, **kwargs)


def write_colour_squares(seq_dir, T=24, H=240, W=320, size=16, pitch=32, velocity=(3, 1)):
    """A grey background (id 1) with a grid of squares, each its own saturated colour and
    id, all moving by ``velocity`` px per frame; one track at the centre of each square."""
    ys, xs = np.mgrid[pitch // 2:H - pitch // 2:pitch, pitch // 2:W - pitch:pitch]
    centres0 = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(float)  # N,2
    hues = (np.arange(len(centres0)) * 180 // len(centres0)).astype(np.uint8)
    hsv = np.stack([hues, np.full_like(hues, 255), np.where(np.arange(len(hues)) % 2, 255, 170)], 1)
    colours = cv2.cvtColor(hsv[None].astype(np.uint8), cv2.COLOR_HSV2RGB)[0]  # N,3
    frames = np.full((T, H, W, 3), 128, np.uint8)
    masks = np.ones((T, H, W), np.uint8)
    trajs = centres0[None] + np.arange(T)[:, None, None] * np.array(velocity)  # T,N,2
    for t in range(T):
        for k, (x, y) in enumerate(trajs[t].astype(int)):
            frames[t, y - size // 2:y + size // 2, x - size // 2:x + size // 2] = colours[k]
            masks[t, y - size // 2:y + size // 2, x - size // 2:x + size // 2] = k + 2
    inside = (trajs[..., 0] < W - size) & (trajs[..., 1] < H - size)
    write_arrays(seq_dir, frames, masks, masks.astype(np.uint16), trajs, inside, np.ones_like(inside))


def write_still_tracks(seq_dir, count, T=10, H=120, W=160, seed=0):
    """``count`` tracks, each still on a distinct spot of a textured frame, all visible (no masks)."""
    rng = np.random.default_rng(seed)
    frames = np.repeat(rng.integers(0, 255, (1, H, W, 3), dtype=np.uint8), T, axis=0)
    xy = rng.uniform([10, 10], [W - 10, H - 10], (count, 2))
    trajs = np.repeat(xy[None], T, axis=0)
    ones = np.ones((T, count), bool)
    write_arrays(seq_dir, frames, None, frames[..., 0].astype(np.uint16), trajs, ones, ones)
    return xy


def colour_under_tracks(sample):
    """(colours S,N,3 under each track, S,N bool visible and valid)."""
    rgbs = sample['rgbs'].permute(0, 2, 3, 1).numpy().astype(int)  # S,H,W,3
    H, W = rgbs.shape[1:3]
    xy = np.round(sample['trajs'].numpy()).astype(int)
    x, y = np.clip(xy[..., 0], 0, W - 1), np.clip(xy[..., 1], 0, H - 1)
    good = (sample['visibs'] * sample['valids']).numpy() > 0
    return rgbs[np.arange(S)[:, None], y, x], good


def test_old_names_still_import():
    from datasets.pointodysseydataset_fullseq import PointOdysseyDataset as FullSeq
    from datasets.pointodysseydataset_fullseq import PointOdysseyTestSequences
    assert PointOdysseyDataset is PointOdysseyClips and FullSeq is PointOdysseyTestSequences


def test_matches_the_original_loader(tmp_path, monkeypatch):
    """Plain resize and plain crop clips (the original run without augmentations, crop
    corner as it drew it): the same tracks at the same positions, the same visibility,
    validity, hole-filled masks, edges and frames."""
    reference = np.load(os.path.join(DATA, 'pod_reference.npz'))
    write_reference_sequence(str(tmp_path / 'train' / 'seq_000'))
    for case in range(4):
        dataset, sample, n = replay_plain_case(monkeypatch, tmp_path, reference, case, S=S, crop_size=(96, 128),
                                               resize_size=RESIZE)
        assert_matches_reference(sample, reference, case, atol=1e-4)
        dataset.N = dataset.min_tracks = n + 1
        index = int(reference[f'{case}_meta'][0])
        assert not dataset[index][1]  # one more than survive: refused, as the original


class ReplayedDraws:
    """Stands in for a sample's numpy Generator, handing out the numbers the original drew,
    in order; its padding came as x0, x1, y0, y1, ours is asked as top, bottom, left, right.
    The final shuffle is the identity (the tracks are compared as a set)."""

    def __init__(self, draws):
        self.draws = list(draws)

    def take(self, count):
        taken, self.draws = self.draws[:count], self.draws[count:]
        assert len(taken) == count, 'the loader drew more numbers than the original'
        return taken

    def random(self):
        return self.take(1)[0]

    def uniform(self, low, high):
        value = self.take(1)[0]
        assert low <= value < high
        return value

    def integers(self, low, high=None, size=None):
        values = np.array(self.take(size or 1), np.int64)
        if size == 4:  # padding
            values = values[[2, 3, 0, 1]]
        return values if size else values[0]

    def permutation(self, n):
        return np.arange(n)


def test_matches_the_original_with_augmentations(tmp_path, monkeypatch):
    """Clips on the spatial path (resize, padding, drifting zoom and crop; eraser draws),
    fed the numbers the original drew: the same tracks, positions, visibility, validity,
    masks, edges and frames."""
    reference = np.load(os.path.join(DATA, 'pod_reference.npz'))
    write_reference_sequence(str(tmp_path / 'train' / 'seq_000'))
    monkeypatch.setattr(augment, 'augment_video', lambda augmenter, frames: frames)  # as the original's run
    for case in range(3):
        index, n = (int(v) for v in reference[f'aug{case}_meta'])
        draws = ReplayedDraws(reference[f'aug{case}_draws'])
        monkeypatch.setattr(augment, 'sample_rng', lambda seed, index, augmenter, draws=draws: draws)
        dataset = PointOdysseyClips(str(tmp_path), S=S, N=n, strides=(1, 2), crop_size=(96, 128),
                                    resize_size=RESIZE, use_augs=True)
        sample, gotit = dataset[index]
        assert gotit and draws.draws == []
        assert_matches_reference(sample, reference, f'aug{case}', atol=1e-3)


def test_needs_n_tracks_or_half_with_req_full(tmp_path, monkeypatch):
    xy = write_still_tracks(str(tmp_path / 'train' / 'still'), 100)
    monkeypatch.setattr(augment, 'PLAIN_CROP_PROB', 0.0)  # plain resize: every track survives
    without = PointOdysseyClips(str(tmp_path), S=S, N=128, strides=(1,), crop_size=(96, 128), seed=0)
    assert not without[0][1]
    sample, gotit = PointOdysseyClips(str(tmp_path), S=S, N=128, strides=(1,), crop_size=(96, 128), req_full=True,
                                      seed=0)[0]
    assert gotit and sample['trajs'].shape == (S, 128, 2) and (sample['valids'] == 1).all()
    native = sample['trajs'][0].numpy() * [160 / 128, 120 / 96]  # 128,2
    which = np.abs(native[:, None] - xy[None]).max(axis=-1).argmin(axis=1)
    np.testing.assert_allclose(native, xy[which], atol=1e-3)  # each one of the 100
    assert 90 <= len(set(which)) < 128  # repeats fill it (the noisy sampler may skip a few, as the original's)
    assert not PointOdysseyClips(str(tmp_path), S=S, N=202, strides=(1,), crop_size=(96, 128), req_full=True)[0][1]


def test_plain_crop_keeps_native_scale(tmp_path, monkeypatch):
    xy = write_still_tracks(str(tmp_path / 'train' / 'still'), 60)  # in a 120x160 frame
    monkeypatch.setattr(augment, 'PLAIN_CROP_PROB', 1.0)
    native = cv2.imread(str(tmp_path / 'train' / 'still' / 'rgbs' / 'rgb_00000.jpg'))[:, :, ::-1]
    windows = {(x0, y0): native[y0:y0 + 96, x0:x0 + 128] for x0 in range(160 - 128 + 1) for y0 in range(120 - 96 + 1)}
    corners = set()
    for seed in range(12):
        sample, gotit = PointOdysseyClips(str(tmp_path), S=S, N=8, strides=(1,), crop_size=(96, 128), seed=seed)[0]
        assert gotit
        frame = sample['rgbs'][0].permute(1, 2, 0).numpy()
        (x0, y0), = [corner for corner, window in windows.items() if (window == frame).all()]
        shifted_back = sample['trajs'][0].numpy() + [x0, y0]  # scale 1: a shift by the corner and nothing else
        assert np.abs(shifted_back[:, None] - xy[None]).max(axis=-1).min(axis=1).max() < 1e-4
        corners.add((x0, y0))
    xs, ys = zip(*corners)
    assert len(corners) > 6 and max(xs) < 160 - 128 and max(ys) < 120 - 96  # the original's exclusive bound


def test_motion_filter_counts_invalid_frames():
    trajs = np.tile(np.array([[50.0, 40.0]]), (6, 3, 1))  # S,3,2 still tracks
    trajs[:, 1, 0] += np.arange(6) * 2.0  # smooth motion
    trajs[3, 2] = 0.0  # invalid at frame 3: read as (0, 0), a jump
    assert pod.smooth_motion(trajs, 128).tolist() == [True, True, False]


def test_loader_drops_tracks_with_an_invalid_jump(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    T, H, W, M = 10, 120, 160, 40
    frames = np.repeat(rng.integers(0, 255, (1, H, W, 3), dtype=np.uint8), T, axis=0)
    trajs = np.repeat(rng.uniform([20, 20], [W - 20, H - 20], (1, M, 2)), T, axis=0)
    valids = np.ones((T, M), bool)
    trajs[5, :10] = np.nan  # ten tracks invalid at frame 5
    valids[5, :10] = False
    write_arrays(str(tmp_path / 'train' / 'jumps'), frames, None, frames[..., 0].astype(np.uint16), trajs,
                 valids, valids)
    monkeypatch.setattr(augment, 'PLAIN_CROP_PROB', 0.0)
    sample, gotit = PointOdysseyClips(str(tmp_path), S=S, N=30, strides=(1,), crop_size=(96, 128), seed=0)[0]
    assert gotit
    kept = np.round(sample['trajs'][0].numpy() * [W / 128, H / 96], 3)
    assert not np.isclose(kept[:, None], trajs[0, None, :10], atol=1e-3).all(axis=-1).any()
    assert not PointOdysseyClips(str(tmp_path), S=S, N=31, strides=(1,), crop_size=(96, 128), seed=0)[0][1]


def test_mask_holes_are_filled_and_edges_kept_off_them():
    mask = np.full((40, 40), 2, np.uint8)
    mask[:, 20:] = 3  # two objects
    mask[8:11, 5:8] = 0  # a small fog hole inside object 2
    mask[25:40, 25:40] = 0  # a large fog patch inside object 3
    filled = pod.fill_holes(mask)
    assert (filled[8:11, 5:8] == 2).all() and (filled[30:40, 30:40] == 0).all()  # the median leaves its centre
    edges = pod.mask_edges(filled) > 0
    assert edges[:20, 19:21].all()  # the object boundary, dilated
    near_fog = cv2.dilate((filled == 0).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2) > 0
    assert edges[5:15, 2:12].sum() == 0  # no edge left by the filled hole
    assert edges[(filled != 0) & near_fog & (np.arange(40)[None, :] > 22)].sum() == 0  # none along the fog
    few = np.full((40, 40), 2, np.uint8)
    few[8:11, 5:8] = 0  # 9 id-0 pixels: at most 128 are left alone, as the original
    assert (pod.fill_holes(few) == few).all()


def test_edge_lookup_truncates():
    edges0 = np.zeros((10, 10), np.uint8)
    edges0[4, 6] = 255
    trajs = np.array([[[6.9, 4.9], [7.1, 4.2], [5.6, 4.0]]], np.float32)  # truncated: (6, 4), (7, 4), (5, 4)
    visibs = np.ones((1, 3), bool)
    keep = pod.startable_tracks(trajs, visibs, visibs.copy(), 10, 10, edges0)
    assert keep.tolist() == [False, True, True]  # rounding would drop the third and keep the first


def test_resizing_scales_labels_by_x_times_s():
    clip = Clip([np.zeros((10, 20, 3), np.uint8)], None, np.array([[[10.0, 4.0], [0.0, 9.0]]], np.float32),
                np.ones((1, 2), bool), np.ones((1, 2), bool))
    augment.resize_frames(clip, [(25, 30)])
    np.testing.assert_allclose(clip.trajs[0], [[15.0, 10.0], [0.0, 22.5]])


@pytest.mark.parametrize('crop_size, resize_size, base', [((512, 896), (432, 560), (528, 912)),
                                                         ((32, 48), (60, 90), (60, 90))])
def test_spatial_path_resizes_to_at_least_crop_plus_16(crop_size, resize_size, base, monkeypatch):
    sizes = []
    resize = augment.resize_frames
    monkeypatch.setattr(augment, 'resize_frames', lambda clip, s: sizes.append(list(s)) or resize(clip, s))
    clip = Clip([np.zeros((540, 960, 3), np.uint8)] * 2, None, np.full((2, 1, 2), 100.0, np.float32),
                np.ones((2, 1), bool), np.ones((2, 1), bool))
    augment.spatial_augs(clip, resize_size, crop_size, np.random.default_rng(0))
    assert sizes[0] == [base, base] and clip.rgbs[0].shape[:2] == crop_size
    assert clip.rgbs[0].dtype == np.float32  # as the original, truncated to uint8 only when packed


def test_drifting_crop_stays_one_pixel_short_of_the_far_edge():
    rng = np.random.default_rng(0)
    far = []
    for _ in range(50):
        trajs = np.full((6, 1, 2), [200.0, 150.0], np.float32)
        clip = Clip([np.zeros((80, 100, 3), np.uint8)] * 6, None, trajs, np.ones((6, 1), bool), np.ones((6, 1), bool))
        far += [(x0, y0) for x0, y0 in augment.drifting_corners(clip, (48, 64), rng)]
    assert max(x for x, _ in far) == 100 - 64 - 1 and max(y for _, y in far) == 80 - 48 - 1


def test_far_outside_bound_is_the_originals():
    trajs = np.array([[[128 + 64.0, 10.0], [128 + 64.5, 10.0], [-64.0, 10.0], [-64.5, 10.0]]])
    assert pod.outside(trajs, (-64, 128 + 64), (-64, 96 + 64))[0].tolist() == [False, True, False, True]


@pytest.mark.parametrize('use_augs', [False, True])
def test_shapes_types_and_batching(root, use_augs):
    dataset = make(root, use_augs)
    assert len(dataset) == len(range(0, 24 - 8 + 1, 2)) + len(range(0, 24 - 16 + 1, 2))
    samples = [dataset[i] for i in range(0, len(dataset), 2)]
    assert sum(gotit for _, gotit in samples) >= len(samples) - 2
    for sample, _ in samples:
        assert sample['rgbs'].shape == (S, 3, *CROP) and sample['rgbs'].dtype == torch.uint8
        assert sample['masks'].shape == sample['edges'].shape == (S, 1, *CROP)
        assert sample['trajs'].shape == (S, N, 2) and sample['visibs'].shape == sample['valids'].shape == (S, N)
        assert all(sample[k].dtype == torch.float32 for k in ('masks', 'edges', 'trajs', 'visibs', 'valids'))
    dataset.min_tracks = 10 ** 6  # refuse every clip
    refused = dataset[0]
    batch = torch.utils.data.default_collate([samples[0], refused])
    assert batch[0]['rgbs'].shape == (2, S, 3, *CROP) and batch[1].tolist() == [True, False]


def test_accepted_tracks_follow_the_filters(root):
    dataset = make(root, use_augs=True)
    accepted = 0
    for index in range(len(dataset)):
        sample, gotit = dataset[index]
        if not gotit:
            continue
        accepted += 1
        trajs, visibs, valids = (sample[k].numpy() for k in ('trajs', 'visibs', 'valids'))
        assert (visibs[:2] * valids[:2] == 1).all()  # every track visible at frames 0 and 1: no padding
        assert ((visibs * valids).sum(axis=0) >= max(np.sqrt(S), 2)).all()
        x, y = trajs[..., 0], trajs[..., 1]
        assert (visibs[(x < 1) | (x > CROP[1] - 2) | (y < 1) | (y > CROP[0] - 2)] == 0).all()
        assert trajs.min() >= -64 and x.max() <= CROP[1] + 64 and y.max() <= CROP[0] + 64
    assert accepted >= len(dataset) // 2


def test_legacy_annotations_give_the_same_samples(root):
    for index in (0, 5):
        new, legacy = make(root, seed=index)[index], make(root, dset='legacy', seed=index)[index]
        assert new[1] and legacy[1]
        for key in new[0]:
            torch.testing.assert_close(new[0][key], legacy[0][key])


def test_seed_makes_samples_reproducible(root):
    first, again = make(root, True, seed=7)[3][0], make(root, True, seed=7)[3][0]
    other = make(root, True, seed=8)[3][0]
    assert torch.equal(first['rgbs'], again['rgbs']) and torch.equal(first['trajs'], again['trajs'])
    assert not torch.equal(first['trajs'], other['trajs'])


def test_tracks_stay_on_their_colour_through_spatial_augs(tmp_path, monkeypatch):
    write_colour_squares(str(tmp_path / 'train' / 'squares'))
    monkeypatch.setattr(augment, 'augment_video', lambda augmenter, frames: frames)  # photometric off
    monkeypatch.setattr(augment, 'ERASER_PROB', 0.0)
    errors, controls, accepted = [], [], 0
    for seed in range(30):  # covers the spatial path (flips, zoom, drift), plain crops, resizes, reversal
        dataset = PointOdysseyClips(str(tmp_path), use_augs=True, S=S, N=N, crop_size=CROP,
                                    resize_size=RESIZE, seed=seed, strides=(2,), req_full=True)
        sample, gotit = dataset[seed % len(dataset)]
        if not gotit:  # the jerk limit can refuse a clip whose small crop drifts fast
            continue
        accepted += 1
        colours, good = colour_under_tracks(sample)  # S,N,3; S,N
        first = colours[0]
        assert (first[good[0]].max(axis=1) - first[good[0]].min(axis=1) > 80).all()  # on a square, not grey
        for t in range(1, S):
            ok = good[0] & good[t]
            errors.append(np.abs(colours[t, ok] - first[ok]).max(axis=1))
            controls.append(np.abs(colours[t, ok] - np.roll(first, 1, axis=0)[ok]).max(axis=1))
    errors, controls = np.concatenate(errors), np.concatenate(controls)
    assert accepted >= 20
    assert np.percentile(errors, 99) < 40 and np.median(controls) > 100


def test_flips_map_pixels_to_w_minus_1_minus_x():
    image = np.zeros((4, 5, 3), np.uint8)
    image[3, 1] = 255
    clip = Clip([image], [image[..., :2].copy()], np.array([[[1.0, 3.0]]], np.float32), np.ones((1, 1), bool),
                np.ones((1, 1), bool))
    augment.flip_frames(clip, horizontal=True)
    augment.flip_frames(clip, horizontal=False)
    x, y = clip.trajs[0, 0].astype(int)
    assert (x, y) == (3, 0) and clip.rgbs[0][y, x, 0] == 255 and (clip.labels[0][y, x] == 255).all()
    assert clip.labels[0].shape == (4, 5, 2)


def test_time_reversal_reverses_validity_too():
    valids = np.array([[True], [False], [False]])
    clip = Clip([np.zeros((2, 2, 3), np.uint8)] * 3, None, np.zeros((3, 1, 2)), valids.copy(), valids.copy())
    backwards = augment.reverse_time(clip)
    assert backwards.valids[:, 0].tolist() == [False, False, True] == backwards.visibs[:, 0].tolist()


def test_sequence_without_masks_still_loads(root, tmp_path):
    shutil.copytree(os.path.join(root, 'train'), tmp_path / 'train')
    shutil.rmtree(tmp_path / 'train' / 'seq_000' / 'masks')
    sample, gotit = make(str(tmp_path))[0]
    assert gotit and sample['masks'].sum() == 0 and sample['edges'].sum() == 0


def test_colour_mask_is_refused_by_name(root, tmp_path):
    shutil.copytree(os.path.join(root, 'train'), tmp_path / 'train')
    path = tmp_path / 'train' / 'seq_000' / 'masks' / 'mask_00000.png'
    cv2.imwrite(str(path), np.zeros((180, 256, 3), np.uint8))
    with pytest.raises(pod.DatasetError, match='mask_00000.png: a uint8 mask of shape \\(180, 256, 3\\)'):
        make(str(tmp_path))[0]


def test_unusable_sequences_are_skipped_with_a_reason(root, tmp_path, capsys):
    shutil.copytree(os.path.join(root, 'train', 'seq_000'), tmp_path / 'train' / 'good')
    shutil.copytree(os.path.join(root, 'train', 'seq_000'), tmp_path / 'train' / 'hidden')
    with np.load(tmp_path / 'train' / 'hidden' / 'anno.npz') as anno:
        arrays = dict(anno)
    np.savez(tmp_path / 'train' / 'hidden' / 'anno.npz', **{**arrays, 'visibs': np.zeros_like(arrays['visibs'])})
    shutil.copytree(os.path.join(root, 'train', 'seq_000', 'rgbs'), tmp_path / 'train' / 'unannotated' / 'rgbs')
    dataset = make(str(tmp_path))
    out = capsys.readouterr().out
    assert 'hidden: no track is ever visible and valid' in out and 'unannotated: no anno.npz' in out
    assert {clip[0] for clip in dataset.clips} == {str(tmp_path / 'train' / 'good')}


def test_refused_clip_gives_zeros_and_the_reason(root, capsys):
    sample, gotit = make(root, N=5000, verbose=True)[0]
    assert not gotit and sample['trajs'].shape == (S, 5000, 2)
    assert sample['rgbs'].sum() == 0 and set(sample) == {'rgbs', 'masks', 'edges', 'trajs', 'visibs', 'valids'}
    assert 'usable tracks at frame 0, need 5000' in capsys.readouterr().out


def test_frames_smaller_than_the_crop_are_an_error(root):
    with pytest.raises(pod.DatasetError, match='frames of 180x256 are smaller than crop_size \\(192, 256\\)'):
        PointOdysseyClips(root, S=S, N=N, crop_size=(192, 256))[0]
