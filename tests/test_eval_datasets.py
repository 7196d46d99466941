"""The evaluation loaders on fixtures in the real layouts."""

import pickle

import cv2
import numpy as np
import pytest

from datasets.common import DatasetError
from datasets.crohddataset import CrohdDataset
from datasets.pointodysseydataset_fullseq import PointOdysseyDataset
from datasets.tapviddataset_fullseq import TapVidDavis
from tests.fixtures.crohd import write_crohd
from tests.fixtures.pointodyssey import smooth_texture, write_dataset


@pytest.mark.parametrize('labels_apart', [False, True])
def test_crohd_clips_and_head_filter(tmp_path, labels_apart):
    centres = write_crohd(str(tmp_path), T=40, n_heads=6, labels_apart=labels_apart)['HT21-01']
    dataset = CrohdDataset(str(tmp_path), S=24, S_min=16)
    assert [c[2:4] for c in dataset.clips] == [(0, 24), (12, 36), (24, 40)]
    sample = dataset[0]
    # head 0 does not move and head 1 starts at the border: both dropped
    assert sample['trajs'].shape == (24, 4, 2)
    assert len(sample['frame_paths']) == 24 and sample['frame_paths'][0].endswith('000001.jpg')
    kept = centres[:24, 2:]
    hidden = sample['visibs'] == 0  # head 2 is marked invisible every 7th frame: position held
    np.testing.assert_allclose(sample['trajs'][~hidden], kept[~hidden], atol=0.01)
    t = int(np.flatnonzero(hidden[:, 0])[0])
    np.testing.assert_allclose(sample['trajs'][t, 0], sample['trajs'][t - 1, 0])
    frames = list(CrohdDataset.frames(sample))
    assert len(frames) == 24 and frames[0].shape == (240, 320, 3)


def test_crohd_missing_folder(tmp_path):
    with pytest.raises(DatasetError, match='no HT21-0x video folders'):
        CrohdDataset(str(tmp_path))


@pytest.mark.parametrize('legacy', [False, True])
def test_pointodyssey_test_filter(tmp_path, legacy):
    write_dataset(str(tmp_path), dset='test', n_seqs=1, T=20, H=128, W=192, N=120, legacy=legacy)
    sample = PointOdysseyDataset(str(tmp_path), dset='test', N=32)[0]
    trajs, visibs, valids = sample['trajs'], sample['visibs'], sample['valids']
    assert trajs.shape == (20, 32, 2) and sample['H'] == 128 and sample['W'] == 192
    assert (visibs[0] * valids[0] == 1).all()  # every kept track starts visible and valid
    assert ((visibs * valids).sum(axis=0) >= 8).all()
    assert trajs.min() >= -32 and trajs[..., 0].max() <= 192 + 32
    assert np.isfinite(trajs).all()


def test_pointodyssey_frame_count_mismatch(tmp_path):
    folder = write_dataset(str(tmp_path), dset='test', n_seqs=1, T=10, H=128, W=128, N=20)[0]
    (tmp_path / 'test' / 'seq_000' / 'rgbs' / 'rgb_00009.jpg').unlink()
    with pytest.raises(DatasetError, match='9 frames but annotations for 10'):
        PointOdysseyDataset(str(tmp_path))[0]
    assert folder.endswith('seq_000')


def video_dict(T=5, N=3, seed=0):
    rng = np.random.default_rng(seed)
    return {'video': np.stack([smooth_texture(rng, 64, 80) for _ in range(T)]),
            'points': rng.uniform(0, 1, (N, T, 2)).astype(np.float32), 'occluded': np.zeros((N, T), bool)}


def test_tapvid_davis_scaling_and_visible_filter(tmp_path):
    video = video_dict()
    video['occluded'][1, 0] = True  # not visible at frame 0: left out by the original protocol
    with open(tmp_path / 'tapvid_davis.pkl', 'wb') as f:
        pickle.dump({'bear': video}, f)
    sample = next(iter(TapVidDavis(str(tmp_path))))
    assert sample['name'] == 'bear' and sample['rgbs'].shape == (5, 3, 64, 80)
    assert sample['trajs'].shape == (5, 2, 2)
    np.testing.assert_allclose(sample['trajs'][:, 0].numpy(), video['points'][0] * [79, 63], rtol=1e-6)
    assert sample['points'].shape == (3, 5, 2)  # all points kept for the TAP-Vid protocols


def test_tapvid_kinetics_shards_with_jpeg_frames(tmp_path):
    for shard in range(2):
        video = video_dict(seed=shard)
        video['video'] = [cv2.imencode('.jpg', f[:, :, ::-1])[1].tobytes() for f in video['video']]
        with open(tmp_path / f'{shard}_of_0010.pkl', 'wb') as f:
            pickle.dump([video], f)
    dataset = TapVidDavis(str(tmp_path), dataset_name='kinetics')
    samples = list(dataset)
    assert len(dataset) == 2 and [s['name'] for s in samples] == ['0_of_0010_0000', '1_of_0010_0000']
    original = video_dict(seed=0)['video']
    assert np.abs(samples[0]['rgbs'].permute(0, 2, 3, 1).numpy().astype(int) - original).mean() < 3


def test_tapvid_bad_jpeg_names_the_frame(tmp_path):
    video = video_dict()
    video['video'] = [b'not a jpeg'] * 5
    with open(tmp_path / 'tapvid_rgb_stacking.pkl', 'wb') as f:
        pickle.dump([video], f)
    with pytest.raises(DatasetError, match='frame 0 is not a decodable image'):
        next(iter(TapVidDavis(str(tmp_path), dataset_name='rgb_stacking')))
