"""CroHD (MOT Head Tracking 21, "HT21") train videos as long clips of head tracks.

Layout, as downloaded: ``<dataset_location>/HT21/train/HT21-0{1,2,3,4}/img1/%06d.jpg``
(1920x1080) with the labels in ``gt/gt.txt`` beside ``img1``, or in a separate labels
folder ``<dataset_location>/HT21Labels/train/HT21-0x/gt/gt.txt``. ``gt.txt`` holds MOT
rows ``frame, id, left, top, width, height, conf, class, visibility``, frames and ids
counted from 1, in any order (they are sorted by frame here; the original assumed it).

The original protocol: a head's track is its box centre; a head is valid where it has a
row, visible where that row's visibility is > 0. Each video is cut into clips of ``S``
frames starting every ``S // 2`` frames (a video's length is its last annotated frame),
keeping clips of at least ``S_min`` frames. Within a clip, centres within 32 px of the
border are invalid and invisible; the heads kept are those visible and valid in the
clip's frames 0 and 1 whose summed frame-to-frame motion exceeds 150 px (frames without
a row count at (0, 0) there, as in the original); frames where a kept head is
invisible repeat its previous position.

Frames are never all loaded: a sample names its frame files, and ``FrameSequence``
reads them one at a time or a window at a time.
"""

import os

import numpy as np
import torch

from datasets.common import DatasetError, FrameSequence

VIDEOS = ('HT21-01', 'HT21-02', 'HT21-03', 'HT21-04')
BORDER = 32  # px; annotations this close to the border are unreliable
MIN_MOTION = 150  # px; summed frame-to-frame motion a head needs to be kept
MOT_COLUMNS = 9


def read_mot_rows(path):
    """The rows of a MOT gt.txt as an R,9+ float64 array, sorted by frame (stable)."""
    try:
        rows = np.loadtxt(path, delimiter=',', ndmin=2)
    except (OSError, ValueError) as exc:
        raise DatasetError(f'{path}: cannot read MOT annotations ({exc})') from exc
    if len(rows) == 0 or rows.shape[1] < MOT_COLUMNS:
        raise DatasetError(f'{path}: expected rows of {MOT_COLUMNS} comma-separated MOT fields '
                           '(frame, id, left, top, width, height, conf, class, visibility)')
    if rows[:, 0].min() < 1 or rows[:, 1].min() < 1:
        raise DatasetError(f'{path}: frame and id numbers must start at 1')
    return rows[np.argsort(rows[:, 0], kind='stable')]


def head_tracks(rows):
    """(centres T,M,2, valids T,M, visibs T,M) of M heads over T frames from sorted MOT
    rows; T is the last annotated frame. Frames without a row: centre (0, 0), invalid,
    invisible."""
    frames = rows[:, 0].astype(np.int64) - 1
    heads = rows[:, 1].astype(np.int64) - 1
    T, M = frames[-1] + 1, heads.max() + 1
    centres = np.zeros((T, M, 2))
    valids = np.zeros((T, M))
    visibs = np.zeros((T, M))
    left, top, width, height = rows[:, 2], rows[:, 3], rows[:, 4], rows[:, 5]
    centres[frames, heads] = np.stack([(left + (left + width)) / 2, (top + (top + height)) / 2], axis=1)
    valids[frames, heads] = 1
    visibs[frames, heads] = rows[:, 8]
    return centres, valids, visibs


def select_heads(trajs, valids, visibs, H, W):
    """The original's per-clip head filter (see the module docstring) on S,M arrays
    of one clip of H x W frames; returns the kept heads' (trajs S,N,2, valids S,N,
    visibs S,N)."""
    trajs, valids, visibs = trajs.copy(), valids.copy(), visibs.copy()
    x, y = trajs[..., 0], trajs[..., 1]
    near_border = (x < BORDER) | (x > W - BORDER) | (y < BORDER) | (y > H - BORDER)
    valids[near_border] = 0
    visibs[near_border] = 0
    motion = np.linalg.norm(trajs[1:] - trajs[:-1], axis=-1).sum(axis=0)  # M
    keep = ((visibs[0] > 0) & (visibs[1] > 0) & (valids[0] > 0) & (valids[1] > 0) & (motion > MIN_MOTION))
    trajs, valids, visibs = trajs[:, keep], valids[:, keep], visibs[:, keep]
    for t in range(1, len(trajs)):
        hidden = visibs[t] == 0
        trajs[t, hidden] = trajs[t - 1, hidden]
    return trajs, valids, visibs


