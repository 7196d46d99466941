"""What the dataset loaders share: their error type, the frame reader and the PointOdyssey
annotation reader.

PointOdyssey annotations live in ``anno.npz`` (or, in older releases, ``annotations.npz``)
in either form: v1.2 (``trajs_2d`` T,M,2 pixels, ``visibs`` T,M, ``valids`` T,M) or legacy
(``trajs_2d`` and ``visibilities`` T,M with 0 occluded, 1 visible, 2 invalid: valid =
value < 2, visible = value == 1).
"""

import contextlib
import os
import zipfile
import zlib

import cv2
import numpy as np
import torch

from utils.errors import PipsError


class DatasetError(PipsError, ValueError):
    """A dataset file is missing, unreadable or not in the expected form."""


NPZ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)  # missing, truncated, corrupt


@contextlib.contextmanager
def reading_npz(path, what='this file'):
    """``np.load(path)`` (no pickles) in a block where any error of reading the file, now or
    as its arrays are read, is DatasetError naming the file: '<path>: cannot read <what> (...)'."""
    try:
        with np.load(path, allow_pickle=False) as data:
            yield data
    except DatasetError:
        raise
    except NPZ_ERRORS as exc:
        raise DatasetError(f'{path}: cannot read {what} ({exc})') from exc


def read_rgb(path):
    """One image file as H,W,3 uint8 RGB; DatasetError naming the file if unreadable."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f'{path}: missing or not a readable image')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class FrameSequence:
    """A video stored as one image file per frame, read only when asked.

    Iterating yields H,W,3 uint8 RGB frames one at a time; ``read(start, end, size)``
    returns frames start..end-1 as one end-start,3,H,W uint8 tensor, resized to
    ``size`` = (H, W) with OpenCV's bilinear filter as the original test scripts did.
    Every frame must have the first frame's size (DatasetError naming the file if not).
    """

    def __init__(self, paths):
        self.paths = list(paths)
        self._size = None

    def __len__(self):
        return len(self.paths)

    def size(self):
        """(H, W) of the frames, from the first one."""
        if self._size is None:
            if not self.paths:
                raise DatasetError('an empty frame sequence has no size')
            self._size = read_rgb(self.paths[0]).shape[:2]
        return self._size

    def frame(self, index):
        """Frame ``index`` as H,W,3 uint8 RGB."""
        image = read_rgb(self.paths[index])
        if image.shape[:2] != self.size():
            raise DatasetError(f'{self.paths[index]}: frame is {image.shape[1]}x{image.shape[0]}, '
                               f'the video\'s first frame {self.size()[1]}x{self.size()[0]}')
        return image

    def __iter__(self):
        for index in range(len(self.paths)):
            yield self.frame(index)

    def read(self, start, end, size=None):
        """Frames start..end-1 as end-start,3,H,W uint8 (resized to ``size`` if given)."""
        frames = [self.frame(index) for index in range(start, end)]
        if size is not None:
            frames = [cv2.resize(f, (int(size[1]), int(size[0])), interpolation=cv2.INTER_LINEAR) for f in frames]
        return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # T,3,H,W


def annotation_path(seq_dir):
    """The sequence's annotation file (anno.npz preferred), or None."""
    for name in ('anno.npz', 'annotations.npz'):
        path = os.path.join(seq_dir, name)
        if os.path.isfile(path):
            return path
    return None


def read_visibility(anno, path):
    """(visibs, valids) T,M bool from either annotation form."""
    if 'visibs' in anno and 'valids' in anno:
        return anno['visibs'].astype(bool), anno['valids'].astype(bool)
    if 'visibilities' in anno:
        code = anno['visibilities']
        return code == 1, code < 2
    raise DatasetError(f'{path}: has neither visibs/valids nor visibilities')


def read_annotations(path, frame_idx=slice(None)):
    """(trajs S,M,2 float32 pixels, visibs S,M bool, valids S,M bool) at ``frame_idx``, as
    the original reads them: a non-finite point becomes (0, 0), invisible and invalid."""
    with reading_npz(path, 'the annotations') as anno:
        if 'trajs_2d' not in anno.files:
            raise DatasetError(f'{path}: no trajs_2d (keys: {sorted(anno.files)})')
        trajs = anno['trajs_2d'].astype(np.float32)
        visibs, valids = read_visibility(anno, path)
    if trajs.ndim != 3 or trajs.shape[2] != 2 or visibs.shape != trajs.shape[:2] or valids.shape != visibs.shape:
        raise DatasetError(f'{path}: trajs_2d {trajs.shape}, visibility {visibs.shape} and validity '
                           f'{valids.shape} are not T,M,2 / T,M / T,M')
    trajs, visibs, valids = trajs[frame_idx], visibs[frame_idx], valids[frame_idx]
    finite = np.isfinite(trajs).all(axis=-1)
    return np.where(finite[..., None], trajs, 0).astype(np.float32), visibs & finite, valids & finite
