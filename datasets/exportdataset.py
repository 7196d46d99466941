"""Clips written by export_mp4_dataset.py, read back for training.

Clips live in ``<dataset_location>/<dataset_version>/<step:06d>/`` as ``rgb.mp4`` and
``track.npz`` (``track_g`` S,M,4: x, y, visible, valid). ``dataset[i]`` is a dict of
``rgbs`` S,3,H,W uint8 RGB and ``track_g`` S,N,4 float32: the clip's first S frames and N
of its M tracks picked at random (all M, in their stored order, when N == M). The clips
must have been exported at ``crop_size``: as in the original, they are never cropped
here. With ``use_augs`` the photometric recipe is applied once more, to the frames in BGR
order as the original (which decoded them with OpenCV) did.

A corrupt or truncated clip is reported once (on stderr, by path) and another clip is
returned in its place, however few readable clips remain; a clip is never silently
replaced by zeros.
"""

import glob
import itertools
import os
import sys

import numpy as np
import torch

from datasets.augment import augment_video_bgr, color_augmenter, sample_rng
from datasets.common import DatasetError, reading_npz
from utils.video import VideoError, iter_video_frames, video_info

CLIP_ERRORS = (VideoError, DatasetError, OSError, ValueError)


class ExportDataset(torch.utils.data.Dataset):
    """Exported clips (see the module docstring). ``N=None`` reads as many tracks as the
    clips hold. Raises DatasetError when the folder holds no clips or when its clips are
    not of crop_size, are shorter than S or hold fewer than N tracks."""

    def __init__(self, dataset_location='./pod_export', dataset_version='ae_36_128_384x512', S=36, N=None,
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
        self.check_first_clip()

    def check_first_clip(self):
        """Check S, crop_size and N against the first readable clip (unreadable ones before
        it are reported and skipped); N=None becomes its track count."""
        for clip in self.clips:
            try:
                frames, H, W, _ = video_info(os.path.join(clip, 'rgb.mp4'))
                S_track, M, _ = read_track(clip).shape
                break
            except CLIP_ERRORS as exc:
                self.report(clip, exc)
        else:
            raise self.none_readable()
        ch, cw = self.crop_size
        if (H, W) != (ch, cw):
            raise DatasetError(f'{clip}: clips are {H}x{W} but crop_size is {ch}x{cw}; train at the exported size '
                               f'(--crop_size={H},{W}) or export at this one (export_mp4_dataset.py '
                               f'--crop_size={ch},{cw})')
        if min(frames, S_track) < self.S:
            raise DatasetError(f'{clip}: clips hold {min(frames, S_track)} frames, fewer than S={self.S}')
        if self.N is None:
            self.N = M
        elif M < self.N:
            raise DatasetError(f'{clip}: clips hold {M} tracks, fewer than the N={self.N} asked for '
                               f'(ask for at most {M}, or export with --N={self.N})')

    def report(self, clip, exc):
        """Say once, on stderr, that a clip is unreadable; it is skipped from then on."""
        self.reported.add(clip)
        print(f'warning: skipping unreadable clip {clip}: {exc}', file=sys.stderr, flush=True)

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, index):
        """Clip ``index``, or while it is unreadable a clip drawn at random among those not
        yet found unreadable (however many are), so that DatasetError comes only when none is left."""
        rng = sample_rng(None, index, self.color_augmenter)
        while len(self.reported) < len(self.clips):
            clip = self.clips[index]
            if clip not in self.reported:
                try:
                    return self.load(clip, rng)
                except CLIP_ERRORS as exc:
                    self.report(clip, exc)
            index = int(rng.integers(len(self.clips)))
        raise self.none_readable()

    def none_readable(self):
        return DatasetError(f'{os.path.dirname(self.clips[0])}: none of the {len(self.clips)} clips is readable '
                            '(each was reported above)')

    def load(self, clip, rng):
        """One sample from a clip folder; raises one of CLIP_ERRORS if it is unreadable or
        not of the first clip's form."""
        rgbs = read_frames(os.path.join(clip, 'rgb.mp4'), self.S)  # S,H,W,3
        track_g = read_track(clip)[:self.S].astype(np.float32)  # S,M,4
        if rgbs.shape[1:3] != self.crop_size:
            raise ValueError(f'frames of {rgbs.shape[2]}x{rgbs.shape[1]}, not crop_size {self.crop_size}')
        if len(track_g) < self.S or track_g.shape[1] < self.N or track_g.shape[2] != 4:
            raise ValueError(f'track.npz holds track_g of shape {track_g.shape}, need {self.S},>={self.N},4')
        if track_g.shape[1] > self.N:
            track_g = track_g[:, rng.choice(track_g.shape[1], self.N, replace=False)]
        if self.use_augs:
            rgbs = augment_video_bgr(self.color_augmenter, rgbs)
        return {'rgbs': torch.from_numpy(np.ascontiguousarray(rgbs)).permute(0, 3, 1, 2),
                'track_g': torch.from_numpy(track_g)}


def read_track(clip):
    """The clip's ``track_g`` (S,M,4); DatasetError naming the file if it cannot be read."""
    path = os.path.join(clip, 'track.npz')
    with reading_npz(path) as data:
        track_g = data['track_g'] if 'track_g' in data.files else None
    if track_g is None or track_g.ndim != 3:
        raise DatasetError(f'{path}: holds no S,M,4 track_g')
    return track_g


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
