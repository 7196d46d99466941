"""Track files other tools open: CSV for spreadsheets and plotting, TAP-Vid pickles for TAP-Vid tooling.

**CSV** (``write_csv`` / ``read_csv``): a header line, then one row per frame and point,
frame by frame::

    frame,point,x,y[,visible][,confidence]

``x, y`` are in the video's pixels; ``visible`` (0/1) and ``confidence`` (0..1) are there
only when the tracks carry them. Numbers are written with 9 significant digits, which
float32 values survive exactly.

**TAP-Vid** (``write_tapvid`` / ``read_tapvid``): a pickle in the layout of TAP-Vid's own
files, a dict ``{name: video}`` where ``video`` holds ``video`` (the frames as JPEG bytes, as
TAP-Vid's Kinetics files store them), ``points`` N,T,2 float32 (x, y) in [0, 1] and
``occluded`` N,T bool (all False when the tracks carry no visibility). Points are
normalised as the project's TAP-Vid loader reads them (``datasets/tapviddataset_fullseq.py``,
the PIPs++ protocol): x / (W-1) and y / (H-1), so 0 and 1 are the centres of the first and
last pixels. TAP-Vid's own evaluation code multiplies by W and H instead, which places a
point at most one pixel further right and down (x * W / (W-1) - x <= 1 px).
"""

import io
import os
import pickle

import numpy as np
from PIL import Image

from utils.errors import PipsError
from utils.files import atomic_path

CSV_COLUMNS = ('frame', 'point', 'x', 'y')
CSV_NUMBER = '%.9g'  # float32 values round-trip exactly
TAPVID_SUFFIX = '.tapvid.pkl'
JPEG_QUALITY = 95


class TrackFileError(PipsError, ValueError):
    """A track file (CSV or TAP-Vid pickle) that cannot be read or is malformed."""


def csv_columns(visible, confidence):
    """The CSV header's columns for tracks with or without visibility and confidence."""
    return CSV_COLUMNS + (('visible',) if visible is not None else ()) + (
        ('confidence',) if confidence is not None else ())


def write_csv(path, tracks, visible=None, confidence=None):
    """tracks T,N,2 (video pixels), visible T,N bool or None, confidence T,N or None -> a CSV
    file of ``frame,point,x,y[,visible][,confidence]`` rows, written frame by frame (tracks
    may be a memmap) through a temporary name."""
    T, N = tracks.shape[:2]
    columns = csv_columns(visible, confidence)
    formats = ['%d', '%d', CSV_NUMBER, CSV_NUMBER] + (['%d'] if visible is not None else []) + (
        [CSV_NUMBER] if confidence is not None else [])
    points = np.arange(N)
    with atomic_path(path) as tmp_path, open(tmp_path, 'w') as f:
        f.write(','.join(columns) + '\n')
        for t in range(T):
            fields = [np.full(N, t), points, tracks[t, :, 0], tracks[t, :, 1]]
            if visible is not None:
                fields.append(np.asarray(visible[t]).astype(int))
            if confidence is not None:
                fields.append(confidence[t])
            np.savetxt(f, np.stack(fields, axis=1).astype(np.float64), fmt=formats, delimiter=',')