def find_labels(dataset_location, video):
    """Path of a video's gt.txt: beside img1/, else in the HT21Labels folder."""
    candidates = [os.path.join(dataset_location, 'HT21', 'train', video, 'gt', 'gt.txt'),
                  os.path.join(dataset_location, 'HT21Labels', 'train', video, 'gt', 'gt.txt')]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise DatasetError(f'{candidates[0]}: no such file (nor {candidates[1]})')


class CrohdDataset(torch.utils.data.Dataset):
    """Clips of the CroHD train videos (see the module docstring for the protocol).

    A sample holds ``name`` (``<video>_<start frame:06d>``), the original's ``folder``,
    ``start_frame`` and ``end_frame`` (0-based, end excluded), ``frame_paths`` (read them
    with ``frames(sample)``), ``trajs`` S,N,2 float32 pixels, ``valids`` and ``visibs``
    S,N float32, and the frame size ``H``, ``W``. N may be 0 (no head passes the
    filter): scripts should report and skip such a clip.
    """

    def __init__(self, dataset_location, S=1000, S_min=128):
        if S < 2 or S_min < 2:
            raise ValueError(f'clips need at least 2 frames; got S={S}, S_min={S_min}')
        self.dataset_location = dataset_location
        self.S = S
        self.clips = []  # (video, start, end)
        self.tracks = {}  # video -> (centres, valids, visibs)
        for video in VIDEOS:
            if not os.path.isdir(self.image_dir(video)):
                continue
            self.tracks[video] = head_tracks(read_mot_rows(find_labels(dataset_location, video)))
            n_frames = len(self.tracks[video][0])
            for start in range(0, n_frames, S // 2):
                end = min(start + S, n_frames)
                if end - start >= S_min:
                    self.clips.append((video, start, end))
        if not self.tracks:
            raise DatasetError(f'{os.path.join(dataset_location, "HT21", "train")}: no HT21-0x video folders '
                               'with img1/ here (download CroHD, see README)')
        if not self.clips:
            lengths = {video: len(tracks[0]) for video, tracks in self.tracks.items()}
            raise DatasetError(f'{dataset_location}: no clip of >= {S_min} annotated frames (video lengths: {lengths})')

    def image_dir(self, video):
        return os.path.join(self.dataset_location, 'HT21', 'train', video, 'img1')

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, index):
        video, start, end = self.clips[index]
        paths = [os.path.join(self.image_dir(video), '%06d.jpg' % (t + 1)) for t in range(start, end)]
        missing = [path for path in paths if not os.path.isfile(path)]
        if missing:
            raise DatasetError(f'{missing[0]}: no such frame ({len(missing)} of clip {start}:{end} missing)')
        H, W = FrameSequence(paths).size()
        centres, valids, visibs = (array[start:end] for array in self.tracks[video])
        trajs, valids, visibs = select_heads(centres, valids, visibs, H, W)
        return {'name': f'{video}_{start:06d}', 'folder': os.path.dirname(self.image_dir(video)),
                'start_frame': start, 'end_frame': end, 'frame_paths': paths,
                'trajs': trajs.astype(np.float32), 'valids': valids.astype(np.float32),
                'visibs': visibs.astype(np.float32), 'H': H, 'W': W}

    @staticmethod
    def frames(sample):
        """The sample's frames as a FrameSequence (iterable, or read by window)."""
        return FrameSequence(sample['frame_paths'])
