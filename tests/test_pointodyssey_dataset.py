"""The PointOdyssey training loader on a fixture in the real layout."""

import numpy as np
import pytest
import torch

import datasets.augment
from datasets.augment import color_augmenter
from datasets.pointodysseydataset import PointOdysseyDataset
from tests.fixtures.pointodyssey import write_dataset

S, N, CROP, RESIZE = 8, 16, (128, 160), (160, 224)


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp('pod')
    write_dataset(str(folder), dset='train', n_seqs=1, T=24, H=180, W=256, N=400, seed=3)
    write_dataset(str(folder), dset='legacy', n_seqs=1, T=24, H=180, W=256, N=400, seed=3, legacy=True)
    return str(folder)


def make(root, use_augs, dset='train', seed=0):
    return PointOdysseyDataset(root, dset=dset, use_augs=use_augs, S=S, N=N, crop_size=CROP, resize_size=RESIZE,
                               seed=seed)




@pytest.mark.parametrize('use_augs', [False, True])
def test_shapes_and_types(root, use_augs):
    dataset = make(root, use_augs)
    assert len(dataset) == len(range(0, 24 - 7, 2)) + len(range(0, 24 - 14, 2)) + len(range(0, 24 - 28, 2))
    got = 0
    for index in range(0, len(dataset), 3):
        sample, gotit = dataset[index]
        got += gotit
        assert sample['rgbs'].shape == (S, 3, *CROP) and sample['rgbs'].dtype == torch.uint8
        assert sample['masks'].shape == sample['edges'].shape == (S, 1, *CROP)
        assert sample['trajs'].shape == (S, N, 2) and sample['visibs'].shape == sample['valids'].shape == (S, N)
        if gotit:
            assert (sample['visibs'][0] * sample['valids'][0]).sum() > 0
            assert sample['trajs'].abs().max() <= max(CROP) + 64
    assert got > 0
    batch = torch.utils.data.default_collate([dataset[0], dataset[1]])  # refused clips batch too
    assert batch[0]['rgbs'].shape == (2, S, 3, *CROP)


def test_legacy_annotations(root):
    assert make(root, False, dset='legacy')[0][1]


def colour_error(sample, mismatch=False):
    """Mean colour change under visible tracks, frame t vs frame 0 (vs another track's
    frame-0 colour with ``mismatch``, as a control)."""
    rgbs = sample['rgbs'].permute(0, 2, 3, 1).numpy().astype(float)
    trajs = sample['trajs'].numpy()
    good = (sample['visibs'] * sample['valids']).numpy() > 0
    errors = []
    for t in range(1, S):
        ok = good[0] & good[t]
        x0, y0 = np.round(trajs[0, ok]).astype(int).T
        xt, yt = np.round(trajs[t, ok]).astype(int).T
        if mismatch:
            x0, y0 = np.roll(x0, 1), np.roll(y0, 1)
        errors.append(np.abs(rgbs[t, yt, xt] - rgbs[0, y0, x0]).mean())
    return float(np.mean(errors))


def test_tracks_stay_on_their_content_through_spatial_augs(root, monkeypatch):
    monkeypatch.setattr(datasets.augment, 'ERASER_CLIP_PROB', 0.0)
    monkeypatch.setattr(datasets.augment, 'COLOR_PROB', 0.0)
    errors, shuffled = [], []
    for seed in range(6):  # covers spatial augs, flips, plain crops and resizes
        dataset = make(root, True, seed=seed)
        dataset.color_augmenter = color_augmenter()
        sample, gotit = dataset[seed]
        if not gotit:
            continue
        errors.append(colour_error(sample))
        shuffled.append(colour_error(sample, mismatch=True))
    assert len(errors) >= 3
    assert np.mean(errors) < 12 and np.mean(shuffled) > 3 * np.mean(errors)


def test_refused_clip_is_reported(root):
    dataset = PointOdysseyDataset(root, dset='train', S=S, N=5000, crop_size=CROP, resize_size=RESIZE,
                                  req_full=True, verbose=True)
    sample, gotit = dataset[0]
    assert not gotit and sample['trajs'].shape == (S, 5000, 2) and sample['rgbs'].sum() == 0
