"""The work behind the web app (``app.py``), kept apart from its page so it runs without a browser.

A person picks a video (``open_video``), looks at its frames (``read_frame``), clicks
query points on any frame (``add_point`` / ``remove_point``) or asks for a grid
(``frame_queries``), and tracks them (``track_clip``) into a folder of their own
(``new_run_folder``), so two browser tabs never write the same files. Tracking streams
the frames through ``Tracker`` (memory does not grow with the video) and writes the
chosen track formats and the overlay video through ``tracking.outputs``.
"""

import dataclasses
import os
import tempfile
from itertools import islice

import numpy as np
import torch
from tqdm import tqdm

from nets.pips2 import MIN_SIZE
from saverloader import CheckpointError
from tracking.model import checkpoint_file, load_pips
from tracking.options import INTERACTIVE
from tracking.outputs import output_paths, tracking_settings, write_outputs
from tracking.queries import QueryError, check_queries, check_queries_fit, default_queries, stride_grid_queries
from tracking.tracker import Tracker
from utils.checks import check_count, check_size
from utils.errors import PipsError, SettingsError, error_line
from utils.files import remove
from utils.video import VideoError, iter_video_frames, video_info
from utils.vis import draw_label, draw_tracks_frame, point_colors

UNTRAINED_SEED = 0  # untrained weights are drawn from this seed, so runs can be compared
QUERY_MODES = ('points', 'grid', 'stride')  # clicked points, a grid of N points, every k-th pixel
UPLOAD_EXTENSIONS = ('.mp4', '.avi', '.mov')
RUN_PREFIX = 'run-'  # a run's folder in a session's folder


@dataclasses.dataclass(frozen=True)
class Video:
    """A video file to track, as the page shows it."""

    path: str
    name: str  # the name a person knows it by (an upload's own file name), also the outputs' name
    num_frames: int
    height: int
    width: int
    fps: float


def open_video(path, display_name=None):
    """A ``Video`` of the file at ``path``; errors name ``display_name`` (an upload's own
    name) instead of the path. VideoError for other files than mp4/avi/mov or an
    unreadable video."""
    path = str(path)
    display_name = display_name or os.path.basename(path)
    if not path.lower().endswith(UPLOAD_EXTENSIONS):
        raise VideoError(f'{display_name}: not a video file of a kind the app reads ({", ".join(UPLOAD_EXTENSIONS)})')
    try:
        num_frames, H, W, fps = video_info(path)
    except VideoError as exc:
        raise VideoError(str(exc).replace(path, display_name)) from None
    if num_frames < 2:
        raise VideoError(f'{display_name}: has {num_frames} frame; tracking needs at least 2')
    name = os.path.splitext(display_name)[0]
    return Video(path, name, num_frames, H, W, fps)


def read_frame(video, t):
    """Frame ``t`` of ``video`` as H,W,3 uint8 RGB (decoded from the start: O(t))."""
    try:
        frame = next(islice(iter_video_frames(video.path), t, None), None)
    except VideoError as exc:
        raise VideoError(str(exc).replace(video.path, video.name)) from None
    if frame is None:
        raise VideoError(f'{video.name}: has no frame {t}')
    return frame


class Clip:
    """The first ``num_frames`` frames of a video file: read once per pass, never held,
    with a length (so the tracker knows the total for its progress bar)."""

    def __init__(self, path, num_frames):
        self.path = path
        self.num_frames = num_frames

    def __len__(self):
        return self.num_frames

    def __iter__(self):
        return islice(iter_video_frames(self.path), self.num_frames)


def add_point(points, t, x, y):
    """``points`` (a list of [t, x, y] in video pixels) with a query at frame t added."""
    return [*points, [int(t), float(x), float(y)]]


def remove_point(points, number):
    """``points`` without point ``number`` (1-based, as the page numbers them)."""
    if not 1 <= number <= len(points):
        raise QueryError(f'there is no point {number}; the points are numbered 1 to {len(points)}')
    return [point for k, point in enumerate(points, start=1) if k != number]


def frame_queries(mode, points, t, size, *, N=1024, grid_stride=16, image_size=INTERACTIVE.image_size):
    """The N,3 queries (t, x, y) of query ``mode`` for an H,W (``size``) video: the clicked
    ``points`` ('points'), the demo's grid of N points on frame t ('grid', laid out at the
    model's ``image_size``), or every ``grid_stride``-th pixel of frame t ('stride')."""
    H, W = size
    image_size = check_size('model size', image_size, minimum=MIN_SIZE)
    if mode == 'points':
        if not points:
            raise QueryError('no points yet: click on the frame to add some, or choose a grid')
        return check_queries(points)
    if mode == 'grid':
        queries = default_queries(H, W, image_size, check_count('N', N, minimum=1))
        queries[:, 0] = t
        return queries
    if mode == 'stride':
        return stride_grid_queries(H, W, check_count('grid stride', grid_stride, minimum=1), t)
    raise SettingsError(f'the query mode must be one of {QUERY_MODES}; got {mode!r}')