def read_csv(path):
    """(tracks T,N,2 float32, visible T,N bool or None, confidence T,N float32 or None), as
    ``tracking.Tracks`` holds them, from a CSV that ``write_csv`` wrote (any row order);
    TrackFileError naming the file when it is malformed or misses a (frame, point) pair."""
    path = str(path)
    try:
        with open(path) as f:
            columns = tuple(f.readline().strip().split(','))
        rows = np.loadtxt(path, delimiter=',', skiprows=1, ndmin=2, dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise TrackFileError(f'{path}: cannot read this CSV ({exc})') from exc
    if columns[:4] != CSV_COLUMNS or not set(columns[4:]) <= {'visible', 'confidence'}:
        raise TrackFileError(f'{path}: the header must be {",".join(CSV_COLUMNS)}[,visible][,confidence]; '
                             f'got {",".join(columns)}')
    if rows.size == 0 or rows.shape[1] != len(columns):
        raise TrackFileError(f'{path}: expected rows of {len(columns)} numbers under the header')
    frames, points = rows[:, 0].astype(int), rows[:, 1].astype(int)
    T, N = frames.max() + 1, points.max() + 1
    pairs = len(np.unique(frames * N + points)) if frames.min() >= 0 and points.min() >= 0 else -1
    if pairs != len(rows) or len(rows) != T * N:
        raise TrackFileError(f'{path}: expected one row for each of {T} frames x {N} points; got {len(rows)} rows'
                             f'{"" if pairs == len(rows) else " with a (frame, point) pair repeated or negative"}')
    table = np.full((T, N, len(columns) - 2), np.nan)
    table[frames, points] = rows[:, 2:]
    named = dict(zip(columns[2:], np.moveaxis(table, -1, 0)))
    return (np.stack([named['x'], named['y']], axis=-1).astype(np.float32),
            named['visible'] > 0 if 'visible' in named else None,
            named['confidence'].astype(np.float32) if 'confidence' in named else None)


def encode_jpeg(frame, quality=JPEG_QUALITY):
    """H,W,3 uint8 RGB -> JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(frame, dtype=np.uint8)).save(buffer, format='JPEG', quality=quality)
    return buffer.getvalue()


class JpegRecorder:
    """Passes frames through while keeping each one's JPEG bytes in ``jpegs``, so the
    TAP-Vid file's video is made in the same pass over the frames as another output."""

    def __init__(self, frames):
        self.frames = iter(frames)
        self.jpegs = []
        self.size = None  # H, W of the first frame

    def __iter__(self):
        for frame in self.frames:
            self.size = self.size or frame.shape[:2]
            self.jpegs.append(encode_jpeg(frame))
            yield frame

    def finish(self):
        """Read the frames no one has read yet; returns every frame's JPEG bytes."""
        for _ in self:
            pass
        return self.jpegs


def tapvid_name(path):
    """The video's name in a TAP-Vid file: the file name without ``.tapvid.pkl``."""
    name = os.path.basename(str(path))
    return name[:-len(TAPVID_SUFFIX)] if name.endswith(TAPVID_SUFFIX) else os.path.splitext(name)[0]


def write_tapvid(path, tracks, jpegs, size, visible=None):
    """A TAP-Vid pickle ``{name: {'video', 'points', 'occluded'}}`` (see the module) of the
    T,N,2 tracks in video pixels of an H,W ``size`` video whose frames are ``jpegs`` (T
    JPEG bytes), through a temporary name."""
    H, W = size
    if len(jpegs) != len(tracks):
        raise ValueError(f'the TAP-Vid file needs one frame per tracked frame; got {len(jpegs)} for {len(tracks)}')
    points = (np.asarray(tracks, dtype=np.float64) / [max(W - 1, 1), max(H - 1, 1)]).astype(np.float32)
    occluded = np.zeros(tracks.shape[:2], dtype=bool) if visible is None else ~np.asarray(visible, dtype=bool)
    video = {'video': list(jpegs), 'points': np.ascontiguousarray(points.transpose(1, 0, 2)),
             'occluded': np.ascontiguousarray(occluded.T)}
    with atomic_path(path) as tmp_path, open(tmp_path, 'wb') as f:
        pickle.dump({tapvid_name(path): video}, f, protocol=pickle.HIGHEST_PROTOCOL)


def read_tapvid(path):
    """(name, tracks T,N,2 float32 in video pixels, visible T,N = not occluded, frames
    T,H,W,3 uint8) of the one video in a TAP-Vid pickle that ``write_tapvid`` wrote;
    TrackFileError naming the file otherwise."""
    path = str(path)
    try:
        with open(path, 'rb') as f:
            data = pickle.load(f)
        (name, video), = data.items()
        frames = np.stack([np.asarray(Image.open(io.BytesIO(jpeg)).convert('RGB')) for jpeg in video['video']])
        points, occluded = np.asarray(video['points'], dtype=np.float64), np.asarray(video['occluded'], dtype=bool)
    except Exception as exc:  # a broken pickle can raise almost anything
        raise TrackFileError(f'{path}: not a TAP-Vid file of one video ({type(exc).__name__}: {exc})') from exc
    H, W = frames.shape[1:3]
    tracks = (points * [max(W - 1, 1), max(H - 1, 1)]).astype(np.float32).transpose(1, 0, 2)
    return name, np.ascontiguousarray(tracks), np.ascontiguousarray(~occluded.T), frames
