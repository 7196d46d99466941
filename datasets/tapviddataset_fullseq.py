"""TAP-Vid (DAVIS, Kinetics, RGB-Stacking) as full videos for test_on_tap.py.

A TAP-Vid pickle holds videos, each a dict with ``video`` T,H,W,3 uint8 (or a list of
frames, each an array or JPEG-encoded bytes, as in the Kinetics shards), ``points`` N,T,2
as (x, y) in [0, 1] and ``occluded`` N,T bool. The files, in ``dataset_location``:
- DAVIS: ``tapvid_davis.pkl``, a dict (video name -> video);
- Kinetics: ten shards ``*_of_0010.pkl``, each a list (or dict) of videos;
- RGB-Stacking: ``tapvid_rgb_stacking.pkl``, a list of videos.
A video of a list is named ``<file stem>_<index:04d>``.

The original (PIPs++) protocol, given by each sample: the points visible at frame 0,
x scaled by W-1 and y by H-1 (so 1.0 is the last pixel), valid = not occluded, at the
video's own resolution. The TAP-Vid benchmark's protocols are given by
``tapvid_protocol``: frames resized to 256 x 256, points scaled by 256, queries at each
track's first visible frame ('first') or every 5th frame where visible ('strided').
"""

import glob
import io
import os
import pickle

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from datasets.common import DatasetError
from utils.metrics import tapvid_queries

PICKLES = {'davis': 'tapvid_davis.pkl', 'kinetics': '*_of_0010.pkl', 'rgb_stacking': 'tapvid_rgb_stacking.pkl'}
TAPVID_SIZE = (256, 256)  # H, W of the benchmark's frames


def pickle_paths(dataset_location, dataset_name):
    """The dataset's pickle files, sorted; DatasetError if there are none."""
    if dataset_name not in PICKLES:
        raise DatasetError(f'unknown TAP-Vid dataset {dataset_name!r}; choose one of {sorted(PICKLES)}')
    pattern = os.path.join(dataset_location, PICKLES[dataset_name])
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise DatasetError(f'{pattern}: no such file (download TAP-Vid {dataset_name}, see README)')
    return paths


def load_videos(path):
    """[(name, video), ...] from one pickle, in its order (dict or list form)."""
    try:
        with open(path, 'rb') as f:
            data = pickle.load(f)
    except Exception as exc:  # a broken pickle can raise almost anything
        raise DatasetError(f'{path}: cannot read this pickle ({type(exc).__name__}: {exc})') from exc
    if isinstance(data, dict):
        return [(str(name), video) for name, video in data.items()]
    if isinstance(data, (list, tuple)):
        stem = os.path.splitext(os.path.basename(path))[0]
        return [(f'{stem}_{index:04d}', video) for index, video in enumerate(data)]
    raise DatasetError(f'{path}: expected a dict or a list of videos, found a {type(data).__name__}')


def decode_jpeg(data, where):
    """H,W,3 uint8 RGB from JPEG (or other image) bytes; DatasetError naming ``where``."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert('RGB'))
    except (OSError, ValueError, UnidentifiedImageError) as exc:
        raise DatasetError(f'{where} is not a decodable image ({exc})') from exc


def video_frames(path, name, video):
    """The video's frames as T,H,W,3 uint8, decoding encoded frames."""
    frames = video['video']
    if not isinstance(frames, np.ndarray):
        frames = [decode_jpeg(frame, f'{path}: video {name}: frame {t}') if isinstance(frame, (bytes, bytearray))
                  else np.asarray(frame) for t, frame in enumerate(frames)]
        if not frames or len({frame.shape for frame in frames}) != 1:
            raise DatasetError(f'{path}: video {name}: no frames, or frames of different sizes')
        frames = np.stack(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise DatasetError(f'{path}: video {name}: frames are {frames.dtype} {frames.shape}, not T,H,W,3 uint8')
    return frames


def video_tracks(path, name, video, T):
    """(points N,T,2 float32 in [0, 1], occluded N,T bool), checked against T frames."""
    points = np.asarray(video['points'], dtype=np.float32)
    occluded = np.asarray(video['occluded']).astype(bool)
    if points.ndim != 3 or points.shape[1:] != (T, 2) or occluded.shape != points.shape[:2]:
        raise DatasetError(f'{path}: video {name}: points {points.shape} and occluded {occluded.shape} '
                           f'are not N,{T},2 and N,{T}')
    return points, occluded


def original_protocol(points, occluded, H, W):
    """(trajs T,n,2 pixels, valids T,n) of the n points visible at frame 0, x scaled by
    W-1 and y by H-1, valid = not occluded."""
    visible0 = ~occluded[:, 0]
    trajs = points[visible0].transpose(1, 0, 2) * np.array([W - 1, H - 1], dtype=np.float32)  # T,n,2
    valids = (~occluded[visible0]).T.astype(np.float32)  # T,n
    return trajs, valids


def make_sample(path, name, video):
    """One video's sample (see ``TapVidDavis``); DatasetError if the video is malformed."""
    if not isinstance(video, dict):
        raise DatasetError(f'{path}: video {name} is a {type(video).__name__}, not a dict')
    for key in ('video', 'points', 'occluded'):
        if key not in video:
            raise DatasetError(f'{path}: video {name} has no {key!r} entry (keys: {sorted(video)})')
    rgbs = video_frames(path, name, video)  # T,H,W,3
    T, H, W = rgbs.shape[:3]
    points, occluded = video_tracks(path, name, video, T)
    trajs, valids = original_protocol(points, occluded, H, W)
    return {
        'name': name,
        'rgbs': torch.from_numpy(rgbs).permute(0, 3, 1, 2),  # T,3,H,W uint8
        'trajs': torch.from_numpy(np.ascontiguousarray(trajs)),  # T,n,2
        'valids': torch.from_numpy(valids),  # T,n
        'visibs': torch.from_numpy(valids.copy()),  # T,n
        'points': points,  # N,T,2 in [0, 1], every point
        'occluded': occluded,  # N,T
    }


def resize_lanczos(rgbs, size):
    """T,3,H,W uint8 -> T,3,size[0],size[1] uint8 with PIL's Lanczos filter, as the
    TAP-Vid benchmark resizes (mediapy.resize_video)."""
    H, W = size
    if tuple(rgbs.shape[-2:]) == (H, W):
        return rgbs
    frames = [np.asarray(Image.fromarray(frame).resize((W, H), Image.Resampling.LANCZOS))
              for frame in rgbs.permute(0, 2, 3, 1).numpy()]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)


