"""Online tracking: frames come one at a time, and each frame's positions come back once final."""

import contextlib
from typing import NamedTuple

import numpy as np
import torch

from nets.precision import inference_precision
from tracking.options import INTERACTIVE
from tracking.queries import check_queries, check_queries_fit
from tracking.run import TrackingRun, TrackRows
from utils.errors import PipsError, SettingsError


class StreamError(PipsError, RuntimeError):
    """A ``TrackStream`` used after ``finish`` or after an error stopped it."""


class FinalFrame(NamedTuple):
    """A frame whose positions are final: ``for t, xy, visible, confidence in stream.push(frame)``."""

    t: int  # the frame
    xy: np.ndarray  # N,2 float32 video pixels; NaN for queries whose frame has not come
    visible: np.ndarray | None  # N bool (None when confidence is off)
    confidence: np.ndarray | None  # N float32 in [0, 1], NaN where xy is (None when confidence is off)


class TrackStream:
    """Push frames as they come, get each frame's positions once final.

    ::

        stream = tracker.stream(queries)
        for frame in frames:                        # H,W,3 uint8 RGB
            for t, xy, visible, confidence in stream.push(frame):   # N,2 video pixels, N, N
                ...
        tracks, visible, confidence = stream.finish()   # T,N,2, T,N, T,N

    A frame is emitted at most S-1 frames after it was pushed, and emitted values never
    change, so the last window is always a short one (``options.last_window='short'``),
    and confidence comes from appearance and correlation peak alone (the forward-backward
    check needs the video's end; ``options.consistency`` is not used).
    ``add`` takes more queries, at the last pushed frame or later. ``finish`` runs the
    last windows and, with ``backward``, tracks each query from its frame back to frame 0,
    filling rows that were NaN; for that, every frame's features go to a temporary file
    as they are computed (``options.spill_dir``; ``backward=False`` writes nothing). On a
    video that windows cover exactly (T = 1 + k(S-1)), frame-0 queries get the same
    tracks as offline ``track_points``. Frames follow the offline rule
    (``tracking.run.frame_to_tensor``); a refused frame changes nothing. Any other error
    stops the stream, and using it after that, or after ``finish``, raises ``StreamError``.
    """

    def __init__(self, model, queries=None, options=INTERACTIVE, *, backward=True):
        if options.last_window != 'short':
            raise SettingsError("online tracking runs a short last window (last_window='short'): emitted "
                                'frames never change')
        self.backward = backward
        self.options = options.replace(consistency=False)
        self.rows = TrackRows(signals=options.confidence)
        self.run = TrackingRun(model, self.options, self.rows, spill_until=None if backward else -1)
        self.emitted = 0
        self.finished = False
        self.failure = None  # what stopped the stream, once something has
        if queries is not None:
            self.add(queries)

    def add(self, queries):
        """More N,3 (t, x, y) queries in video pixels, at the last pushed frame or later
        (and inside the frame, once its size is known)."""
        self._check_open()
        queries = check_queries(queries)
        if self.run.size is not None:
            check_queries_fit(queries, None, *self.run.size)
        self.run.add_queries(queries)

    @torch.no_grad()
    def push(self, frame):
        """Track on the next frame (H,W,3 uint8 RGB, or any frame ``track_points`` takes);
        returns the ``FinalFrame`` of each frame that has just become final.

        A frame that is refused (its type, values or size) raises ``VideoError`` or
        ``SettingsError`` and changes nothing: push another. Any other error stops the
        stream; pushing again then raises ``StreamError``."""
        self._check_open()
        first = self.run.size is None
        with inference_precision(self.options.precision, self.run.device):
            frame = self.run.accept_frame(frame)
            with self._stopping_on_error(f'frame {self.run.num_frames}'):
                if first and len(self.run.queries):
                    check_queries_fit(self.run.queries, None, *self.run.size)
                self.run.track_frame(frame)
        return self._emit()

    @torch.no_grad()
    def finish(self):
        """Track the rest and return the ``Tracks`` of all frames (video pixels); the stream
        then takes nothing more."""
        self._check_open()
        self.finished = True
        with inference_precision(self.options.precision, self.run.device), self._stopping_on_error('finish()'):
            self.run.finish(backward=self.backward)
        return self.run.result()

    def _check_open(self):
        if self.failure is not None:
            raise StreamError(f'the stream stopped on an error at {self.failure}; start a new one')
        if self.finished:
            raise StreamError('the stream is finished (finish() was called): start a new one for more frames')

    @contextlib.contextmanager
    def _stopping_on_error(self, where):
        try:
            yield
        except BaseException as exc:
            self.failure = f'{where} ({type(exc).__name__}{": " if str(exc) else ""}{exc})'
            self.run.close()
            raise

    def _emit(self):
        out = []
        groups = self.run.forward.groups
        while self.emitted < self.run.num_frames:
            t = self.emitted
            if any(group.start <= t and group.final_until <= t for group in groups):
                break
            visible, confidence = self.run.confidence(t, t + 1)
            out.append(FinalFrame(t, self.rows.array[t, :self.rows.N].copy(), *(
                None if values is None else values[0] for values in (visible, confidence))))
            self.emitted += 1
        return out
