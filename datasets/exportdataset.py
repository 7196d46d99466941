"""Clips written by export_mp4_dataset.py, read back for training.

Clips live in ``<dataset_location>/<dataset_version>/<step:06d>/`` as ``rgb.mp4`` and
``track.npz`` (``track_g`` S,N,4: x, y, visible, valid). ``dataset[i]`` is a dict of
``rgbs`` S,3,H,W uint8 RGB and ``track_g`` S,N,4 float32: the clip's first S frames, a
random crop_size window when the clip is larger than crop_size, and N tracks picked at
random among those visible and valid at frame 0 (zero-padded, valid 0, if fewer). With
``use_augs`` the photometric recipe of the PointOdyssey loader is applied once more.

A corrupt or truncated clip is reported once (on stderr, by path) and another clip is
returned in its place; a clip is never silently replaced by zeros.
"""

import glob
import itertools
import os
import sys
import zipfile

import numpy as np
import torch

from datasets.common import DatasetError
from datasets.pointodysseydataset import OUT_OF_FRAME, augment_video, color_augmenter, outside, sample_rng
from utils.video import VideoError, iter_video_frames, video_info

CLIP_ERRORS = (VideoError, DatasetError, OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)


class ExportDataset(torch.utils.data.Dataset):
    """Exported clips (see the module docstring). Raises DatasetError when the folder holds
    no clips or when its clips are shorter than S, smaller than crop_size or hold fewer
    than N tracks."""

    def __init__(self, dataset_location='./pod_export', dataset_version='ae_36_128_384x512', S=36, N=128,
                 crop_size=(384, 512), use_augs=False):
        self.S, self.N = S, N
        self.crop_size = tuple(int(c) for c in crop_size)
        self.use_augs = use_augs
        self.color_augmenter = color_augmenter()
        root = os.path.join(dataset_location, dataset_version)
        print('loading export...')
        self.clips = sorted(p for p in glob.glob(os.path.join(root, '[0-9]' * 6)) if os.path.isdir(p))
        if not self.clips:
            raise DatasetError(f'{root}: no exported clips here (run export_mp4_dataset.py first)')
        print('found %d folders in %s' % (len(self.clips), root))
        self.reported = set()  # clips found unreadable (in this process)
        self.check_size()

    def check_size(self):
        """DatasetError unless the first readable clip has at least S frames of crop_size
        and N tracks (unreadable ones before it are reported and skipped)."""
        for clip in self.clips:
            try:
                frames, H, W, _ = video_info(os.path.join(clip, 'rgb.mp4'))
                with np.load(os.path.join(clip, 'track.npz')) as data:
                    S_track, M, _ = data['track_g'].shape
                break
            except CLIP_ERRORS as exc:
                self.report(clip, exc)
        else:
            raise DatasetError(f'{os.path.dirname(self.clips[0])}: no readable clip found')
        ch, cw = self.crop_size
        if min(frames, S_track) < self.S or H < ch or W < cw or M < self.N:
            raise DatasetError(f'{clip}: clips hold {min(frames, S_track)} frames of {H}x{W} with {M} tracks; '
                               f'S={self.S}, crop_size={self.crop_size} and N={self.N} need at least '
                               f'{self.S} frames of {ch}x{cw} with {self.N} tracks (export with matching '
                               '--S, --crop_size and --N, or pick another --dataset_version)')

    def report(self, clip, exc):
        """Say once, on stderr, that a clip is unreadable; it is skipped from then on."""
        self.reported.add(clip)
        print(f'warning: skipping unreadable clip {clip}: {exc}', file=sys.stderr, flush=True)

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, index):
        rng = sample_rng(None, index, self.color_augmenter)
        for _ in range(len(self.clips)):
            clip = self.clips[index]
            if clip not in self.reported:
                try:
                    return self.load(clip, rng)
                except CLIP_ERRORS as exc:
                    self.report(clip, exc)
            index = int(rng.integers(len(self.clips)))
        raise DatasetError(f'{os.path.dirname(self.clips[0])}: no readable clip found')

    def load(self, clip, rng):
        """One sample from a clip folder; raises one of CLIP_ERRORS if it is unreadable."""
        rgbs = read_frames(os.path.join(clip, 'rgb.mp4'), self.S)  # S,H,W,3
        with np.load(os.path.join(clip, 'track.npz')) as data:
            track_g = data['track_g'][:self.S].astype(np.float32)  # S,M,4
        if len(track_g) < self.S or track_g.shape[2] != 4:
            raise ValueError(f'track.npz holds track_g of shape {track_g.shape}, need {self.S},M,4')
        rgbs, track_g = self.random_crop(rgbs, track_g, rng)
        usable = np.flatnonzero(track_g[0, :, 2] * track_g[0, :, 3] > 0)
        chosen = rng.permutation(usable)[:self.N]
        out = np.zeros((self.S, self.N, 4), np.float32)
        out[:, :len(chosen)] = track_g[:, chosen]
        if self.use_augs:
            rgbs = np.stack(augment_video(self.color_augmenter, list(rgbs)))
        return {'rgbs': torch.from_numpy(np.ascontiguousarray(rgbs)).permute(0, 3, 1, 2),
                'track_g': torch.from_numpy(out)}

    def random_crop(self, rgbs, track_g, rng):
        """A random crop_size window of the frames; tracks moved into it, invisible within
        1 px of its border, invalid and clamped beyond OUT_OF_FRAME px outside it."""
        H, W = rgbs.shape[1:3]
        ch, cw = self.crop_size
        if (H, W) == (ch, cw):
            return rgbs, track_g
        x0, y0 = int(rng.integers(0, W - cw + 1)), int(rng.integers(0, H - ch + 1))
        trajs = track_g[..., :2] - [x0, y0]  # S,M,2
        track_g[..., 2] *= ~outside(trajs, ch, cw, -1)
        track_g[..., 3] *= ~outside(trajs, ch, cw, OUT_OF_FRAME)
        track_g[..., 2] *= track_g[..., 3]
        track_g[..., :2] = np.clip(trajs, -OUT_OF_FRAME, [cw + OUT_OF_FRAME, ch + OUT_OF_FRAME])
        return rgbs[:, y0:y0 + ch, x0:x0 + cw], track_g


def read_frames(path, count):
    """The first ``count`` frames of a video as count,H,W,3 uint8 RGB (decoding no further);
    ValueError if it has fewer."""
    frames_iter = iter_video_frames(path)
    try:
        frames = list(itertools.islice(frames_iter, count))
    finally:
        frames_iter.close()
    if len(frames) < count:
        raise ValueError(f'{path}: {len(frames)} frames, need {count} (truncated?)')
    return np.stack(frames)
