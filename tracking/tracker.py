"""The three-line API: ``Tracker``, with the interactive options every entry point shares."""

import itertools
import os

import numpy as np
import torch

from tracking.model import load_pips
from tracking.options import INTERACTIVE
from tracking.outputs import check_not_inputs
from tracking.queries import check_queries, check_queries_fit, default_queries, stride_grid_queries
from tracking.run import track_points
from tracking.stream import TrackStream
from utils.video import VideoError, iter_video_frames, video_info


def frame_size(frame):
    """(H, W) of one frame: 3,H,W tensor, or H,W,3 numpy (or what becomes one, such as a
    PIL image); the frame rule itself is ``tracking.run.frame_to_tensor``'s."""
    if isinstance(frame, torch.Tensor):
        return tuple(frame.shape[-2:])
    return tuple(np.shape(frame)[:2])


def open_video(video):
    """(frames, num_frames or None, (H, W)) of a video given as a path (video file or image
    folder), a T,H,W,3 array, a T,3,H,W tensor, or any sequence or iterator of frames
    (H,W,3 numpy or 3,H,W tensor; read once)."""
    if isinstance(video, (str, os.PathLike)):
        num_frames, H, W, _ = video_info(video)
        return iter_video_frames(video), num_frames, (H, W)
    if isinstance(video, (np.ndarray, torch.Tensor)):
        if not len(video):
            raise VideoError('the video has no frames')
        return video, len(video), frame_size(video[0])
    num_frames = len(video) if hasattr(video, '__len__') else None
    try:
        frames = iter(video)
    except TypeError:
        raise VideoError(f'a video is a path, an array or a sequence of frames; got {type(video).__name__}') from None
    try:
        first = next(frames)
    except StopIteration:
        raise VideoError('the video has no frames') from None
    return itertools.chain([first], frames), num_frames, frame_size(first)


class Tracker:
    """Three-line point tracking::

        tracker = Tracker.from_checkpoint('./reference_model', device='cuda')
        tracks = tracker('video.mp4', [[0, 100.0, 200.0], [30, 50.0, 60.0]]).tracks  # T,N,2

    ``options``: a ``TrackOptions`` (default ``INTERACTIVE``); keyword ``settings`` change
    its fields (``Tracker(model, S=16, precision='bf16')``).
    """

    def __init__(self, model, options=INTERACTIVE, **settings):
        self.model = model.eval()
        self.options = options.replace(**settings) if settings else options

    @classmethod
    def from_checkpoint(cls, init_dir='./reference_model', device=None, options=INTERACTIVE, **settings):
        """Load the newest checkpoint in ``init_dir`` (strictly) onto ``device``; a missing
        or unfitting checkpoint raises ``saverloader.CheckpointError``."""
        return cls(load_pips(init_dir, device), options, **settings)

    def __call__(self, video, queries=None, progress=False, *, grid_stride=None, out=None, on_window=None):
        """``Tracks`` of ``queries``: T,N,2 positions in video pixels, visibility, confidence.

        video: a path (video file or image folder), a T,H,W,3 uint8 RGB array, a T,3,H,W
        tensor (0..255), or any sequence or iterator of frames. queries: N,3 rows
        (t, x, y) in the video's pixels; None: every ``grid_stride``-th pixel of frame 0
        if given, else the default 32x32 grid of frame 0 (``tracking.queries``).
        progress: a bar with an ETA. out: a .npy path to write the tracks to as they come
        (a memmap; for very large T x N; it appears when tracking succeeds, and may not be
        the video). on_window: see ``track_points``.

        Checked before any tracking: the queries lie in the video (its frames, when the
        length is known, and inside the frame), the model can run at the video's size
        (``TrackOptions.model_size``) and ``out`` is not the video.
        """
        frames, num_frames, (H, W) = open_video(video)
        self.options.model_size((H, W))
        if queries is None:
            queries = (stride_grid_queries(H, W, grid_stride) if grid_stride
                       else default_queries(H, W, self.options.image_size))
        queries = check_queries(queries)
        check_queries_fit(queries, num_frames, H, W)
        if out is not None and isinstance(video, (str, os.PathLike)):
            check_not_inputs([out], [video])
        return track_points(self.model, frames, queries, self.options, num_frames=num_frames, progress=progress,
                            out=out, on_window=on_window)

    def stream(self, queries=None, *, backward=True):
        """An online ``TrackStream`` with this tracker's options."""
        return TrackStream(self.model, queries, self.options, backward=backward)
