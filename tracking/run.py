"""One tracking job over a video of any length: ``TrackingRun``, and ``track_points`` on it.

Each frame is resized and encoded once, as it arrives, and its features serve every
group of queries whose window covers it and every chunk of points (``tracking.engine``).
Queries at frame t are tracked forward from t to the end, and backward from t to 0 on
the time-reversed frames; the features that backward passes need are written to an
anonymous temporary file as they are computed, never held in RAM, and read back in
reverse. So memory does not grow with the video, for any query layout and any frame
source (arrays, files, folders, one-pass iterators such as a camera).

With ``options.confidence`` every window also measures the appearance and correlation
peak of its estimates, and with ``options.consistency`` each track segment is checked by
tracking it again from its far end to its query's frame (``tracking.confidence``): the
checks of the forward segments share one reverse sweep with the backward passes, and the
checks of the backward segments run in one forward sweep over the spilled features.
"""

import math
import os
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from nets.precision import inference_precision
from tracking.confidence import CONSISTENCY, SIGNALS, check_iters, distance_256, rule_for
from tracking.engine import ChunkStates, DiskStore, Sweep
from tracking.options import INTERACTIVE
from tracking.queries import QueryError, check_queries, check_query_frames, model_scale
from utils.errors import SettingsError
from utils.files import check_writable, remove, sweep_temporaries, temporary_name
from utils.video import VideoError


class Tracks(NamedTuple):
    """What tracking returns: ``tracks, visible, confidence = track_points(...)``."""

    tracks: np.ndarray  # T,N,2 float32, the video's pixels; row t of a query is exactly its (x, y)
    visible: np.ndarray | None  # T,N bool: predicted visible (None when confidence is off)
    confidence: np.ndarray | None  # T,N float32 in [0, 1], NaN where untracked (None when confidence is off)


def frame_to_tensor(frame, device, t=0):
    """Frame ``t`` -> 3,H,W float32 tensor in 0..255 on ``device``: the one frame rule of
    every tracking entry point (``track_points``, ``Tracker``, ``TrackStream.push``).

    Accepted: H,W,3 numpy arrays (or what ``np.asarray`` makes one of, such as a PIL
    image) and 3,H,W tensors, RGB, either uint8 or floating point in 0..255. Refused with
    ``VideoError`` naming the frame: other shapes; other types (uint16, int32, bool, ...:
    their range is not 0..255); floats in 0..1 (a non-black frame whose values are all in
    0..1 and not all whole numbers); values outside 0..255; NaN or infinite pixels.
    """
    if isinstance(frame, torch.Tensor):
        if frame.dim() != 3 or frame.shape[0] != 3:
            raise VideoError(f'frame {t}: a tensor frame must be 3,H,W RGB; got shape {tuple(frame.shape)}')
        check_frame_type(t, frame.dtype, frame.dtype == torch.uint8, frame.is_floating_point())
        tensor = frame
    else:
        try:
            frame = np.asarray(frame)
        except (TypeError, ValueError) as exc:
            raise VideoError(f'frame {t}: not an array of pixels ({exc})') from None
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise VideoError(f'frame {t}: a numpy frame must be H,W,3 RGB; got shape {frame.shape}')
        check_frame_type(t, frame.dtype, frame.dtype == np.uint8, frame.dtype.kind == 'f')
        frame = np.ascontiguousarray(frame) if frame.flags.writeable else frame.copy()  # torch wants writable arrays
        tensor = torch.from_numpy(frame).permute(2, 0, 1)
    if min(tensor.shape[-2:]) < 1:
        raise VideoError(f'frame {t}: the frame is empty ({tensor.shape[-1]}x{tensor.shape[-2]})')
    is_float = tensor.is_floating_point()
    tensor = tensor.to(device).float()
    if is_float:
        check_float_values(t, tensor)
    return tensor


def check_frame_type(t, dtype, is_uint8, is_float):
    if not (is_uint8 or is_float):
        raise VideoError(f'frame {t}: frames must be uint8, or floats in 0..255; got {dtype} (convert to uint8 '
                         'RGB, scaling the values to 0..255)')


def check_float_values(t, frame):
    """VideoError unless a float 3,H,W frame's values are finite and in 0..255 (and not a
    frame in 0..1)."""
    low, high = (float(v) for v in torch.aminmax(frame))
    if not (math.isfinite(low) and math.isfinite(high)):
        raise VideoError(f'frame {t}: NaN or infinite pixels')
    if low < 0 or high > 255:
        raise VideoError(f'frame {t}: float pixels must be in 0..255; got {low:g}..{high:g}')
    if 0 < high <= 1 and bool((frame != frame.round()).any()):
        raise VideoError(f'frame {t}: float pixels in 0..1; frames are 0..255 (multiply by 255)')


