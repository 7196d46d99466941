"""PointOdyssey sequences in full (the test set: ~2k frames each) for test_on_pod.py.

Layout: ``<dataset_location>/<dset>/<sequence>/rgbs/rgb_%05d.jpg`` (frames counted from 0)
and the annotations in ``anno.npz`` or ``annotations.npz`` (either form, read by
``datasets.common.read_annotations``).

The original test protocol, in order: non-finite coordinates become (0, 0), invalid and
invisible; points within 1 px of the border (x < 1, x > W-2, y < 1 or y > H-2) are
invalid and invisible; the points kept are those valid and visible at frame 0, valid
and visible in at least 8 frames, and never jumping 512 px or more between consecutive
frames; coordinates are clamped to 32 px outside the frame; N of them are taken evenly
spaced (numpy linspace, truncated to integers). Fewer than N may remain, even none: no
zero-padded fake tracks are added (they would count as surviving).

Frames are never all loaded: a sample names its frame files (``FrameSequence`` reads
them one at a time or a window at a time).
"""

import glob
import os

import numpy as np
import torch

from datasets.common import DatasetError, FrameSequence, annotation_path, read_annotations

BORDER = 1  # px
MIN_GOOD_FRAMES = 8  # frames a kept point is valid and visible in
MAX_JUMP = 512  # px between consecutive frames; a point jumping this far is dropped
CLAMP_MARGIN = 32  # px outside the frame


def select_points(trajs, visibs, valids, H, W, N):
    """The original's test filter and evenly spaced pick (see the module docstring) on
    T,M arrays of H x W frames (non-finite points already zeroed and invalid); returns
    (trajs T,n,2, visibs T,n, valids T,n), n <= N."""
    x, y = trajs[..., 0], trajs[..., 1]
    inside = (x >= BORDER) & (x <= W - 1 - BORDER) & (y >= BORDER) & (y <= H - 1 - BORDER)
    visibs, valids = visibs & inside, valids & inside
    good = visibs & valids
    largest_jump = np.linalg.norm(trajs[1:] - trajs[:-1], axis=-1).max(axis=0, initial=0.0)  # M
    keep = np.flatnonzero(good[0] & (good.sum(axis=0) >= MIN_GOOD_FRAMES) & (largest_jump < MAX_JUMP))
    keep = keep[np.linspace(0, len(keep) - 1, min(N, len(keep))).astype(np.int32)]
    low, high = np.array([-CLAMP_MARGIN, -CLAMP_MARGIN]), np.array([W + CLAMP_MARGIN, H + CLAMP_MARGIN])
    return np.clip(trajs[:, keep], low, high), visibs[:, keep], valids[:, keep]


def frame_paths(seq_dir):
    """rgbs/rgb_00000.jpg .. in order; DatasetError if there are none or one is missing."""
    present = glob.glob(os.path.join(seq_dir, 'rgbs', 'rgb_*.jpg'))
    paths = [os.path.join(seq_dir, 'rgbs', 'rgb_%05d.jpg' % t) for t in range(len(present))]
    if not present:
        raise DatasetError(f'{os.path.join(seq_dir, "rgbs")}: no rgb_*.jpg frames')
    missing = sorted(set(paths) - set(present))
    if missing:
        raise DatasetError(f'{missing[0]}: no such frame (frames must be numbered from 0 without gaps)')
    return paths


class PointOdysseyTestSequences(torch.utils.data.Dataset):
    """Full PointOdyssey sequences of split ``dset`` (see the module docstring).

    A sample holds ``name`` (the sequence folder's name), the original's ``seq`` (its
    path) and ``rgb_paths``, ``frame_paths`` (the same list; read them with
    ``frames(sample)``), ``trajs`` T,n,2 float32 pixels, ``visibs`` and ``valids`` T,n
    float32 (n <= N; n == 0 when no point passes the filter: scripts should report and
    skip it), and the frame size ``H``, ``W``.
    """

    def __init__(self, dataset_location='./pointodyssey', dset='test', N=32, verbose=False):
        self.N = N
        self.verbose = verbose
        split_dir = os.path.join(dataset_location, dset)
        self.sequences = sorted(os.path.dirname(path) for path in glob.glob(os.path.join(split_dir, '*', 'rgbs')))
        if not self.sequences:
            raise DatasetError(f'{split_dir}: no sequence folders with rgbs/ here (download PointOdyssey, see README)')
        if verbose:
            print(f'found {len(self.sequences)} sequences in {split_dir}')

    def __len__(self):
        return len(self.sequences)

    def __getitem__(self, index):
        seq_dir = self.sequences[index]
        paths = frame_paths(seq_dir)
        anno = annotation_path(seq_dir)
        if anno is None:
            raise DatasetError(f'{seq_dir}: no anno.npz or annotations.npz in this sequence folder')
        trajs, visibs, valids = read_annotations(anno)
        if len(trajs) != len(paths):
            raise DatasetError(f'{anno}: annotations for {len(trajs)} frames '
                               f'but {len(paths)} frames in rgbs/')
        H, W = FrameSequence(paths).size()
        trajs, visibs, valids = select_points(trajs, visibs, valids, H, W, self.N)
        if self.verbose:
            print(f'{seq_dir}: {len(paths)} frames, {trajs.shape[1]} points')
        return {'name': os.path.basename(seq_dir), 'seq': seq_dir, 'rgb_paths': paths, 'frame_paths': paths,
                'trajs': trajs.astype(np.float32), 'visibs': visibs.astype(np.float32),
                'valids': valids.astype(np.float32), 'H': H, 'W': W}

    @staticmethod
    def frames(sample):
        """The sample's frames as a FrameSequence (iterable, or read by window)."""
        return FrameSequence(sample['frame_paths'])


PointOdysseyDataset = PointOdysseyTestSequences  # the original's name
