"""Long-video tracking with PIPs++: windows, any-frame queries, streamed frames.

The model sees ``S`` frames at a time. ``track_points`` runs the original evaluation
schedule over a video of any length: windows of ``S`` frames that overlap by one frame,
each started from the current estimates (zero velocity beyond what has been tracked) and
from the previous window's target features; a window that would run past the end is
shifted back to end on the last frame. Frames are pushed one at a time, so only a
window of frames (plus the small carried state) is held in memory.

A query at frame t > 0 is tracked forward from t to the end and backward from t to 0
(on the time-reversed frames); the two halves are joined at t. Backward tracking keeps
the resized frames up to the latest query frame.
"""

import os
from collections import deque

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm


def frame_to_tensor(frame, device):
    """One frame -> 3,H,W float32 tensor in 0..255 on ``device``.

    numpy arrays are H,W,3 (RGB, uint8 or float); torch tensors are 3,H,W.
    """
    if isinstance(frame, np.ndarray):
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f'a numpy frame must be H,W,3 RGB; got shape {frame.shape}')
        return torch.from_numpy(np.ascontiguousarray(frame)).to(device).permute(2, 0, 1).float()
    if frame.dim() != 3 or frame.shape[0] != 3:
        raise ValueError(f'a tensor frame must be 3,H,W RGB; got shape {tuple(frame.shape)}')
    return frame.to(device).float()


def resize_frame(frame, size):
    """3,H,W float -> 3,size[0],size[1] (bilinear, align_corners=False, as the original)."""
    if size is None or tuple(frame.shape[-2:]) == tuple(size):
        return frame
    return F.interpolate(frame[None], size=tuple(size), mode='bilinear', align_corners=False)[0]


class WindowedStream:
    """Tracks N points, given on the first frame pushed, through frames pushed one by one.

    Runs windows of ``S_max`` frames with one frame of overlap, as the original's test
    scripts do. ``push`` takes frames already at model resolution (3,H,W float);
    ``finish`` runs the last (possibly shifted-back) window and returns T,N,2 tracks in
    model pixels. ``on_window(start, end, rgbs, preds_anim)``, if given, sees every window
    (e.g. to log the refinement).
    """

    def __init__(self, model, xy0, S_max, iters, beautify=False, on_window=None):
        if S_max < 2:
            raise ValueError(f'S (frames per window) must be at least 2; got {S_max}')
        self.model = model
        self.S_max = S_max
        self.iters = iters
        self.beautify = beautify
        self.frames = deque(maxlen=S_max)  # the last S_max frames pushed
        self.estimates = [xy0]  # per frame N,2; frames past the end repeat the last one
        self.num_frames = 0
        self.window_start = 0
        self.feat_init = None
        self.on_window = on_window

    def push(self, frame):
        self.frames.append(frame)
        self.num_frames += 1
        if self.num_frames == self.window_start + self.S_max:
            self._run_window(self.window_start, self.num_frames)
            self.window_start = self.num_frames - 1

    def finish(self):
        """Track the frames not yet covered by a window and return T,N,2 (model pixels)."""
        T = self.num_frames
        if T == 0:
            raise ValueError('no frames to track')
        if T > 1 and len(self.estimates) < T:
            self._run_window(max(T - self.S_max, 0), T)
        return torch.stack(self.estimates[:T])

    def _run_window(self, start, end):
        held_from = self.num_frames - len(self.frames)  # frame index of frames[0]
        rgbs = torch.stack(list(self.frames)[start - held_from:end - held_from])[None]  # 1,S,3,H,W
        S_local = end - start
        trajs = [self.estimates[min(t, len(self.estimates) - 1)] for t in range(start, end)]
        trajs = torch.stack(trajs)[None].to(rgbs.device)  # 1,S,N,2
        feat_init = None
        if self.feat_init is not None:
            feat_init = [f[:, :S_local] for f in self.feat_init]
        preds, preds_anim, self.feat_init, _ = self.model(trajs, rgbs, iters=self.iters,
                                                          feat_init=feat_init, beautify=self.beautify)
        if self.on_window is not None:
            self.on_window(start, end, rgbs, preds_anim)
        window = preds[-1][0].to(self.estimates[0].device)  # S,N,2
        del self.estimates[start:]
        self.estimates.extend(window.unbind(0))


def check_queries(queries):
    """queries: N,3 (t, x, y) -> float64 numpy array; raise ValueError when malformed."""
    queries = np.asarray(queries, dtype=np.float64)
    if queries.ndim != 2 or queries.shape[1] != 3 or len(queries) == 0:
        raise ValueError(f'queries must be an N,3 array of (t, x, y) rows with N >= 1; '
                         f'got shape {queries.shape}')
    if not np.isfinite(queries).all():
        raise ValueError('queries contain NaN or infinite values')
    if (queries[:, 0] < 0).any() or (queries[:, 0] != np.round(queries[:, 0])).any():
        raise ValueError('query frames (column t) must be non-negative integers')
    return queries


