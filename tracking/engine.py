"""The tracking engine: the window schedule of PIPs++ over a stream of encoded frames.

A ``Sweep`` takes the feature map of each frame once, in order, and runs the windows of
every *group* of queries, a group being the queries that start at the same position.
Windows hold ``S`` frames and overlap by one frame, each started from the current
estimates (zero velocity beyond what is tracked) and from the target features its
group carried out of the previous window, as the original's test scripts do. Only the
features of the last ``S`` positions are kept, so memory does not grow with the video,
and every group and every chunk of points reads the same features.

The last window, when the video does not end on a window boundary, is either shifted
back to end on the last frame (``'shift'``, the original's rule, which defines the
published numbers) or run short from where the previous window ended (``'short'``:
nothing already tracked changes, as online tracking needs).

A group may stop before the sweep ends (``stop``; the forward-backward check tracks a
segment back to its query's frame and no further): its last window follows the same rule.
With ``signals``, every window also yields the appearance and correlation-peak signals of
its estimates (``tracking.confidence``), computed on the window's correlation.

``DiskStore`` keeps tensors in an anonymous temporary file: features that a backward
pass will need, and the carried target features of very many points.
"""

import os
import tempfile

import torch

from tracking.confidence import window_signals
from tracking.options import LAST_WINDOW_RULES

STATE_RAM_BUDGET = 256 << 20  # bytes of carried target features kept in RAM before they go to disk


class DiskStore:
    """Tensors by key in an anonymous temporary file (no name on disk, so it vanishes with
    the process or on ``close``, on success, error or Ctrl-C alike); none of it in RAM.

    A key keeps its slot when rewritten with a tensor of the same size.
    """

    def __init__(self, folder=None):
        self.file = tempfile.TemporaryFile(dir=folder)
        self.slots = {}  # key -> (offset, nbytes, shape, dtype)
        self.end = 0
        self.bytes_written = 0

    def put(self, key, tensor):
        tensor = tensor.detach().to('cpu').contiguous()
        data = tensor.view(-1).view(torch.uint8).numpy().tobytes()
        slot = self.slots.get(key)
        if slot is None or slot[1] != len(data):
            slot = (self.end, len(data))
            self.end += len(data)
        self.slots[key] = (slot[0], len(data), tuple(tensor.shape), tensor.dtype)
        os.pwrite(self.file.fileno(), data, slot[0])
        self.bytes_written += len(data)

    def get(self, key, device):
        offset, nbytes, shape, dtype = self.slots[key]
        data = bytearray(os.pread(self.file.fileno(), nbytes, offset))
        if len(data) != nbytes:
            raise OSError(f'the temporary spill file is truncated at slot {key!r}')
        return torch.frombuffer(data, dtype=torch.uint8).view(dtype).view(shape).to(device)

    def __contains__(self, key):
        return key in self.slots

    def close(self):
        self.file.close()


class ChunkStates:
    """The target features each chunk of a group carries from window to window.

    Kept in RAM up to ``budget`` bytes, then all of them in a ``DiskStore`` (dense grids
    carry 2S+1 vectors of 128 numbers per point). feats1 is the same vector on every
    frame, so one frame of it is kept.
    """

    def __init__(self, budget=None, folder=None):
        self.budget = STATE_RAM_BUDGET if budget is None else budget
        self.folder = folder
        self.disk = None
        self.ram = {}
        self.ram_bytes = 0

    def put(self, key, feats):
        feats1, feats2, feats4 = feats
        packed = (feats1[:, :1], feats2, feats4)
        if self.disk is None:
            old = self.ram.pop(key, ())
            self.ram_bytes += sum(t.numel() * t.element_size() for t in packed)
            self.ram_bytes -= sum(t.numel() * t.element_size() for t in old)
            self.ram[key] = packed
            if self.ram_bytes > self.budget:
                self.disk = DiskStore(self.folder)
                for ram_key, ram_packed in self.ram.items():
                    self._put_disk(ram_key, ram_packed)
                self.ram = {}
        else:
            self._put_disk(key, packed)

    def _put_disk(self, key, packed):
        for i, tensor in enumerate(packed):
            self.disk.put((key, i), tensor)

    def get(self, key, S, device):
        """(feats1, feats2, feats4) cut to S frames, or None before the first window."""
        if self.disk is None:
            packed = self.ram.get(key)
        elif (key, 0) in self.disk:
            packed = [self.disk.get((key, i), device) for i in range(3)]
        else:
            packed = None
        if packed is None:
            return None
        feats1, feats2, feats4 = packed
        B, _, N, C = feats1.shape
        return feats1.expand(B, S, N, C), feats2[:, :S], feats4[:, :S]

    def close(self):
        self.ram = {}
        if self.disk is not None:
            self.disk.close()


class Group:
    """Queries starting at the same sweep position: their estimates and window schedule."""

    def __init__(self, key, start, xy0, stop=None):
        self.key = key
        self.start = start
        self.stop = stop  # the position after its last one (None: the end of the sweep)
        self.num_points = len(xy0)
        self.estimates = {start: xy0}  # position -> N,2 model pixels, for windows still to come
        self.window_start = start
        self.covered = start + 1  # positions < covered have estimates
        self.final_until = start  # positions < final_until will not change (online use)

    def initial_trajs(self, start, end):
        """S,N,2: the estimates of positions start..end-1, the last one repeated beyond."""
        last = self.estimates[self.covered - 1]
        return torch.stack([self.estimates.get(p, last) if p < self.covered else last for p in range(start, end)])


