"""Online tracking: frames come one at a time, and each frame's positions come back once final."""

import numpy as np
import torch

from nets.precision import inference_precision
from tracking.options import INTERACTIVE
from tracking.queries import check_queries
from tracking.run import TrackingRun, TrackRows
from utils.errors import SettingsError


class TrackStream:
    """Push frames as they come, get each frame's positions once final.

    ::

        stream = tracker.stream(queries)
        for frame in frames:                   # H,W,3 uint8 RGB
            for t, xy in stream.push(frame):   # xy N,2 video pixels, NaN before a query's frame
                ...
        tracks = stream.finish()               # T,N,2

    A frame is emitted at most S-1 frames after it was pushed, and emitted values never
    change, so the last window is always a short one (``options.last_window='short'``).
    ``add`` takes more queries, at the last pushed frame or later. ``finish`` runs the
    last windows and, with ``backward``, tracks each query from its frame back to frame 0,
    filling rows that were NaN; for that, every frame's features go to a temporary file
    as they are computed (``options.spill_dir``; ``backward=False`` writes nothing). On a
    video that windows cover exactly (T = 1 + k(S-1)), frame-0 queries get the same
    tracks as offline ``track_points``.
    """

    def __init__(self, model, queries=None, options=INTERACTIVE, *, backward=True):
        if options.last_window != 'short':
            raise SettingsError("online tracking runs a short last window (last_window='short'): emitted "
                                'frames never change')
        self.backward = backward
        self.options = options
        self.rows = TrackRows()
        self.run = TrackingRun(model, options, self.rows, spill_until=None if backward else -1)
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
            with inference_precision(self.options.precision, self.run.device):
                self.run.push(frame)
        except BaseException:
            self.run.close()
            raise
        return self._emit()

    @torch.no_grad()
    def finish(self):
        """Track the rest and return all T,N,2 tracks (video pixels)."""
        self.finished = True
        with inference_precision(self.options.precision, self.run.device):
            self.run.finish(backward=self.backward)
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
