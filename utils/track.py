"""Long-video tracking with PIPs++: any video, any queries, offline or online.

``track_points`` (offline) and ``TrackStream`` (online) drive one engine
(``utils.engine``): each frame is resized and encoded once, as it arrives, and its
features serve every group of queries whose window covers it and every chunk of points.
Queries at frame t are tracked forward from t to the end, and backward from t to 0 on
the time-reversed frames; the features that backward passes need are written to an
anonymous temporary file as they are computed, never held in RAM, and read back in
reverse. So memory does not grow with the video, for any query layout and any frame
source (arrays, files, folders, one-pass iterators such as a camera).

Frame-0 queries follow the original evaluation schedule exactly: windows of ``S``
frames that overlap by one frame, each started from the current estimates (zero
velocity beyond what has been tracked) and from the previous window's target features,
the last window shifted back to end on the last frame.
"""

import os

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from nets.precision import check_precision, inference_precision
from utils.engine import LAST_WINDOW_RULES, ChunkStates, DiskStore, Sweep


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


class TrackRows:
    """T,N,2 float32 tracks in video pixels, NaN until written.

    Grows as frames and queries come, or, given ``out`` (a path), is a preallocated
    ``.npy`` memmap of ``num_frames`` x ``num_points``, written as tracking goes.
    """

    def __init__(self, num_frames=None, num_points=None, out=None):
        self.T = self.N = 0
        if out is not None:
            if num_frames is None or num_points is None:
                raise ValueError('writing tracks to a file (out=...) needs the number of frames up front')
            self.array = np.lib.format.open_memmap(str(out), mode='w+', dtype=np.float32,
                                                   shape=(num_frames, num_points, 2))
            self.array[:] = np.nan
        else:
            self.array = np.full((num_frames or 64, num_points or 1, 2), np.nan, dtype=np.float32)

    def grow(self, T=None, N=None):
        T, N = max(self.T, T or 0), max(self.N, N or 0)
        cap_T, cap_N = self.array.shape[:2]
        if T > cap_T or N > cap_N:
            if isinstance(self.array, np.memmap):
                raise ValueError(f'the output file holds {cap_T} frames x {cap_N} points; '
                                 f'got frame {T - 1}, point {N - 1}')
            bigger = np.full((max(T, 2 * cap_T if T > cap_T else cap_T), max(N, 2 * cap_N if N > cap_N else cap_N),
                              2), np.nan, dtype=np.float32)
            bigger[:cap_T, :cap_N] = self.array
            self.array = bigger
        self.T, self.N = T, N

    def tracks(self):
        """The T,N,2 tracks (the memmap itself when writing to a file)."""
        view = self.array[:self.T, :self.N]
        return view if isinstance(self.array, np.memmap) else np.ascontiguousarray(view)