def draw_queries(frame, queries, t, numbered=False):
    """A copy of ``frame`` (frame t) with the ``queries`` (N,3) of frame t drawn as dots in
    the overlay video's colours; with ``numbered``, each carries its 1-based number."""
    queries = np.asarray(queries, dtype=np.float64).reshape(-1, 3)
    here = np.flatnonzero(queries[:, 0] == t)
    H, W = frame.shape[:2]
    if not len(here):
        return np.array(frame, copy=True)
    xy = queries[here, 1:]
    shown = np.ones((1, len(here)), dtype=bool)
    size = max(H, W) / 640  # the overlay's dot size; clicked points are drawn larger
    image = draw_tracks_frame(frame, xy[None], shown, shown[0], point_colors(xy, H, W),
                              linewidth=max(2 if numbered else 1, round(size * (2 if numbered else 1))))
    if numbered:
        for k, (x, y) in zip(here, xy):
            draw_label(image, str(k + 1), scale=max(0.4, max(H, W) / 1600), left=int(x) + 6, top=int(y) - 6)
    return image


def has_checkpoint(init_dir):
    """Whether ``init_dir`` is a folder holding a model-<step>.pth checkpoint."""
    try:
        return bool(checkpoint_file(init_dir))
    except CheckpointError:
        return False


def load_model(init_dir, device=None):
    """The model for a run: the newest checkpoint of ``init_dir``, or with ``init_dir`` ''
    untrained weights drawn from ``UNTRAINED_SEED`` (the same weights every time, without
    touching the caller's random state)."""
    if init_dir:
        return load_pips(init_dir, device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(UNTRAINED_SEED)
        return load_pips('', device)


def new_run_folder(session_folder):
    """A fresh folder for one run's files inside a session's folder (made if missing); the
    session's earlier runs are removed, so a session keeps only its latest files."""
    os.makedirs(session_folder, exist_ok=True)
    for name in os.listdir(session_folder):
        if name.startswith(RUN_PREFIX):
            remove(os.path.join(session_folder, name))
    return tempfile.mkdtemp(prefix=RUN_PREFIX, dir=session_folder)


def track_clip(model, video, queries, *, num_frames, options=INTERACTIVE, out_dir, formats=('npz', 'csv'),
               checkpoint='', progress=True):
    """Track ``queries`` (N,3 in video pixels) through the first ``num_frames`` frames of
    ``video`` and write the track ``formats`` and the overlay video into ``out_dir``.

    Frames are read as tracking goes and read again for the overlay, never all held.
    checkpoint: the model's checkpoint file ('' for untrained weights), which the .npz
    records with the options. progress: tqdm bars in point-frames (tracking) and frames
    (the overlay). Returns (``Tracks``, {format or 'mp4': path}).
    """
    num_frames = int(num_frames)
    if not 2 <= num_frames <= video.num_frames:
        raise SettingsError(f'frames to track must be between 2 and {video.num_frames}; got {num_frames}')
    queries = check_queries(queries)
    check_queries_fit(queries, num_frames, video.height, video.width, where=video.name)
    clip = Clip(video.path, num_frames)
    result = Tracker(model, options)(clip, queries, progress=progress)
    paths = output_paths(out_dir, video.name, overlay=True, formats=formats)
    frames = tqdm(clip, total=num_frames, desc='overlay', unit='frame', disable=not progress)
    settings = tracking_settings(options, checkpoint=checkpoint, frames=num_frames)
    write_outputs(paths, trajs=result.tracks, queries=queries, fps=video.fps, settings=settings, frames=frames,
                  visible=result.visible, confidence=result.confidence)
    return result, paths


def error_message(exc, video=None):
    """The one line a page shows for a problem (``utils.errors.error_line``), naming
    ``video`` by its name rather than its temporary path."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        line = 'error: out of GPU memory (try a smaller image size, S or fewer points)'
    elif isinstance(exc, (PipsError, ValueError, OSError)):
        line = error_line(exc)
    else:
        line = f'error: {type(exc).__name__}: {exc}'
    return line.replace(video.path, video.name) if video is not None else line