def resize_frame(frame, size):
    """3,H,W float -> 3,size[0],size[1] (bilinear, align_corners=False, as the original)."""
    if size is None or tuple(frame.shape[-2:]) == tuple(size):
        return frame
    return F.interpolate(frame[None], size=tuple(size), mode='bilinear', align_corners=False)[0]


def check_video_array(frames):
    if isinstance(frames, (np.ndarray, torch.Tensor)) and frames.ndim != 4:
        raise VideoError(f'a video array must be T,H,W,3 (numpy) or T,3,H,W (torch); '
                         f'got shape {tuple(frames.shape)}')


def grown(array, T, N):
    """``array`` (T0,N0,K, NaN-filled) copied into a NaN-filled one of at least T x N rows."""
    cap_T, cap_N = array.shape[:2]
    bigger = np.full((max(T, 2 * cap_T if T > cap_T else cap_T), max(N, 2 * cap_N if N > cap_N else cap_N),
                      array.shape[2]), np.nan, dtype=array.dtype)
    bigger[:cap_T, :cap_N] = array
    return bigger


class TrackRows:
    """T,N,2 float32 tracks in video pixels, NaN until written, and with ``signals`` the
    T,N,3 float32 signals behind confidence (``tracking.confidence.SIGNALS``).

    Grows as frames and queries come, or, given ``out`` (a path), the tracks are a
    preallocated ``.npy`` memmap of ``num_frames`` x ``num_points``, written as tracking
    goes under a temporary name: ``save`` moves it to ``out``, ``discard`` deletes it, so a
    run that fails leaves an existing ``out`` as it was (the signals stay in RAM: 12 bytes
    per point and frame).
    """

    def __init__(self, num_frames=None, num_points=None, out=None, signals=False):
        self.T = self.N = 0
        self.out = None if out is None else str(out)
        if out is not None:
            self.tmp_path = temporary_name(out)
            self.array = np.lib.format.open_memmap(self.tmp_path, mode='w+', dtype=np.float32,
                                                   shape=(num_frames, num_points, 2))
            self.array[:] = np.nan
        else:
            self.array = np.full((num_frames or 64, num_points or 1, 2), np.nan, dtype=np.float32)
        self.signals = np.full((*self.array.shape[:2], len(SIGNALS)), np.nan, np.float32) if signals else None

    def grow(self, T=None, N=None):
        T, N = max(self.T, T or 0), max(self.N, N or 0)
        cap_T, cap_N = self.array.shape[:2]
        if T > cap_T or N > cap_N:
            if isinstance(self.array, np.memmap):
                raise VideoError(f'{self.out}: the output file holds {cap_T} frames x {cap_N} points, as '
                                 f'num_frames said; got frame {T - 1}, point {N - 1}')
            self.array = grown(self.array, T, N)
            if self.signals is not None:
                self.signals = grown(self.signals, T, N)
        self.T, self.N = T, N

    def save(self):
        """With ``out``: flush the tracks and move the file into place."""
        if self.out is not None:
            self.array.flush()
            os.replace(self.tmp_path, self.out)
            self.array = np.load(self.out, mmap_mode='r+')

    def discard(self):
        """With ``out``: delete the temporary file (nothing once saved)."""
        if self.out is not None:
            remove(self.tmp_path)

    def tracks(self):
        """The T,N,2 tracks (the memmap itself when writing to a file)."""
        view = self.array[:self.T, :self.N]
        return view if isinstance(self.array, np.memmap) else np.ascontiguousarray(view)