class TrackingRun:
    """One tracking job: frames pushed in order, queries added up to the frame they start on.

    The forward sweep runs as frames come; ``finish`` runs the last windows and the
    backward passes (on features spilled to disk up to frame ``spill_until``; None: all).
    """

    def __init__(self, model, S, iters, image_size, beautify, rows, *, spill_until=None, point_chunk=2048,
                 spill_dir=None, on_window=None, on_progress=None):
        self.model = model
        self.device = next(model.parameters()).device
        self.image_size = image_size
        self.rows = rows
        self.queries = np.zeros((0, 3))
        self.pending = {}  # frame -> [query ids] of queries whose frame has not come
        self.starts = []  # (frame, query ids, xy0 N,2 model pixels) of every group started
        self.group_ids = {}  # group key -> query ids
        self.spill_until = spill_until
        self.spill_dir = spill_dir
        self.spill = None
        self.sweep_args = dict(model=model, S=S, iters=iters, beautify=beautify, point_chunk=point_chunk,
                               on_progress=on_progress)
        self.forward = Sweep(write=self._write_forward, states=ChunkStates(folder=spill_dir),
                             on_window=on_window, **self.sweep_args)
        self.num_frames = 0
        self.size = self.scale = self.model_size = None

    def add_queries(self, queries):
        """queries: checked N,3 (t, x, y) in video pixels; t >= the last frame pushed."""
        if self.num_frames and queries[:, 0].min() < self.num_frames - 1:
            raise ValueError(f'queries can be added at frame {self.num_frames - 1} (the last pushed) or later; '
                             f'got frame {int(queries[:, 0].min())}')
        first = len(self.queries)
        self.queries = np.concatenate([self.queries, queries])
        self.rows.grow(N=len(self.queries))
        ids = np.arange(first, len(self.queries))
        for t in np.unique(queries[:, 0]).astype(int):
            self.pending.setdefault(t, []).append(ids[queries[:, 0] == t])
        if self.num_frames:
            self._start_groups(self.num_frames - 1)

    def push(self, frame):
        """Resize and encode the next frame (H,W,3 array or 3,H,W tensor) and track on it."""
        frame = frame_to_tensor(frame, self.device)
        t = self.num_frames
        self._check_size(t, tuple(frame.shape[-2:]))
        frame = resize_frame(frame, self.model_size)
        self.rows.grow(T=t + 1)
        self.num_frames += 1
        self._start_groups(t)
        fmap = self.model.encode(frame[None, None])[0, 0]  # C,H8,W8
        if self.spill_until is None or t <= self.spill_until:
            if self.spill is None:
                self.spill = DiskStore(self.spill_dir)
            self.spill.put(t, fmap)
        self.forward.push(fmap, frame if self.forward.on_window is not None else None)

    def finish(self, last_window, backward=True):
        """Run the last forward windows, then the backward passes; returns nothing."""
        if self.num_frames == 0:
            raise ValueError('no frames to track')
        if self.pending:
            raise ValueError(f'a query is at frame {max(self.pending)} but the video has {self.num_frames} frames')
        try:
            self.forward.finish(last_window)
            self.forward.states.close()
            if backward:
                self._track_backward(last_window)
        finally:
            self.close()

    def close(self):
        """Delete the spilled features (also when tracking stops on an error or Ctrl-C)."""
        if self.spill is not None:
            self.spill.close()
            self.spill = None

    def _check_size(self, t, size):
        if self.size is None:
            self.size = size
            self.model_size = tuple(self.image_size) if self.image_size is not None else size
            H, W = size
            self.scale = np.array([self.model_size[1] / W, self.model_size[0] / H])
        elif size != self.size:
            raise ValueError(f'frame {t} is {size[1]}x{size[0]} but the video started at {self.size[1]}x{self.size[0]}')

    def _start_groups(self, t):
        for ids in self.pending.pop(t, []):
            xy0 = torch.from_numpy(self.queries[ids, 1:] * self.scale).float()
            self.rows.array[t, ids] = self.queries[ids, 1:]
            group = self.forward.add_group(len(self.group_ids), t, xy0)
            self.group_ids[group.key] = ids
            self.starts.append((t, ids, xy0))

    def _write_forward(self, group, start, end, window):
        ids = self.group_ids[group.key]
        self.rows.array[start:end, ids] = window.double().numpy() / self.scale
        if start <= group.start < end:  # a query's own frame is exactly the query
            self.rows.array[group.start, ids] = self.queries[ids, 1:]

    def _track_backward(self, last_window):
        """Track every group with a query frame t > 0 from t down to 0, in one sweep over
        the spilled features read from the latest query frame backward."""
        starts = [(t, ids, xy0) for t, ids, xy0 in self.starts if t > 0]
        if not starts:
            return
        t_max = max(t for t, _, _ in starts)
        ids_of = {}

        def write(group, start, end, window):  # sweep positions p are frames t_max - p
            ids = ids_of[group.key]
            frames = t_max - np.arange(start, end)
            self.rows.array[frames[:, None], ids[None, :]] = window.double().numpy() / self.scale
            if start <= group.start < end:
                self.rows.array[t_max - group.start, ids] = self.queries[ids, 1:]

        states = ChunkStates(folder=self.spill_dir)
        sweep = Sweep(write=write, states=states, **self.sweep_args)
        try:
            for position, t in enumerate(range(t_max, -1, -1)):
                for key, (t_query, ids, xy0) in enumerate(starts):
                    if t_query == t:
                        ids_of[sweep.add_group(key, position, xy0).key] = ids
                sweep.push(self.spill.get(t, self.device))
            sweep.finish(last_window)
        finally:
            states.close()


