"""The evaluation loaders (TAP-Vid, CroHD, PointOdyssey full sequences) on fixtures in
the real layouts, and on hand-written annotations for the filtering rules."""

import os
import pickle

import cv2
import numpy as np
import pytest
import torch

from datasets.common import DatasetError
from datasets.crohddataset import CrohdDataset, FrameSequence
from datasets.pointodysseydataset_fullseq import PointOdysseyDataset
from datasets.tapviddataset_fullseq import TapVidDavis, tapvid_protocol
from tests.fixtures.crohd import BLINKING, GAP, GAP_FRAMES, write_crohd
from tests.fixtures.pointodyssey import write_sequence
from tests.fixtures.tapvid import make_video, write_davis, write_kinetics, write_pickle, write_rgb_stacking

# ---------------------------------------------------------------- TAP-Vid


def test_tapvid_davis_original_protocol(tmp_path):
    write_davis(str(tmp_path), names=('bear', 'dog'), T=6, H=72, W=100, N=5, hidden_at_start=(1,))
    dataset = TapVidDavis(str(tmp_path))
    video = make_video(seed=0, T=6, H=72, W=100, N=5, hidden_at_start=(1,))
    assert len(dataset) == 2 and [s['name'] for s in dataset] == ['bear', 'dog']
    sample = dataset[0]
    assert sample['rgbs'].dtype == torch.uint8 and sample['rgbs'].shape == (6, 3, 72, 100)
    assert torch.equal(sample['rgbs'], torch.from_numpy(video['video']).permute(0, 3, 1, 2))
    kept = [0, 2, 3, 4]  # point 1 is occluded at frame 0
    assert sample['trajs'].shape == (6, 4, 2)
    want = video['points'][kept].transpose(1, 0, 2) * np.array([99, 71], np.float32)  # x by W-1, y by H-1
    np.testing.assert_allclose(sample['trajs'].numpy(), want, rtol=1e-6)
    np.testing.assert_array_equal(sample['valids'].numpy(), (~video['occluded'][kept]).T)
    assert torch.equal(sample['visibs'], sample['valids'])
    assert sample['points'].shape == (5, 6, 2) and sample['occluded'].shape == (5, 6)  # every point


def test_tapvid_video_without_visible_points_is_an_empty_sample(tmp_path):
    write_davis(str(tmp_path), videos={'empty': make_video(T=4, N=3, never_visible=(0, 1, 2))})
    sample = TapVidDavis(str(tmp_path))[0]
    assert sample['trajs'].shape == (4, 0, 2) and sample['valids'].shape == (4, 0)


def test_tapvid_kinetics_shards_decode_jpeg_frames(tmp_path):
    _, made = write_kinetics(str(tmp_path), n_shards=2, videos_per_shard=2, T=4)
    dataset = TapVidDavis(str(tmp_path), dataset_name='kinetics')
    assert len(dataset) == 4
    names = [sample['name'] for sample in dataset]
    assert names == ['0000_of_0010_0000', '0000_of_0010_0001', '0001_of_0010_0000', '0001_of_0010_0001']
    sample = dataset[2]  # the second shard's first video
    decoded = sample['rgbs'].permute(0, 2, 3, 1).numpy().astype(int)
    assert np.abs(decoded - made[2]['video']).mean() < 3  # JPEG quality 95
    assert sample['name'] == '0001_of_0010_0000' and dataset[-1]['name'] == '0001_of_0010_0001'
    with pytest.raises(IndexError):
        dataset[4]


def test_tapvid_rgb_stacking_list(tmp_path):
    write_rgb_stacking(str(tmp_path), n_videos=2, T=3)
    dataset = TapVidDavis(str(tmp_path), dataset_name='rgb_stacking')
    assert [s['name'] for s in dataset] == ['tapvid_rgb_stacking_0000', 'tapvid_rgb_stacking_0001']