def tapvid_protocol(sample, query_mode, size=TAPVID_SIZE):
    """A sample in the TAP-Vid benchmark's form for ``query_mode`` 'first' or 'strided'.

    Returns ``rgbs`` T,3,256,256 uint8 (Lanczos-resized), ``query_points`` Q,3 as
    [t, y, x], ``target_points`` Q,T,2 as [x, y] and ``occluded`` Q,T bool (the queried
    tracks, in 256 x 256 pixels: the [0, 1] points times 256) and ``track_index`` Q (which
    of the video's tracks each query follows). Q may be 0 (nothing visible to query).
    """
    points = sample['points'] * np.array([size[1], size[0]], dtype=np.float32)  # N,T,2
    query_points, track_index = tapvid_queries(points, sample['occluded'], query_mode)
    return {'rgbs': resize_lanczos(sample['rgbs'], size), 'query_points': query_points,
            'target_points': points[track_index], 'occluded': sample['occluded'][track_index],
            'track_index': track_index}


class TapVidDavis(torch.utils.data.Dataset):
    """TAP-Vid videos (DAVIS by default; ``dataset_name`` 'kinetics' or 'rgb_stacking').

    A sample holds ``rgbs`` T,3,H,W uint8, ``trajs`` T,n,2 float32 pixels, ``valids``
    and ``visibs`` T,n float32 (the original protocol: the n points visible at frame 0;
    n may be 0, which scripts should report and skip), the video ``name``, and every
    point's raw ``points`` N,T,2 in [0, 1] and ``occluded`` N,T (for ``tapvid_protocol``).
    Pickles are read when needed and one at a time is kept, so Kinetics' shards are never
    all in memory; iterate in order to read each once.
    """

    def __init__(self, dataset_location='../datasets/tapvid_davis', dataset_name='davis'):
        self.paths = pickle_paths(dataset_location, dataset_name)
        self.counts = [None] * len(self.paths)  # videos per pickle, known once read
        self._loaded = (None, None)  # (pickle index, its videos)

    def _videos(self, pickle_index):
        if self._loaded[0] != pickle_index:
            self._loaded = (None, None)  # free the previous pickle before reading the next
            videos = load_videos(self.paths[pickle_index])
            self.counts[pickle_index] = len(videos)
            self._loaded = (pickle_index, videos)
        return self._loaded[1]

    def _count(self, pickle_index):
        if self.counts[pickle_index] is None:
            self._videos(pickle_index)
        return self.counts[pickle_index]

    def __len__(self):
        return sum(self._count(i) for i in range(len(self.paths)))

    def __getitem__(self, index):
        if index < 0:
            index += len(self)
        for pickle_index, path in enumerate(self.paths):
            count = self._count(pickle_index)
            if 0 <= index < count:
                name, video = self._videos(pickle_index)[index]
                return make_sample(path, name, video)
            index -= count
        raise IndexError('video index out of range')

    def __iter__(self):
        for pickle_index, path in enumerate(self.paths):
            for name, video in self._videos(pickle_index):
                yield make_sample(path, name, video)