def check_video_array(frames):
    if isinstance(frames, (np.ndarray, torch.Tensor)) and frames.ndim != 4:
        raise ValueError(f'a video array must be T,H,W,3 (numpy) or T,3,H,W (torch); '
                         f'got shape {tuple(frames.shape)}')


@torch.no_grad()
def track_points(model, frames, queries, S=128, iters=16, image_size=(512, 896), beautify=False,
                 num_frames=None, progress=False, on_window=None, *, last_window='shift', point_chunk=2048,
                 out=None, spill_dir=None, precision='fp32'):
    """Track ``queries`` through a video of any length.

    model: a Pips model (its device is used). frames: a T,H,W,3 uint8 numpy array, a
    T,3,H,W tensor (0..255), or any iterable of H,W,3 numpy / 3,H,W tensor frames, read
    once, in order. queries: N,3 rows (t, x, y) in the video's pixels, t the query's frame.
    image_size: (H, W) the model runs at (None: the video's own size).
    num_frames: the length, if known (for the progress bar, and needed with ``out``).
    on_window(start, end, rgbs, preds_anim): sees every forward window.
    last_window: 'shift' (the original's: the last window ends on the last frame) or
    'short' (a shorter last window, nothing tracked twice). point_chunk: points per pass
    through a window (bounds memory for dense grids). out: a ``.npy`` path to write the
    tracks to as a memmap (for very large T x N). spill_dir: where the temporary file of
    features for backward passes goes (default: the system's temporary folder).
    precision: 'fp32' (default, the published numbers), 'bf16' or 'fp16' (autocast of the
    matrix products; coordinates stay float32, see nets/precision.py).
    Returns T,N,2 float32 tracks in the video's pixels; row t of a query is exactly its (x, y).
    """
    queries = check_queries(queries)
    check_video_array(frames)
    check_precision(precision)
    if last_window not in LAST_WINDOW_RULES:  # before any frame is read, not after the whole video
        raise ValueError(f'last_window must be one of {LAST_WINDOW_RULES}; got {last_window!r}')
    if num_frames is None and isinstance(frames, (np.ndarray, torch.Tensor)):
        num_frames = len(frames)
    last_query_frame = int(queries[:, 0].max())
    total = len(queries) * (num_frames - 1) if num_frames else None
    bar = tqdm(total=total, desc='tracking', unit='point-frame', unit_scale=True, disable=not progress)
    rows = TrackRows(num_frames, len(queries), out)
    spill_until = last_query_frame if last_query_frame > 0 else -1  # backward passes read frames <= this
    run = TrackingRun(model, S, iters, image_size, beautify, rows, spill_until=spill_until,
                      point_chunk=point_chunk, spill_dir=spill_dir, on_window=on_window, on_progress=bar.update)
    try:
        with inference_precision(precision, run.device):
            run.add_queries(queries)
            for frame in frames:
                run.push(frame)
            run.finish(last_window)
    finally:
        run.close()
        bar.close()
    return rows.tracks()