@torch.no_grad()
def track_points(model, frames, queries, S=128, iters=16, image_size=(512, 896), beautify=False,
                 num_frames=None, progress=False, on_window=None):
    """Track ``queries`` through a video of any length.

    model: a Pips model (its device is used). frames: a T,H,W,3 uint8 numpy array, a
    T,3,H,W tensor (0..255), or any iterable of H,W,3 numpy / 3,H,W tensor frames, read
    once, in order. queries: N,3 rows (t, x, y) in the video's pixels, t the query's frame.
    image_size: (H, W) the model runs at (None: the video's own size).
    num_frames: the length, if known, for the progress bar. on_window: passed on to the
    forward ``WindowedStream`` of each query frame.
    Returns T,N,2 float32 numpy tracks in the video's pixels; row t of a query is exactly
    its (x, y).
    """
    queries = check_queries(queries)
    device = next(model.parameters()).device
    query_frames = queries[:, 0].astype(int)
    groups = {t: np.flatnonzero(query_frames == t) for t in np.unique(query_frames)}
    last_query_frame = int(query_frames.max())
    forward = {}  # query frame -> WindowedStream over frames t..T-1
    history = []  # resized frames 0..last_query_frame, for backward tracking
    scale = None
    T = 0
    bar = tqdm(total=num_frames, desc='tracking', unit='frame', disable=not progress)
    if isinstance(frames, (np.ndarray, torch.Tensor)) and frames.ndim != 4:
        raise ValueError(f'a video array must be T,H,W,3 (numpy) or T,3,H,W (torch); '
                         f'got shape {tuple(frames.shape)}')
    for t, frame in enumerate(frames):
        frame = frame_to_tensor(frame, device)
        if scale is None:
            H, W = frame.shape[-2:]
            model_size = tuple(image_size) if image_size is not None else (H, W)
            scale = torch.tensor([model_size[1] / W, model_size[0] / H], dtype=torch.float64)
        frame = resize_frame(frame, model_size)
        if t in groups:
            xy0 = torch.from_numpy(queries[groups[t], 1:]) * scale
            forward[t] = WindowedStream(model, xy0.float(), S, iters, beautify, on_window)
        for stream in forward.values():
            stream.push(frame)
        if t <= last_query_frame and last_query_frame > 0:
            history.append(frame)
        T = t + 1
        bar.update(1)
    bar.close()
    if T <= last_query_frame:
        raise ValueError(f'a query is at frame {last_query_frame} but the video has {T} frames')

    tracks = np.zeros((T, len(queries), 2), dtype=np.float64)
    for t, idx in groups.items():
        tracks[t:, idx] = forward[t].finish().double().numpy() / scale.numpy()
        if t > 0:
            backward = WindowedStream(model, (torch.from_numpy(queries[idx, 1:]) * scale).float(),
                                      S, iters, beautify)
            for frame in reversed(history[:t + 1]):
                backward.push(frame)
            tracks[:t + 1, idx] = backward.finish().double().numpy()[::-1] / scale.numpy()
        tracks[t, idx] = queries[idx, 1:]
    return tracks.astype(np.float32)


def grid_queries(H, W, N, margin=8):
    """The original demo's grid: round(sqrt(N))**2 frame-0 queries (t, x, y) spanning an
    H x W frame with ``margin`` pixels left at each side (y the slow index)."""
    side = int(round(np.sqrt(N)))
    if side < 2:
        raise ValueError(f'N must be at least 4 for a grid of points; got {N}')
    ys, xs = np.meshgrid(np.linspace(margin, H - margin, side), np.linspace(margin, W - margin, side),
                         indexing='ij')
    return np.stack([np.zeros(side * side), xs.ravel(), ys.ravel()], axis=1)


def stride_grid_queries(H, W, grid_stride, t=0):
    """Dense queries: every ``grid_stride``-th pixel of an H x W frame, at frame ``t``.

    Points sit at the centre of each grid_stride x grid_stride cell, (k-1)/2 + i*k, so the
    grid is symmetric in the frame. Returns M,3 rows (t, x, y), y the slow index.
    """
    grid_stride = int(grid_stride)
    if grid_stride < 1:
        raise ValueError(f'grid_stride must be a positive integer; got {grid_stride}')
    offset = (grid_stride - 1) / 2
    ys, xs = np.meshgrid(np.arange(offset, H, grid_stride), np.arange(offset, W, grid_stride), indexing='ij')
    return np.stack([np.full(xs.size, float(t)), xs.ravel(), ys.ravel()], axis=1)


class Tracker:
    """Three-line point tracking::

        tracker = Tracker.from_checkpoint('./reference_model', device='cuda')
        tracks = tracker('video.mp4', [[0, 100.0, 200.0], [30, 50.0, 60.0]])  # T,N,2

    ``video`` is a T,H,W,3 uint8 RGB array, a T,3,H,W tensor, a video file or a folder of
    images; ``queries`` N,3 rows (t, x, y) in the video's pixels (None: a 32x32 grid on
    frame 0). Tracks come back in the video's pixels.
    """

    def __init__(self, model, S=48, iters=16, image_size=(512, 896), beautify=True):
        self.model = model.eval()
        self.S = S
        self.iters = iters
        self.image_size = image_size
        self.beautify = beautify

    @classmethod
    def from_checkpoint(cls, init_dir='./reference_model', device=None, **kwargs):
        """Load the newest checkpoint in ``init_dir`` (strictly) onto ``device``."""
        from nets.pips2 import Pips
        from saverloader import load

        device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
        model = Pips(stride=8)
        load(init_dir, model)
        return cls(model.to(device), **kwargs)

    def __call__(self, video, queries=None, progress=False):
        from utils.video import iter_video_frames, video_info

        num_frames = None
        if isinstance(video, (str, os.PathLike)):
            num_frames, H, W, _ = video_info(video)
            frames = iter_video_frames(video)
        else:
            frames = video
            H, W = video.shape[1:3] if isinstance(video, np.ndarray) else video.shape[-2:]
        if queries is None:
            queries = grid_queries(H, W, 1024)
        return track_points(self.model, frames, queries, S=self.S, iters=self.iters,
                            image_size=self.image_size, beautify=self.beautify, num_frames=num_frames,
                            progress=progress)
