"""CroHD (MOT Head Tracking 21, HT21) as long clips of head tracks.

Layout (the HT21 download): ``<dataset_location>/HT21/train/HT21-0{1,2,3,4}/img1/%06d.jpg``
with ``gt/gt.txt`` beside ``img1`` (or under ``HT21Labels/train/<video>/gt/``), MOT rows
``frame, id, left, top, width, height, conf, class, visibility``, frames and ids 1-based.
A head's track is its box centre; rows present are valid, visibility from the file.
Videos are cut into clips of ``S`` frames every ``S // 2`` frames, keeping clips of at
least ``S_min`` frames.
"""

import os

import numpy as np

from datasets.common import DatasetError, iter_frames, read_rgb

VIDEOS = ['HT21-01', 'HT21-02', 'HT21-03', 'HT21-04']
BORDER = 32  # annotations near the border are unreliable
MIN_MOTION = 150  # summed frame-to-frame motion a head needs to be kept


def read_gt(path):
    """(centres T,M,2, valids T,M, visibs T,M) from a MOT gt.txt, sorted by frame."""
    try:
        rows = np.loadtxt(path, delimiter=',', ndmin=2)
    except (OSError, ValueError) as exc:
        raise DatasetError(f'{path}: cannot read MOT annotations ({exc})') from exc
    if rows.shape[1] < 9 or len(rows) == 0:
        raise DatasetError(f'{path}: expected rows of 9 comma-separated MOT fields')
    rows = rows[np.argsort(rows[:, 0], kind='stable')]
    frames = rows[:, 0].astype(int) - 1
    heads = rows[:, 1].astype(int) - 1
    T, M = frames.max() + 1, heads.max() + 1
    centres = np.zeros((T, M, 2))
    valids = np.zeros((T, M))
    visibs = np.zeros((T, M))
    centres[frames, heads] = rows[:, 2:4] + rows[:, 4:6] / 2
    valids[frames, heads] = 1
    visibs[frames, heads] = rows[:, 8]
    return centres, valids, visibs


def select_heads(trajs, valids, visibs, H, W):
    """The original's filter for one clip: border rule, visible/valid in frames 0 and 1,
    summed motion over MIN_MOTION px; invisible frames repeat the previous position."""
    trajs, valids, visibs = trajs.copy(), valids.copy(), visibs.copy()
    near_border = ((trajs[..., 0] < BORDER) | (trajs[..., 0] > W - BORDER) |
                   (trajs[..., 1] < BORDER) | (trajs[..., 1] > H - BORDER))
    visibs[near_border] = 0
    valids[near_border] = 0
    motion = np.linalg.norm(trajs[1:] - trajs[:-1], axis=-1).sum(axis=0)
    keep = (visibs[0] > 0) & (visibs[1] > 0) & (valids[0] > 0) & (valids[1] > 0) & (motion > MIN_MOTION)
    trajs, valids, visibs = trajs[:, keep], valids[:, keep], visibs[:, keep]
    for t in range(1, len(trajs)):
        hidden = visibs[t] == 0
        trajs[t, hidden] = trajs[t - 1, hidden]
    return trajs, valids, visibs


class CrohdDataset:
    """Clips of CroHD videos. Each sample holds ``frame_paths`` (read lazily, e.g. with
    ``frames()``), ``trajs`` T,N,2 pixels, ``valids`` and ``visibs`` T,N, ``name``, and the
    frame size ``H``, ``W``."""

    def __init__(self, dataset_location, S=1000, S_min=128):
        root = os.path.join(dataset_location, 'HT21', 'train')
        self.clips = []
        for video in VIDEOS:
            image_dir = os.path.join(root, video, 'img1')
            if not os.path.isdir(image_dir):
                continue
            gt_path = os.path.join(root, video, 'gt', 'gt.txt')
            if not os.path.exists(gt_path):
                gt_path = os.path.join(dataset_location, 'HT21Labels', 'train', video, 'gt', 'gt.txt')
            if not os.path.exists(gt_path):
                raise DatasetError(f'{os.path.join(root, video)}: no gt/gt.txt for this video')
            centres, valids, visibs = read_gt(gt_path)
            for start in range(0, len(centres), S // 2):
                end = min(start + S, len(centres))
                if end - start >= S_min:
                    self.clips.append((video, image_dir, start, end, centres, valids, visibs))
        if not self.clips:
            raise DatasetError(f'{root}: no HT21-0x video folders with clips of >= {S_min} frames')

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, index):
        video, image_dir, start, end, centres, valids, visibs = self.clips[index]
        paths = [os.path.join(image_dir, '%06d.jpg' % (t + 1)) for t in range(start, end)]
        H, W = read_rgb(paths[0]).shape[:2]
        trajs, valids, visibs = select_heads(centres[start:end], valids[start:end], visibs[start:end], H, W)
        return {'name': f'{video}_{start:06d}', 'frame_paths': paths, 'trajs': trajs.astype(np.float32),
                'valids': valids.astype(np.float32), 'visibs': visibs.astype(np.float32), 'H': H, 'W': W}

    @staticmethod
    def frames(sample):
        """The sample's frames, read one at a time (H,W,3 uint8 RGB)."""
        return iter_frames(sample['frame_paths'])
