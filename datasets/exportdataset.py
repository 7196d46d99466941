"""Clips written by export_mp4_dataset.py, read back for training.

``dataset[i]`` is a dict: ``rgbs`` S,3,H,W uint8 RGB (a random crop_size crop of the
stored clip, its first S frames) and ``track_g`` S,N,4 (x, y, visible, valid) of N
tracks picked at random among those visible at frame 0 (zero-padded, valid 0, if fewer).
A corrupt or truncated clip is reported once by path and another clip is returned.
"""

import glob
import os
import sys

import numpy as np
import torch

from datasets.augment import augment_colors, color_augmenter
from datasets.common import DatasetError
from utils.video import VideoError, read_video, video_info

FAR_OUTSIDE = 64


class ExportDataset(torch.utils.data.Dataset):
    def __init__(self, dataset_location='./pod_export', dataset_version='ae_36_128_384x512', S=36, N=128,
                 crop_size=(384, 512), use_augs=False):
        self.S, self.N = S, N
        self.crop_size = tuple(int(c) for c in crop_size)
        self.use_augs = use_augs
        self.color_augmenter = color_augmenter()
        root = os.path.join(dataset_location, dataset_version)
        self.clips = sorted(p for p in glob.glob(os.path.join(root, '[0-9]' * 6)) if os.path.isdir(p))
        if not self.clips:
            raise DatasetError(f'{root}: no exported clips here (run export_mp4_dataset.py first)')
        frames, H, W, _ = video_info(os.path.join(self.clips[0], 'rgb.mp4'))
        if frames < S or H < self.crop_size[0] or W < self.crop_size[1]:
            raise DatasetError(f'{self.clips[0]}: clips hold {frames} frames of {H}x{W}, too few or too small '
                               f'for S={S} and crop_size={self.crop_size}')
        self.bad = set()
        print('found %d exported clips in %s' % (len(self.clips), root))

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, index):
        for attempt in range(len(self.clips)):
            clip = self.clips[(index + attempt) % len(self.clips)]
            if clip in self.bad:
                continue
            try:
                return self.load(clip)
            except (VideoError, OSError, ValueError, KeyError) as exc:
                self.bad.add(clip)
                print(f'warning: skipping unreadable clip {clip} ({exc})', file=sys.stderr, flush=True)
        raise DatasetError('every exported clip is unreadable')

    def load(self, clip):
        rgbs = read_video(os.path.join(clip, 'rgb.mp4'))  # T,H,W,3
        track_g = np.load(os.path.join(clip, 'track.npz'))['track_g'].astype(np.float32)  # T,M,4
        if len(rgbs) < self.S or len(track_g) < self.S:
            raise ValueError(f'{len(rgbs)} frames and {len(track_g)} track rows, need {self.S}')
        rgbs, track_g = rgbs[:self.S], track_g[:self.S].copy()
        H, W = rgbs.shape[1:3]
        ch, cw = self.crop_size
        rng = np.random.default_rng()
        y0, x0 = rng.integers(0, H - ch + 1), rng.integers(0, W - cw + 1)
        rgbs = rgbs[:, y0:y0 + ch, x0:x0 + cw]
        if self.use_augs:
            rgbs = np.stack(augment_colors(self.color_augmenter, list(rgbs)))
        trajs = track_g[..., :2] - [x0, y0]
        near_border = (trajs[..., 0] < 1) | (trajs[..., 0] > cw - 2) | (trajs[..., 1] < 1) | (trajs[..., 1] > ch - 2)
        far = ((trajs[..., 0] < -FAR_OUTSIDE) | (trajs[..., 0] > cw + FAR_OUTSIDE) |
               (trajs[..., 1] < -FAR_OUTSIDE) | (trajs[..., 1] > ch + FAR_OUTSIDE))
        track_g[..., :2] = trajs
        track_g[..., 2][near_border] = 0
        track_g[..., 3][far] = 0
        usable = np.flatnonzero(track_g[0, :, 2] * track_g[0, :, 3] > 0)
        picked = rng.permutation(usable)[:self.N]
        out = np.zeros((self.S, self.N, 4), np.float32)
        out[:, :len(picked)] = track_g[:, picked]
        return {'rgbs': torch.from_numpy(np.ascontiguousarray(rgbs)).permute(0, 3, 1, 2),
                'track_g': torch.from_numpy(out)}