class Sweep:
    """Windows of ``S`` frames for groups of queries over feature maps pushed one by one.

    write(group, start, end, xy, signals): receives the S',N,2 estimates (model pixels) of
    every window a group runs, and with ``signals`` their S',N,2 (appearance, peak share),
    else None. on_window(start, end, rgbs, preds_anim), if given, sees every window with
    its frames (pass them to ``push``). ``last_window``: the rule of a group's last window.
    """

    def __init__(self, model, S, iters, beautify, write, point_chunk=2048, states=None, on_window=None,
                 on_progress=None, last_window='shift', signals=False):
        if S < 2:
            raise ValueError(f'S (frames per window) must be at least 2; got {S}')
        if last_window not in LAST_WINDOW_RULES:
            raise ValueError(f'last_window must be one of {LAST_WINDOW_RULES}; got {last_window!r}')
        self.model = model
        self.S = S
        self.iters = iters
        self.beautify = beautify
        self.write = write
        self.point_chunk = max(1, int(point_chunk))
        self.states = states or ChunkStates()
        self.on_window = on_window
        self.on_progress = on_progress
        self.last_window = last_window
        self.signals = signals
        self.features = {}  # position -> C,H8,W8 for the last S positions
        self.frames = {}  # position -> 3,H,W, only for on_window
        self.groups = []
        self.length = 0

    def add_group(self, key, start, xy0, stop=None):
        """Queries (xy0 N,2 model pixels) that start at position ``start``: the next one to
        be pushed or later, or the last one pushed; tracked up to position ``stop`` - 1
        (None: to the end of the sweep)."""
        if start < self.length - 1:
            raise ValueError(f'queries can start at position {self.length - 1} or later; got {start}')
        if stop is not None and stop < start + 2:
            raise ValueError(f'a group must be tracked over two positions at least; got {start} to {stop - 1}')
        group = Group(key, start, xy0, stop)
        self.groups.append(group)
        return group

    def push(self, fmap, frame=None):
        """The feature map (C,H8,W8) of the next position; runs every window it completes."""
        position = self.length
        self.features[position] = fmap
        if self.on_window is not None:
            self.frames[position] = frame
        self.length += 1
        for group in self.groups:
            if group.stop is not None and position >= group.stop:
                continue
            if group.start <= position == group.window_start + self.S - 1:
                self._run(group, group.window_start, position + 1)
                group.window_start = position
            if position + 1 == group.stop:
                self._close(group, group.stop)
        for old in [p for p in self.features if p <= position - self.S]:
            del self.features[old]
            self.frames.pop(old, None)

    def finish(self):
        """Run the last window of every group whose positions are not all tracked."""
        for group in self.groups:
            if group.stop is None:
                self._close(group, self.length)

    def _close(self, group, end):
        """Track ``group`` up to position ``end`` - 1 with a last window by the rule."""
        if group.covered < end:
            start = max(end - self.S, group.start) if self.last_window == 'shift' else group.window_start
            self._run(group, start, end)
        group.final_until = end

    def _run(self, group, start, end):
        S = end - start
        device = next(iter(self.features.values())).device
        fmaps = torch.stack([self.features[p] for p in range(start, end)])[None]  # 1,S,C,H8,W8
        corr = self.model.correlation(fmaps)
        trajs = group.initial_trajs(start, end).to(device)[None]  # 1,S,N,2
        window = torch.empty_like(trajs[0])  # S,N,2
        signals = torch.empty_like(window) if self.signals else None  # S,N,2: appearance, peak share
        anim = []
        for lo in range(0, group.num_points, self.point_chunk):
            hi = min(lo + self.point_chunk, group.num_points)
            key = (group.key, lo)
            refined = self.model.refine(trajs[:, :, lo:hi], corr, iters=self.iters,
                                        feat_init=self.states.get(key, S, device), beautify=self.beautify)
            self.states.put(key, refined.feats)
            window[:, lo:hi] = refined.tracks[0]
            if signals is not None:
                signals[:, lo:hi] = window_signals(corr, refined.tracks, refined.feats[0], self.model.stride)[0]
            if self.on_window is not None:
                anim.append(refined.preds_anim)
        if self.on_window is not None:
            rgbs = torch.stack([self.frames[p] for p in range(start, end)])[None]
            self.on_window(start, end, rgbs, [torch.cat(parts, dim=2) for parts in zip(*anim)])
        window = window.to('cpu', torch.float32)
        if signals is not None:
            signals = signals.to('cpu', torch.float32)
        for p in range(start, end):
            group.estimates[p] = window[p - start]
        for old in [p for p in group.estimates if p < end - self.S]:
            del group.estimates[old]
        if self.on_progress is not None:
            self.on_progress(group.num_points * max(0, end - group.covered))
        group.covered = max(group.covered, end)
        group.final_until = end
        self.write(group, start, end, window, signals)
