"""TAP-Vid (DAVIS, Kinetics, RGB-Stacking) as full videos for the test scripts.

TAP-Vid pickles hold videos as dicts with ``video`` T,H,W,3 uint8 (or, in the Kinetics
shards, a list of JPEG-encoded frames), ``points`` N,T,2 in [0, 1] as (x, y) and
``occluded`` N,T bool. DAVIS is one dict (name -> video) in ``tapvid_davis.pkl``;
Kinetics is ten lists in ``*_of_0010.pkl``; RGB-Stacking one list in
``tapvid_rgb_stacking.pkl``.

The original protocol keeps the points visible at frame 0, scales x by W-1 and y by
H-1 (1.0 is the last pixel) and takes valid = not occluded.
"""

import glob
import os
import pickle

import cv2
import numpy as np
import torch

from datasets.common import DatasetError

PICKLES = {'davis': 'tapvid_davis.pkl', 'kinetics': '*_of_0010.pkl',
           'rgb_stacking': 'tapvid_rgb_stacking.pkl'}


def pickle_paths(dataset_location, dataset_name):
    """The pickle files of a TAP-Vid dataset, in order; DatasetError if there are none."""
    if dataset_name not in PICKLES:
        raise DatasetError(f'unknown TAP-Vid dataset {dataset_name!r}; choose one of {sorted(PICKLES)}')
    pattern = os.path.join(dataset_location, PICKLES[dataset_name])
    paths = sorted(glob.glob(pattern))
    if not paths:
        raise DatasetError(f'{pattern}: no such file (download TAP-Vid {dataset_name}, see README)')
    return paths


def load_pickle(path):
    """[(name, video dict), ...] from one TAP-Vid pickle (dict or list form)."""
    try:
        with open(path, 'rb') as f:
            data = pickle.load(f)
    except Exception as exc:
        raise DatasetError(f'{path}: cannot read this pickle ({type(exc).__name__}: {exc})') from exc
    if isinstance(data, dict):
        return [(str(name), video) for name, video in data.items()]
    if isinstance(data, list):
        stem = os.path.splitext(os.path.basename(path))[0]
        return [(f'{stem}_{i:04d}', video) for i, video in enumerate(data)]
    raise DatasetError(f'{path}: expected a dict or list of videos, found {type(data).__name__}')


def decode_video(path, name, video):
    """T,H,W,3 uint8 from an array or a list of frames (arrays or JPEG bytes)."""
    if isinstance(video, np.ndarray):
        return video
    frames = []
    for t, frame in enumerate(video):
        if isinstance(frame, (bytes, bytearray)):
            image = cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise DatasetError(f'{path}: video {name}: frame {t} is not a decodable image')
            frame = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        frames.append(np.asarray(frame))
    return np.stack(frames)


def make_sample(path, name, video):
    """The original protocol's sample of one TAP-Vid video (see the module docstring)."""
    if not isinstance(video, dict):
        raise DatasetError(f'{path}: video {name} is a {type(video).__name__}, not a dict')
    for key in ('video', 'points', 'occluded'):
        if key not in video:
            raise DatasetError(f'{path}: video {name} has no {key!r} entry (keys: {sorted(video)})')
    rgbs = decode_video(path, name, video['video'])  # T,H,W,3
    points = np.asarray(video['points'], dtype=np.float32)  # N,T,2
    occluded = np.asarray(video['occluded'], dtype=bool)  # N,T
    T, H, W, _ = rgbs.shape
    if points.ndim != 3 or points.shape[1:] != (T, 2) or occluded.shape != points.shape[:2]:
        raise DatasetError(f'{path}: video {name}: points {points.shape} / occluded {occluded.shape} '
                           f'do not match its {T} frames')
    visible0 = ~occluded[:, 0]
    trajs = points[visible0].transpose(1, 0, 2) * np.array([W - 1, H - 1], np.float32)  # T,N,2
    valids = (~occluded[visible0]).T.astype(np.float32)  # T,N
    return {
        'name': name,
        'rgbs': torch.from_numpy(rgbs).permute(0, 3, 1, 2),  # T,3,H,W uint8
        'trajs': torch.from_numpy(trajs),
        'valids': torch.from_numpy(valids),
        'visibs': torch.from_numpy(valids.copy()),
        'points': points,  # N,T,2 in [0, 1], all points (for the TAP-Vid protocols)
        'occluded': occluded,
    }


class TapVidDavis:
    """Iterate TAP-Vid videos as samples: ``rgbs`` T,3,H,W uint8, ``trajs`` T,N,2 pixels,
    ``valids``/``visibs`` T,N of the points visible at frame 0 (N may be 0), plus the raw
    ``points``/``occluded`` of all points and the video ``name``. Pickles are read one at a
    time, so Kinetics' shards are never all in memory."""

    def __init__(self, dataset_location='../datasets/tapvid_davis', dataset_name='davis'):
        self.paths = pickle_paths(dataset_location, dataset_name)
        self._count = None

    def __len__(self):
        if self._count is None:
            self._count = sum(len(load_pickle(path)) for path in self.paths)
        return self._count

    def __iter__(self):
        for path in self.paths:
            for name, video in load_pickle(path):
                yield make_sample(path, name, video)
