"""PointOdyssey test sequences (~2k frames) as full videos for test_on_pod.py.

Layout: ``<dataset_location>/<dset>/<sequence>/rgbs/rgb_%05d.jpg`` and ``anno.npz`` with
``trajs_2d`` T,M,2, ``visibs`` T,M, ``valids`` T,M (v1.2), or the older ``visibilities``
T,M (0 occluded, 1 visible, 2 invalid) in ``anno.npz`` or ``annotations.npz``.
"""

import glob
import os

import numpy as np

from datasets.common import DatasetError, iter_frames, read_rgb

MIN_VISIBLE_FRAMES = 8
MAX_JUMP = 512  # px between consecutive frames
CLAMP_MARGIN = 32  # tracks are clamped to this far outside the frame


def read_annotations(seq_dir):
    """(trajs T,M,2, visibs T,M, valids T,M) from either annotation form."""
    for name in ('anno.npz', 'annotations.npz'):
        path = os.path.join(seq_dir, name)
        if os.path.exists(path):
            break
    else:
        raise DatasetError(f'{seq_dir}: no anno.npz or annotations.npz')
    try:
        anno = np.load(path, allow_pickle=False)
        trajs = anno['trajs_2d'].astype(np.float64)
        if 'visibs' in anno and 'valids' in anno:
            visibs, valids = anno['visibs'].astype(bool), anno['valids'].astype(bool)
        elif 'visibilities' in anno:
            code = anno['visibilities']
            visibs, valids = code == 1, code < 2
        else:
            raise DatasetError(f'{path}: has neither visibs/valids nor visibilities')
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f'{path}: cannot read the annotations ({exc})') from exc
    valids &= np.isfinite(trajs).all(axis=-1)
    return np.nan_to_num(trajs), visibs, valids


def select_points(trajs, visibs, valids, H, W, N):
    """The original's test filter, then N evenly spaced points (fewer if fewer remain: unlike
    the original, no zero-padded fake points, which would count as surviving)."""
    visibs, valids = visibs.copy(), valids.copy()
    at_border = (trajs[..., 0] < 1) | (trajs[..., 0] > W - 2) | (trajs[..., 1] < 1) | (trajs[..., 1] > H - 2)
    visibs[at_border] = False
    valids[at_border] = False
    jumps = np.linalg.norm(trajs[1:] - trajs[:-1], axis=-1).max(axis=0)
    good = valids & visibs
    keep = good[0] & (good.sum(axis=0) >= MIN_VISIBLE_FRAMES) & (jumps <= MAX_JUMP)
    idx = np.flatnonzero(keep)
    idx = idx[np.linspace(0, len(idx) - 1, min(N, len(idx))).astype(np.int32)]
    trajs = np.clip(trajs[:, idx], -CLAMP_MARGIN, np.array([W, H]) + CLAMP_MARGIN)
    return trajs, visibs[:, idx], valids[:, idx]


class PointOdysseyDataset:
    """Full PointOdyssey sequences. Each sample holds ``frame_paths`` (read lazily with
    ``frames()``), ``trajs`` T,N,2 pixels, ``visibs``/``valids`` T,N, ``name``, ``H``, ``W``."""

    def __init__(self, dataset_location, dset='test', N=256):
        self.N = N
        pattern = os.path.join(dataset_location, dset, '*', 'rgbs')
        self.sequences = sorted(os.path.dirname(p) for p in glob.glob(pattern))
        if not self.sequences:
            raise DatasetError(f'{os.path.join(dataset_location, dset)}: no sequence folders with rgbs/ here')

    def __len__(self):
        return len(self.sequences)

    def __getitem__(self, index):
        seq_dir = self.sequences[index]
        paths = sorted(glob.glob(os.path.join(seq_dir, 'rgbs', 'rgb_*.jpg')))
        if not paths:
            raise DatasetError(f'{seq_dir}/rgbs: no rgb_*.jpg frames')
        trajs, visibs, valids = read_annotations(seq_dir)
        if len(trajs) != len(paths):
            raise DatasetError(f'{seq_dir}: {len(paths)} frames but annotations for {len(trajs)}')
        H, W = read_rgb(paths[0]).shape[:2]
        trajs, visibs, valids = select_points(trajs, visibs, valids, H, W, self.N)
        return {'name': os.path.basename(seq_dir), 'frame_paths': paths, 'trajs': trajs.astype(np.float32),
                'visibs': visibs.astype(np.float32), 'valids': valids.astype(np.float32), 'H': H, 'W': W}

    @staticmethod
    def frames(sample):
        """The sample's frames, read one at a time (H,W,3 uint8 RGB)."""
        return iter_frames(sample['frame_paths'])