class TrackingRun:
    """One tracking job: frames pushed in order, queries added up to the frame they start on.

    The forward sweep runs as frames come; ``finish`` runs the last windows, the backward
    passes and the forward-backward checks (on features spilled to disk up to frame
    ``spill_until``; None: all). ``rows`` (a ``TrackRows``, with signals when
    ``options.confidence``) receives the results.
    """

    def __init__(self, model, options, rows, *, spill_until=None, on_window=None, on_progress=None):
        self.model = model
        self.options = options
        self.rule = rule_for(options) if options.confidence else None
        self.device = next(model.parameters()).device
        self.rows = rows
        self.queries = np.zeros((0, 3))
        self.pending = {}  # frame -> [query ids] of queries whose frame has not come
        self.starts = []  # (frame, query ids, xy0 N,2 model pixels) of every group started
        self.group_ids = {}  # group key -> query ids
        self.spill_until = spill_until
        self.spill = None
        self.sweep_args = dict(model=model, S=options.S, beautify=options.beautify, point_chunk=options.point_chunk,
                               on_progress=on_progress, last_window=options.last_window)
        self.forward = Sweep(write=self._write_forward, states=ChunkStates(folder=options.spill_dir),
                             on_window=on_window, iters=options.iters, signals=options.confidence,
                             **self.sweep_args)
        self.num_frames = 0
        self.size = self.scale = self.model_size = None
        self.offsets = None  # T,N,2 video pixels: track minus check, on the frames checked
        self.returns = None  # N,2: the same at the query frame, of the check of the backward segment

    def add_queries(self, queries):
        """queries: checked N,3 (t, x, y) in video pixels; t >= the last frame pushed."""
        if self.num_frames and queries[:, 0].min() < self.num_frames - 1:
            raise QueryError(f'queries can be added at frame {self.num_frames - 1} (the last pushed) or later; '
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
        self.track_frame(self.accept_frame(frame))

    def accept_frame(self, frame):
        """The next frame (``frame_to_tensor``'s rule) as 3,H,W at the model's size; raises
        VideoError or SettingsError before anything changes, so another frame can follow."""
        t = self.num_frames
        frame = frame_to_tensor(frame, self.device, t)
        self._check_size(t, tuple(frame.shape[-2:]))
        return resize_frame(frame, self.model_size)

    def track_frame(self, frame):
        """Encode an accepted frame and track on it."""
        t = self.num_frames
        self.rows.grow(T=t + 1)
        self.num_frames += 1
        self._start_groups(t)
        fmap = self.model.encode(frame[None, None])[0, 0]  # C,H8,W8
        if self.spill_until is None or t <= self.spill_until:
            if self.spill is None:
                self.spill = DiskStore(self.options.spill_dir)
            self.spill.put(t, fmap)
        self.forward.push(fmap, frame if self.forward.on_window is not None else None)

    def finish(self, backward=True):
        """Run the last forward windows, then the backward passes (with ``backward``) and
        the forward-backward checks (with ``options.consistency``); returns nothing."""
        if self.num_frames == 0:
            raise VideoError('the video has no frames')
        if self.pending:
            raise QueryError(f'a query is at frame {max(self.pending)} but the video has {self.num_frames} frames')
        checks = self.options.confidence and self.options.consistency
        try:
            self.forward.finish()
            self.forward.states.close()
            if checks:
                self.offsets = np.full((self.rows.T, self.rows.N, 2), np.nan, np.float32)
                self.returns = np.full((self.rows.N, 2), np.nan, np.float32)
            self._sweep_back(backward, checks)
            if backward and checks:
                self._check_backward_segments()
            if checks:
                self._write_consistency()
        finally:
            self.close()

    def close(self):
        """Delete the spilled features (also when tracking stops on an error or Ctrl-C)."""
        if self.spill is not None:
            self.spill.close()
            self.spill = None

    def confidence(self, start=0, end=None):
        """(visible, confidence), T',N of frames start..end-1 (None, None without
        confidence): the rule applied to the signals, a query's own frame at 1."""
        if self.rule is None:
            return None, None
        end = self.rows.T if end is None else end
        confidence = self.rule.confidence(self.rows.signals[start:end, :self.rows.N])
        frames = self.queries[:, 0].astype(int)
        own = (frames >= start) & (frames < end)
        confidence[frames[own] - start, np.flatnonzero(own)] = 1.0
        return confidence >= self.rule.threshold, confidence

    def result(self):
        """The ``Tracks`` of every frame pushed."""
        return Tracks(self.rows.tracks(), *self.confidence())

    def _check_size(self, t, size):
        if self.size is None:
            self.model_size = self.options.model_size(size)
            self.size = size
            self.scale = model_scale(size, self.model_size)
        elif size != self.size:
            raise VideoError(f'frame {t} is {size[1]}x{size[0]} but the video started at '
                             f'{self.size[1]}x{self.size[0]}: every frame must have one size')

    def _start_groups(self, t):
        for ids in self.pending.pop(t, []):
            xy0 = torch.from_numpy(self.queries[ids, 1:] * self.scale).float()
            self.rows.array[t, ids] = self.queries[ids, 1:]
            group = self.forward.add_group(len(self.group_ids), t, xy0)
            self.group_ids[group.key] = ids
            self.starts.append((t, ids, xy0))

    def _write(self, frames, ids, window, signals, query_frame):
        """Write a window's S',N,2 estimates (model pixels) and signals to ``frames``."""
        self.rows.array[frames[:, None], ids[None, :]] = window.double().numpy() / self.scale
        if signals is not None:
            self.rows.signals[frames[:, None], ids[None, :], :signals.shape[-1]] = signals.numpy()
        if query_frame in frames:  # a query's own frame is exactly the query
            self.rows.array[query_frame, ids] = self.queries[ids, 1:]

    def _write_forward(self, group, start, end, window, signals):
        self._write(np.arange(start, end), self.group_ids[group.key], window, signals, group.start)

    def _check_offsets(self, frames, ids, window):
        """Track minus check on ``frames`` (whose tracks are final), of a check's S',N,2
        estimates (model pixels)."""
        return self.rows.array[frames[:, None], ids[None, :]] - window.double().numpy() / self.scale

    def _write_consistency(self):
        """The consistency signal: the distance between each track and its check, the check
        shifted to meet the query at the query frame (by the offset at that frame of the
        forward segment's check, or of the backward segment's for the frames before it)."""
        T, N = self.rows.T, self.rows.N
        frames, points = self.queries[:, 0].astype(int), np.arange(N)
        forward = np.arange(T)[:, None, None] >= frames[None, :, None]  # T,N,1: in the forward segment
        returns = np.where(forward, self.offsets[frames, points][None], self.returns[None])  # T,N,2
        consistency = distance_256(self.offsets, returns, self.size)
        consistency[frames, points] = 0.0  # the query itself
        self.rows.signals[:T, :N, CONSISTENCY] = consistency
        self.offsets = self.returns = None  # T,N,2: not needed once the signal is written

    def _end_xy(self, frame, ids):
        """N,2 model pixels: the tracks of queries ``ids`` at ``frame``, where a check starts."""
        return torch.from_numpy(self.rows.array[frame, ids] * self.scale).float()

    def _sweep_back(self, backward, checks):
        """One sweep over the spilled features from the last frame (or, without checks, the
        latest query frame after 0) down to frame 0: with ``backward``, every group with a
        query frame t > 0 is tracked from t to 0; with ``checks``, every forward segment is
        tracked again from the last frame back to its query's frame."""
        last = self.num_frames - 1
        segments = [(t, ids, xy0) for t, ids, xy0 in self.starts if t > 0] if backward else []
        forward_checks = [(t, ids) for t, ids, _ in self.starts if t < last] if checks else []
        if not segments and not forward_checks:
            return
        top = last if forward_checks else max(t for t, _, _ in segments)
        ids_of = {}

        def write_segment(group, start, end, window, signals):  # sweep positions p are frames top - p
            self._write(top - np.arange(start, end), ids_of[group.key], window, signals, top - group.start)

        def write_check(group, start, end, window, _):
            frames, ids = top - np.arange(start, end), ids_of[group.key]
            self.offsets[frames[:, None], ids[None, :]] = self._check_offsets(frames, ids, window)

        back = Sweep(write=write_segment, states=ChunkStates(folder=self.options.spill_dir),
                     iters=self.options.iters, signals=self.options.confidence, **self.sweep_args)
        check = Sweep(write=write_check, states=ChunkStates(folder=self.options.spill_dir),
                      iters=check_iters(self.options.iters), **self.sweep_args)
        for key, (t_query, ids) in enumerate(forward_checks):
            ids_of[check.add_group(('check', key), 0, self._end_xy(last, ids), stop=last - t_query + 1).key] = ids
        sweeps = [sweep for sweep, needed in ((back, segments), (check, forward_checks)) if needed]
        try:
            for position, t in enumerate(range(top, -1, -1)):
                for key, (t_query, ids, xy0) in enumerate(segments):
                    if t_query == t:
                        ids_of[back.add_group(('segment', key), position, xy0).key] = ids
                fmap = self.spill.get(t, self.device)
                for sweep in sweeps:
                    sweep.push(fmap)
            for sweep in sweeps:
                sweep.finish()
        finally:
            back.states.close()
            check.states.close()

    def _check_backward_segments(self):
        """Every backward segment (a query frame t > 0 down to 0) tracked again from frame 0
        up to t, in one forward sweep over the spilled features: the offsets of the frames
        before t, and at t the return offset (frame t keeps its forward segment's)."""
        segments = [(t, ids) for t, ids, _ in self.starts if t > 0]
        if not segments:
            return
        ids_of, query_frame = {}, {}

        def write_check(group, start, end, window, _):
            frames, ids = np.arange(start, end), ids_of[group.key]
            offsets = self._check_offsets(frames, ids, window)
            before = frames < query_frame[group.key]
            self.offsets[frames[before, None], ids[None, :]] = offsets[before]
            if not before.all():
                self.returns[ids] = offsets[np.flatnonzero(~before)[0]]

        states = ChunkStates(folder=self.options.spill_dir)
        check = Sweep(write=write_check, states=states, iters=check_iters(self.options.iters), **self.sweep_args)
        for key, (t_query, ids) in enumerate(segments):
            group = check.add_group(key, 0, self._end_xy(0, ids), stop=t_query + 1)
            ids_of[group.key], query_frame[group.key] = ids, t_query
        try:
            for t in range(max(t for t, _ in segments) + 1):
                check.push(self.spill.get(t, self.device))
        finally:
            states.close()


def run_tracking(model, frames, queries, options, *, num_frames, progress, on_window, out):
    """The finished ``TrackingRun`` of ``track_points`` (see there)."""
    queries = check_queries(queries)
    check_video_array(frames)
    if num_frames is None and hasattr(frames, '__len__'):
        num_frames = len(frames)
    if num_frames == 0:
        raise VideoError('the video has no frames')
    if num_frames is not None:
        check_query_frames(queries, num_frames)
    if out is not None:
        check_out_path(out, num_frames)
    checks = options.confidence and options.consistency
    total = len(queries) * (num_frames - 1) * (2 if checks else 1) if num_frames else None
    bar = tqdm(total=total, desc='tracking', unit='point-frame', unit_scale=True, disable=not progress)
    rows = TrackRows(num_frames, len(queries), out, signals=options.confidence)
    last_query_frame = int(queries[:, 0].max())
    spill_until = None if checks else last_query_frame if last_query_frame > 0 else -1  # frames read back
    run = TrackingRun(model, options, rows, spill_until=spill_until, on_window=on_window, on_progress=bar.update)
    try:
        with inference_precision(options.precision, run.device):
            run.add_queries(queries)
            for frame in frames:
                run.push(frame)
            run.finish()
        rows.save()
    finally:
        run.close()
        bar.close()
        rows.discard()
    return run


@torch.no_grad()
def track_points(model, frames, queries, options=INTERACTIVE, *, num_frames=None, progress=False, on_window=None,
                 out=None):
    """Track ``queries`` through a video of any length.

    model: a Pips model (its device is used). frames: a T,H,W,3 uint8 numpy array, a
    T,3,H,W tensor (uint8, or floats in 0..255), or any iterable of H,W,3 numpy / 3,H,W
    tensor frames (a list, a generator: read once, in order); every frame follows the rule
    of ``frame_to_tensor``. queries: N,3 rows (t, x, y) in the video's pixels, t the query's
    frame. options: a ``TrackOptions`` (``INTERACTIVE`` or ``BENCHMARK``, or one made from
    them). num_frames: the length, if known (taken from arrays and lists; for the progress
    bar, to report a query past the end before tracking, and needed with ``out``).
    progress: show a bar in point-frames with an ETA.
    on_window(start, end, rgbs, preds_anim): sees every forward window.
    out: a ``.npy`` path to write the tracks to as a memmap (for very large T x N); it is
    written under a temporary name and appears only when tracking succeeds.
    Returns ``Tracks``: T,N,2 float32 tracks in the video's pixels (row t of a query is
    exactly its (x, y)) and, with ``options.confidence``, T,N visibility and confidence
    (``tracking.confidence``).
    """
    return run_tracking(model, frames, queries, options, num_frames=num_frames, progress=progress,
                        on_window=on_window, out=out).result()


@torch.no_grad()
def track_signals(model, frames, queries, options=INTERACTIVE, *, num_frames=None):
    """(``Tracks``, T,N,3 float32 signals) of ``track_points``: the appearance, peak and
    forward-backward distance behind the confidence (``tracking.confidence``), NaN where
    not measured. For fitting rules and for diagnostics; needs ``options.confidence``."""
    if not options.confidence:
        raise SettingsError('track_signals needs options.confidence')
    run = run_tracking(model, frames, queries, options, num_frames=num_frames, progress=False, on_window=None,
                       out=None)
    return run.result(), run.rows.signals[:run.rows.T, :run.rows.N].copy()


def check_out_path(out, num_frames):
    """Before tracking: ``out`` needs the length up front and a writable folder (whose
    temporaries left by killed runs are swept)."""
    if num_frames is None:
        raise SettingsError('out= needs the number of frames up front: pass num_frames=, or give the video as a '
                            'path, an array or a list (a generator has no length)')
    folder = os.path.dirname(os.path.abspath(str(out)))
    check_writable(folder, 'out=')
    sweep_temporaries(folder)
