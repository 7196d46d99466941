"""The PointOdyssey training loader on fixtures in the real on-disk layout."""

import os
import shutil

import cv2
import numpy as np
import pytest
import torch

import datasets.pointodysseydataset as pod
from datasets.pointodysseydataset import Clip, PointOdysseyDataset
from tests.fixtures.pointodyssey import write_arrays, write_dataset

S, N, CROP, RESIZE = 8, 16, (128, 160), (160, 224)


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp('pod'))
    write_dataset(folder, dset='train', n_seqs=1, T=24, H=180, W=256, N=400, seed=3)
    write_dataset(folder, dset='legacy', n_seqs=1, T=24, H=180, W=256, N=400, seed=3, legacy=True)
    return folder


def make(root, use_augs=False, dset='train', seed=0, N=N, **kwargs):
    return PointOdysseyDataset(root, dset=dset, use_augs=use_augs, S=S, N=N, crop_size=CROP, resize_size=RESIZE,
                               seed=seed, **kwargs)


def write_colour_squares(seq_dir, T=24, H=240, W=320, size=16, pitch=32, velocity=(3, 1)):
    """A grey background with a grid of squares, each its own saturated colour, all moving
    by ``velocity`` px per frame; one track at the centre of each square."""
    ys, xs = np.mgrid[pitch // 2:H - pitch // 2:pitch, pitch // 2:W - pitch:pitch]
    centres0 = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(float)  # N,2
    hues = (np.arange(len(centres0)) * 180 // len(centres0)).astype(np.uint8)
    hsv = np.stack([hues, np.full_like(hues, 255), np.where(np.arange(len(hues)) % 2, 255, 170)], 1)
    colours = cv2.cvtColor(hsv[None].astype(np.uint8), cv2.COLOR_HSV2RGB)[0]  # N,3
    frames = np.full((T, H, W, 3), 128, np.uint8)
    masks = np.zeros((T, H, W), np.uint8)
    trajs = centres0[None] + np.arange(T)[:, None, None] * np.array(velocity)  # T,N,2
    for t in range(T):
        for k, (x, y) in enumerate(trajs[t].astype(int)):
            frames[t, y - size // 2:y + size // 2, x - size // 2:x + size // 2] = colours[k]
            masks[t, y - size // 2:y + size // 2, x - size // 2:x + size // 2] = k + 1
    inside = (trajs[..., 0] < W - size) & (trajs[..., 1] < H - size)
    write_arrays(seq_dir, frames, masks, masks.astype(np.uint16), trajs, inside, np.ones_like(inside))


def colour_under_tracks(sample):
    """(colours S,N,3 under each track, S,N bool visible and valid)."""
    rgbs = sample['rgbs'].permute(0, 2, 3, 1).numpy().astype(int)  # S,H,W,3
    H, W = rgbs.shape[1:3]
    xy = np.round(sample['trajs'].numpy()).astype(int)
    x, y = np.clip(xy[..., 0], 0, W - 1), np.clip(xy[..., 1], 0, H - 1)
    good = (sample['visibs'] * sample['valids']).numpy() > 0
    return rgbs[np.arange(S)[:, None], y, x], good


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
    for index in range(len(dataset)):
        sample, gotit = dataset[index]
        if not gotit:
            continue
        trajs, visibs, valids = (sample[k].numpy() for k in ('trajs', 'visibs', 'valids'))
        real = valids.any(axis=0)  # zero padding has no valid frame
        assert real.sum() >= N // 2
        assert (visibs[:2, real] * valids[:2, real] == 1).all()  # visible at frames 0 and 1
        assert ((visibs * valids).sum(axis=0)[real] >= max(np.sqrt(S), 2)).all()
        x, y = trajs[..., 0], trajs[..., 1]
        assert (visibs[(x < 1) | (x > CROP[1] - 2) | (y < 1) | (y > CROP[0] - 2)] == 0).all()
        assert trajs.min() >= -64 and x.max() <= CROP[1] + 64 and y.max() <= CROP[0] + 64
        assert (visibs <= valids).all()


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
    monkeypatch.setattr(pod, 'augment_video', lambda augmenter, frames: frames)  # photometric off
    monkeypatch.setattr(pod, 'ERASER_PROB', 0.0)
    errors, controls, accepted = [], [], 0
    for seed in range(30):  # covers the spatial path (flips, zoom, drift), plain crops, resizes, reversal
        dataset = PointOdysseyDataset(str(tmp_path), use_augs=True, S=S, N=N, crop_size=CROP,
                                      resize_size=RESIZE, seed=seed, strides=(2,))
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
    clip = Clip([image], [image[..., 0].astype(np.uint16)], np.array([[[1.0, 3.0]]]), np.ones((1, 1), bool),
                np.ones((1, 1), bool))
    pod.flip_frames(clip, horizontal=True)
    pod.flip_frames(clip, horizontal=False)
    x, y = clip.trajs[0, 0].astype(int)
    assert (x, y) == (3, 0) and clip.rgbs[0][y, x, 0] == 255 and clip.masks[0][y, x] == 255
    assert clip.masks[0].ndim == 2


def test_time_reversal_reverses_validity_too():
    valids = np.array([[True], [False], [False]])
    clip = Clip([np.zeros((2, 2, 3), np.uint8)] * 3, None, np.zeros((3, 1, 2)), valids.copy(), valids.copy())
    backwards = pod.reverse_time(clip)
    assert backwards.valids[:, 0].tolist() == [False, False, True] == backwards.visibs[:, 0].tolist()


def test_edge_filter_drops_tracks_on_mask_boundaries():
    mask = np.zeros((20, 20), np.uint16)
    mask[5:15, 5:15] = 1
    trajs = np.array([[[10.0, 10.0], [5.0, 10.0], [2.0, 2.0], [25.0, 3.0]]])  # centre, edge, background, outside
    visibs = np.ones((1, 4), bool)
    keep = pod.startable_tracks(trajs, visibs, visibs.copy(), 20, 20, pod.mask_edges(mask))
    assert keep.tolist() == [True, False, True, False] and not visibs[0, 3]


def test_sequence_without_masks_still_loads(root, tmp_path):
    shutil.copytree(os.path.join(root, 'train'), tmp_path / 'train')
    shutil.rmtree(tmp_path / 'train' / 'seq_000' / 'masks')
    sample, gotit = make(str(tmp_path))[0]
    assert gotit and sample['masks'].sum() == 0 and sample['edges'].sum() == 0


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
    sample, gotit = make(root, N=5000, req_full=True, verbose=True)[0]
    assert not gotit and sample['trajs'].shape == (S, 5000, 2)
    assert sample['rgbs'].sum() == 0 and set(sample) == {'rgbs', 'masks', 'edges', 'trajs', 'visibs', 'valids'}
    assert 'usable tracks at frame 0, need 5000' in capsys.readouterr().out