class TrackStream:
    """Online tracking: push frames as they come, get each frame's positions once final.

    ::

        stream = tracker.stream(queries)
        for frame in frames:                   # H,W,3 uint8 RGB
            for t, xy in stream.push(frame):   # xy N,2 video pixels, NaN before a query's frame
                ...
        tracks = stream.finish()               # T,N,2

    A frame is emitted at most S-1 frames after it was pushed, and emitted values never
    change. ``add`` takes more queries, at the last pushed frame or later. ``finish``
    runs the last (shorter) windows and, with ``backward``, tracks each query from its
    frame back to frame 0, filling rows that were NaN; for that, every frame's features
    go to a temporary file as they are computed (``spill_dir``; ``backward=False``
    writes nothing). On a video that windows cover exactly (T = 1 + k(S-1)), frame-0
    queries get the same tracks as offline ``track_points``.
    """

    def __init__(self, model, queries=None, S=48, iters=16, image_size=(512, 896), beautify=True, *,
                 backward=True, point_chunk=2048, spill_dir=None, precision='fp32'):
        check_precision(precision)
        self.backward = backward
        self.precision = precision
        self.rows = TrackRows()
        self.run = TrackingRun(model, S, iters, image_size, beautify, self.rows,
                               spill_until=None if backward else -1, point_chunk=point_chunk, spill_dir=spill_dir)
        self.emitted = 0
        self.finished = False
        if queries is not None:
            self.add(queries)

    def add(self, queries):
        """More N,3 (t, x, y) queries in video pixels, at the last pushed frame or later."""
        self.run.add_queries(check_queries(queries))

    @torch.no_grad()
    def push(self, frame):
        """Track on the next frame (H,W,3 uint8 RGB); returns [(t, xy N,2)] of the frames
        that have just become final."""
        if self.finished:
            raise ValueError('the stream is finished')
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f'frames must be H,W,3 uint8 RGB; got {frame.shape} {frame.dtype}')
        try:
            with inference_precision(self.precision, self.run.device):
                self.run.push(frame)
        except BaseException:
            self.run.close()
            raise
        return self._emit()

    @torch.no_grad()
    def finish(self):
        """Track the rest and return all T,N,2 tracks (video pixels)."""
        self.finished = True
        with inference_precision(self.precision, self.run.device):
            self.run.finish('short', backward=self.backward)
        return self.rows.tracks()

    def _emit(self):
        out = []
        groups = self.run.forward.groups
        while self.emitted < self.run.num_frames:
            t = self.emitted
            if any(group.start <= t and group.final_until <= t for group in groups):
                break
            out.append((t, self.rows.array[t, :self.rows.N].copy()))
            self.emitted += 1
        return out


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

    def __init__(self, model, S=48, iters=16, image_size=(512, 896), beautify=True, precision='fp32'):
        check_precision(precision)
        self.model = model.eval()
        self.precision = precision
        self.S = S
        self.iters = iters
        self.image_size = image_size
        self.beautify = beautify

    @classmethod
    def from_checkpoint(cls, init_dir='./reference_model', device=None, **kwargs):
        """Load the newest checkpoint in ``init_dir`` (strictly) onto ``device``; a missing
        or unfitting checkpoint raises ``saverloader.CheckpointError``."""
        from utils.misc import load_pips

        device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
        return cls(load_pips(init_dir, device), **kwargs)

    def __call__(self, video, queries=None, progress=False, *, grid_stride=None, out=None):
        """Tracks T,N,2 in video pixels of ``queries``, or of every ``grid_stride``-th pixel of
        frame 0 (dense), or of a 32x32 grid on frame 0. ``out``: a .npy path to write the
        tracks to as they come (a memmap; for very large T x N)."""
        from utils.video import iter_video_frames, video_info

        num_frames = None
        if isinstance(video, (str, os.PathLike)):
            num_frames, H, W, _ = video_info(video)
            frames = iter_video_frames(video)
        else:
            frames = video
            H, W = video.shape[1:3] if isinstance(video, np.ndarray) else video.shape[-2:]
        if queries is None:
            queries = stride_grid_queries(H, W, grid_stride) if grid_stride else grid_queries(H, W, 1024)
        return track_points(self.model, frames, queries, S=self.S, iters=self.iters,
                            image_size=self.image_size, beautify=self.beautify, num_frames=num_frames,
                            progress=progress, out=out, precision=self.precision)

    def stream(self, queries=None, *, backward=True, spill_dir=None):
        """An online ``TrackStream`` with this tracker's settings."""
        return TrackStream(self.model, queries, S=self.S, iters=self.iters, image_size=self.image_size,
                           beautify=self.beautify, backward=backward, spill_dir=spill_dir, precision=self.precision)