@pytest.mark.parametrize('query_mode', ['first', 'strided'])
def test_tapvid_protocol_resizes_to_256_and_builds_queries(tmp_path, query_mode):
    write_davis(str(tmp_path), names=('bear',), T=11, H=72, W=100, N=4, hidden_at_start=(2,))
    sample = TapVidDavis(str(tmp_path))[0]
    out = tapvid_protocol(sample, query_mode)
    assert out['rgbs'].shape == (11, 3, 256, 256) and out['rgbs'].dtype == torch.uint8
    Q = len(out['query_points'])
    assert out['target_points'].shape == (Q, 11, 2) and out['occluded'].shape == (Q, 11)
    np.testing.assert_allclose(out['target_points'], sample['points'][out['track_index']] * 256, rtol=1e-6)
    t = out['query_points'][:, 0].astype(int)
    assert not out['occluded'][np.arange(Q), t].any()  # every query is on a visible frame
    np.testing.assert_allclose(out['query_points'][:, [2, 1]], out['target_points'][np.arange(Q), t], rtol=1e-6)
    if query_mode == 'first':
        assert t.tolist() == [int(np.argmax(~occluded)) for occluded in sample['occluded']]
    else:
        assert set(t) <= {0, 5, 10}


@pytest.mark.parametrize('make, message', [
    (lambda d: None, 'tapvid_davis.pkl: no such file'),
    (lambda d: (d / 'tapvid_davis.pkl').write_bytes(b'junk'), 'tapvid_davis.pkl: cannot read this pickle'),
    (lambda d: write_pickle(str(d / 'tapvid_davis.pkl'), 'a string'), 'expected a dict or a list of videos'),
    (lambda d: write_pickle(str(d / 'tapvid_davis.pkl'), {'v': {'video': np.zeros((2, 8, 8, 3), np.uint8)}}),
     "tapvid_davis.pkl: video v has no 'points' entry"),
    (lambda d: write_pickle(str(d / 'tapvid_davis.pkl'), {'v': {**make_video(T=4), 'occluded': np.zeros((6, 3))}}),
     'are not N,4,2 and N,4'),
    (lambda d: write_pickle(str(d / 'tapvid_davis.pkl'), {'v': {**make_video(T=2), 'video': [b'xx', b'yy']}}),
     'tapvid_davis.pkl: video v: frame 0 is not a decodable image'),
])
def test_tapvid_errors_name_the_file_and_the_problem(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(DatasetError, match=message):
        TapVidDavis(str(tmp_path))[0]


def test_tapvid_unknown_dataset_name(tmp_path):
    with pytest.raises(DatasetError, match='unknown TAP-Vid dataset'):
        TapVidDavis(str(tmp_path), dataset_name='davos')


# ---------------------------------------------------------------- CroHD


@pytest.mark.parametrize('labels_apart', [False, True])
def test_crohd_clips_and_head_filter(tmp_path, labels_apart):
    centres = write_crohd(str(tmp_path), T=40, labels_apart=labels_apart)['HT21-01']['centres']
    dataset = CrohdDataset(str(tmp_path), S=24, S_min=16)
    assert dataset.clips == [('HT21-01', 0, 24), ('HT21-01', 12, 36), ('HT21-01', 24, 40)]  # 36:40 is too short
    sample = dataset[0]
    assert sample['name'] == 'HT21-01_000000' and (sample['start_frame'], sample['end_frame']) == (0, 24)
    assert (sample['H'], sample['W']) == (240, 320) and sample['frame_paths'][0].endswith('img1/000001.jpg')
    # kept: the blinking head, the head with a gap, and head 5 (still, border and late heads are dropped)
    kept = [BLINKING, GAP, 5]
    trajs, valids, visibs = sample['trajs'], sample['valids'], sample['visibs']
    assert trajs.shape == (24, 3, 2) and trajs.dtype == np.float32
    shown = visibs > 0
    np.testing.assert_allclose(trajs[shown], centres[:24, kept][shown], atol=0.01)
    assert visibs[3, 0] == 0 and valids[3, 0] == 1  # blinking: invisible but annotated on frame 3
    np.testing.assert_array_equal(trajs[3, 0], trajs[2, 0])  # held at its previous position
    gap = list(GAP_FRAMES)
    assert (valids[gap, 1] == 0).all() and (trajs[gap, 1] == trajs[GAP_FRAMES[0] - 1, 1]).all()
    assert dataset[2]['trajs'].shape[0] == 16


def test_crohd_frames_are_read_lazily_by_window(tmp_path):
    write_crohd(str(tmp_path), T=20, H=240, W=320)
    sample = CrohdDataset(str(tmp_path), S=20, S_min=16)[0]
    frames = CrohdDataset.frames(sample)
    assert len(frames) == 20 and frames.size() == (240, 320)
    window = frames.read(4, 9, size=(128, 160))
    assert window.shape == (5, 3, 128, 160) and window.dtype == torch.uint8
    frame4 = cv2.cvtColor(cv2.imread(sample['frame_paths'][4]), cv2.COLOR_BGR2RGB)
    want = cv2.resize(frame4, (160, 128), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(window[0].permute(1, 2, 0).numpy(), want)
    assert sum(1 for _ in frames) == 20


def write_hand_crohd(root, rows, T, H=240, W=480):
    """HT21-01 with T blank frames and the given MOT rows (written in reverse order)."""
    video_dir = os.path.join(root, 'HT21', 'train', 'HT21-01')
    os.makedirs(os.path.join(video_dir, 'img1'))
    os.makedirs(os.path.join(video_dir, 'gt'))
    for t in range(T):
        cv2.imwrite(os.path.join(video_dir, 'img1', '%06d.jpg' % (t + 1)), np.full((H, W, 3), 90, np.uint8))
    np.savetxt(os.path.join(video_dir, 'gt', 'gt.txt'), np.array(rows[::-1], dtype=float), delimiter=',', fmt='%g')
    return video_dir


def box_rows(head, centres, visibility=1):
    """MOT rows of a 20 px box around each (x, y), frames from 1."""
    return [[t + 1, head, x - 10, y - 10, 20, 20, 1, 1, visibility] for t, (x, y) in enumerate(centres)]


def test_crohd_border_and_motion_rules_on_hand_written_rows(tmp_path):
    rows = (box_rows(1, [(100, 100), (200, 100), (300, 100), (200, 100)])  # frame 2 within 32 px of x=320
            + box_rows(2, [(100, 150), (175, 150), (100, 150), (100, 150)])  # moves 150 px in all: dropped
            + box_rows(3, [(100, 200), (176, 200), (100, 200), (100, 200)]))  # 152 px: kept
    write_hand_crohd(str(tmp_path), rows, T=4, W=320)
    sample = CrohdDataset(str(tmp_path), S=4, S_min=4)[0]
    np.testing.assert_allclose(sample['trajs'][:, 0], [[100, 100], [200, 100], [200, 100], [200, 100]])
    assert sample['valids'][:, 0].tolist() == [1, 1, 0, 1] and sample['visibs'][:, 0].tolist() == [1, 1, 0, 1]
    np.testing.assert_allclose(sample['trajs'][0], [[100, 100], [100, 200]])  # heads 1 and 3


def test_crohd_sorts_gt_rows_and_takes_the_length_from_the_last_frame(tmp_path):
    rows = box_rows(1, [(60 + 10 * t, 100) for t in range(30)])
    write_hand_crohd(str(tmp_path), rows[5:] + rows[:5], T=30)  # unsorted: the last row is not the last frame
    dataset = CrohdDataset(str(tmp_path), S=20, S_min=11)
    assert [clip[1:] for clip in dataset.clips] == [(0, 20), (10, 30)]
    np.testing.assert_allclose(dataset[1]['trajs'][:, 0, 0], 60 + 10 * np.arange(10, 30))


@pytest.mark.parametrize('break_it, message', [
    (lambda d: None, 'no HT21-0x video folders'),
    (lambda d: os.makedirs(os.path.join(d, 'HT21', 'train', 'HT21-02', 'img1')), r'HT21-02/gt/gt\.txt: no such file'),
    (lambda d: open(os.path.join(d, 'HT21', 'train', 'HT21-01', 'gt', 'gt.txt'), 'w').write('1,2,3\n'),
     r'gt\.txt: expected rows of 9'),
    (lambda d: os.remove(os.path.join(d, 'HT21', 'train', 'HT21-01', 'img1', '000003.jpg')),
     r'000003\.jpg: no such frame'),
])
def test_crohd_errors_name_the_file(tmp_path, break_it, message):
    if message != 'no HT21-0x video folders':
        write_crohd(str(tmp_path), T=8, H=120, W=160)
    break_it(str(tmp_path))
    with pytest.raises(DatasetError, match=message):
        CrohdDataset(str(tmp_path), S=8, S_min=4)[0]


def test_frame_of_another_size_is_reported(tmp_path):
    paths = [str(tmp_path / f'{i}.jpg') for i in range(2)]
    cv2.imwrite(paths[0], np.zeros((40, 60, 3), np.uint8))
    cv2.imwrite(paths[1], np.zeros((40, 62, 3), np.uint8))
    with pytest.raises(DatasetError, match=r'1\.jpg: frame is 62x40'):
        FrameSequence(paths).read(0, 2)


# ---------------------------------------------------------------- PointOdyssey


@pytest.mark.parametrize('legacy', [False, True])
def test_pointodyssey_fixture_sequences_pass_the_filter(tmp_path, legacy):
    write_sequence(str(tmp_path / 'test' / 'seq_000'), T=12, H=128, W=192, N=80, legacy=legacy)
    dataset = PointOdysseyDataset(str(tmp_path), dset='test', N=16)
    sample = dataset[0]
    trajs, visibs, valids = sample['trajs'], sample['visibs'], sample['valids']
    assert sample['name'] == 'seq_000' and (sample['H'], sample['W']) == (128, 192)
    assert trajs.shape == (12, 16, 2) and len(sample['rgb_paths']) == 12
    assert (visibs[0] * valids[0] == 1).all() and ((visibs * valids).sum(axis=0) >= 8).all()
    assert np.isfinite(trajs).all() and trajs.min() >= -32 and trajs[..., 0].max() <= 192 + 32
    assert len(PointOdysseyDataset.frames(sample)) == 12


def hand_tracks(T=10):
    """T,8,2 tracks for the test filter (frames of 100 x 150), one rule per point:
    0 good; 1 invisible at frame 0; 2 good on 7 frames only; 3 jumps 600 px; 4 touches
    the border on frame 3; 5 NaN on frame 4; 6 leaves the frame 100 px on frames 8, 9;
    7 jumps exactly 512 px. Returns (trajs, visibs, valids)."""
    trajs = np.tile(np.array([50.0, 40.0]), (T, 8, 1))
    visibs = np.ones((T, 8), bool)
    valids = np.ones((T, 8), bool)
    visibs[0, 1] = False
    visibs[7:, 2] = False
    trajs[6, 3, 0] += 600
    trajs[3, 4, 0] = 0.5
    trajs[4, 5] = np.nan
    trajs[8:, 6, 0] = -100
    trajs[5, 7, 0] += 512
    return trajs, visibs, valids


def write_pod_sequence(seq_dir, trajs, visibs, valids, form='v1.2', H=100, W=150):
    os.makedirs(os.path.join(seq_dir, 'rgbs'))
    for t in range(len(trajs)):
        cv2.imwrite(os.path.join(seq_dir, 'rgbs', 'rgb_%05d.jpg' % t), np.full((H, W, 3), 128, np.uint8))
    code = np.where(valids, visibs.astype(np.uint8), 2)
    if form == 'v1.2':
        np.savez(os.path.join(seq_dir, 'anno.npz'), trajs_2d=trajs.astype(np.float32), visibs=visibs, valids=valids)
    else:  # the legacy code in anno.npz (as the original reads it) or in annotations.npz
        name = 'anno.npz' if form == 'legacy anno' else 'annotations.npz'
        np.savez(os.path.join(seq_dir, name), trajs_2d=trajs.astype(np.float32), visibilities=code)


@pytest.mark.parametrize('form', ['v1.2', 'legacy anno', 'legacy annotations'])
def test_pointodyssey_test_filter_rules(tmp_path, form):
    write_pod_sequence(str(tmp_path / 'test' / 'seq_a'), *hand_tracks(), form=form)
    sample = PointOdysseyDataset(str(tmp_path), N=256)[0]
    trajs, visibs, valids = sample['trajs'], sample['visibs'], sample['valids']
    assert trajs.shape == (10, 4, 2)  # points 0, 4, 5, 6 are kept
    assert valids[:, 1].tolist() == [1, 1, 1, 0, 1, 1, 1, 1, 1, 1] == visibs[:, 1].tolist()  # border on frame 3
    assert valids[4, 2] == 0 and np.isfinite(trajs).all() and (trajs[4, 2] == 0).all()  # NaN -> (0, 0), invalid
    assert trajs[8:, 3, 0].tolist() == [-32, -32] and valids[8:, 3].tolist() == [0, 0]  # clamped, invalid
    evenly = PointOdysseyDataset(str(tmp_path), N=2)[0]
    np.testing.assert_array_equal(evenly['trajs'], trajs[:, [0, 3]])  # linspace(0, 3, 2) of the kept points


def test_pointodyssey_sequence_without_good_points_is_an_empty_sample(tmp_path):
    trajs, visibs, valids = hand_tracks()
    visibs[0] = False
    write_pod_sequence(str(tmp_path / 'test' / 'seq_a'), trajs, visibs, valids)
    sample = PointOdysseyDataset(str(tmp_path), N=8)[0]
    assert sample['trajs'].shape == (10, 0, 2) and sample['valids'].shape == (10, 0)


@pytest.mark.parametrize('break_it, message', [
    (lambda d: os.remove(os.path.join(d, 'anno.npz')), 'no anno.npz or annotations.npz'),
    (lambda d: np.savez(os.path.join(d, 'anno.npz'), trajs_2d=np.zeros((10, 8, 2))), r'anno\.npz: has neither visibs'),
    (lambda d: open(os.path.join(d, 'anno.npz'), 'wb').write(b'junk'), r'anno\.npz: cannot read the annotations'),
    (lambda d: os.remove(os.path.join(d, 'rgbs', 'rgb_00009.jpg')), 'annotations for 10 frames but 9 frames'),
    (lambda d: os.remove(os.path.join(d, 'rgbs', 'rgb_00004.jpg')), r'rgb_00004\.jpg: no such frame'),
])
def test_pointodyssey_errors_name_the_file(tmp_path, break_it, message):
    seq_dir = str(tmp_path / 'test' / 'seq_a')
    write_pod_sequence(seq_dir, *hand_tracks())
    break_it(seq_dir)
    with pytest.raises(DatasetError, match=message):
        PointOdysseyDataset(str(tmp_path))[0]


def test_pointodyssey_missing_split(tmp_path):
    with pytest.raises(DatasetError, match='no sequence folders'):
        PointOdysseyDataset(str(tmp_path), dset='val')


def test_pickled_sample_keys_match_the_originals(tmp_path):
    # the keys the original loaders return are all present (scripts and DataLoader users rely on them)
    write_davis(str(tmp_path), names=('bear',), T=3)
    assert {'rgbs', 'trajs', 'valids', 'visibs'} <= set(TapVidDavis(str(tmp_path))[0])
    write_crohd(str(tmp_path / 'cro'), T=8, H=120, W=160)
    assert {'folder', 'start_frame', 'end_frame', 'trajs', 'visibs', 'valids'} <= set(
        CrohdDataset(str(tmp_path / 'cro'), S=8, S_min=4)[0])
    write_pod_sequence(str(tmp_path / 'pod' / 'test' / 'seq_a'), *hand_tracks())
    sample = PointOdysseyDataset(str(tmp_path / 'pod'))[0]
    assert {'seq', 'rgb_paths', 'trajs', 'visibs', 'valids'} <= set(sample)
    pickle.dumps(sample)  # plain data: safe for DataLoader workers
