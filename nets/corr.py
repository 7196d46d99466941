"""Correlation lookups of PIPs++.

The model compares target feature vectors with a 4-level feature pyramid in a 7x7 window
around each point. Two implementations give the same numbers:

- ``WindowedCorr`` (used by default) reads only the (2r+2) x (2r+2) integer feature cells
  that a window touches, takes their dot products with the targets and interpolates
  bilinearly. Its memory grows with the number of points, not with image size x points.
- ``FullVolumeCorr`` builds the full N x H x W correlation volume of every level and
  reads windows from it with ``grid_sample``, as the original release did. It is kept as
  a test oracle and as the baseline in ``benchmarks/bench_model.py``.

Both read the correlation map of level l at ``c / 2**l + (v_i, v_j)``, v in -r..r, with
zeros outside the map and pixel centres at integer coordinates (align_corners=True), and
flatten each window with the x offset as the slow index (the original's ordering).
"""

import math

import torch
import torch.nn.functional as F

# Point-frames per chunk in the windowed lookup: bounds the gathered (P, 64, C) patches.
# On CPU small chunks keep each patch in cache between the gather and the dot products;
# on GPU large chunks keep the number of kernel launches down.
WINDOW_CHUNK = {'cpu': 256, 'other': 4096}


def build_pyramid(fmaps, num_levels):
    """Average-pool a feature map into ``num_levels`` levels.

    fmaps: B,S,C,H,W. Returns a list of B,S,C,H_l,W_l with H_l = H // 2**l (floor).
    """
    B, S, C, H, W = fmaps.shape
    levels = [fmaps]
    for _ in range(num_levels - 1):
        pooled = F.avg_pool2d(levels[-1].reshape(B * S, C, *levels[-1].shape[-2:]), 2, stride=2)
        levels.append(pooled.reshape(B, S, C, *pooled.shape[-2:]))
    return levels


def channel_last_rows(fmaps):
    """B,S,C,H,W -> (B*S*H*W + 1, C): one feature row per cell, then a row of zeros
    (what a read outside the map gets). Written into one allocation, without a copy more."""
    B, S, C, H, W = fmaps.shape
    rows = fmaps.new_empty(B * S * H * W + 1, C)
    rows[:-1].view(B, S, H, W, C).copy_(fmaps.permute(0, 1, 3, 4, 2))
    rows[-1] = 0
    return rows


class FeatureRows:
    """The level-0 feature map as channel-last rows, read bilinearly at points."""

    def __init__(self, fmaps):
        self.B, self.S, self.C, self.H, self.W = fmaps.shape
        self.rows = channel_last_rows(fmaps)

    def sample(self, frame_ids, coords):
        """Bilinear read with edge replication (coordinates clamped to the map).

        frame_ids: S' (the frame each output frame reads). coords: B,S',N,2 in feature-map
        pixels (x, y). Returns B,S',N,C.
        """
        B, S, C, H, W = self.B, self.S, self.C, self.H, self.W
        S_out = coords.shape[1]
        x = coords[..., 0].nan_to_num(0.0).clamp(0, W - 1)  # NaN (a diverged run) reads a valid pixel
        y = coords[..., 1].nan_to_num(0.0).clamp(0, H - 1)
        x0 = x.floor()
        y0 = y.floor()
        wx = (x - x0).unsqueeze(-1)  # B,S',N,1
        wy = (y - y0).unsqueeze(-1)
        x0 = x0.long()
        y0 = y0.long()
        x1 = (x0 + 1).clamp(max=W - 1)
        y1 = (y0 + 1).clamp(max=H - 1)
        frame_base = torch.arange(B, device=coords.device).view(B, 1) * S + frame_ids.view(1, S_out)
        base = (frame_base * (H * W)).view(B, S_out, 1)  # B,S',1

        def read(yy, xx):  # index_select: its backward is a fast index_add (not a sort)
            index = base + yy * W + xx  # B,S',N
            return self.rows.index_select(0, index.reshape(-1)).reshape(*index.shape, C)  # B,S',N,C

        top = read(y0, x0) * (1 - wx) + read(y0, x1) * wx
        bottom = read(y1, x0) * (1 - wx) + read(y1, x1) * wx
        return top * (1 - wy) + bottom * wy


class WindowedCorr(FeatureRows):
    """Correlation windows computed from the feature cells each window touches."""

    def __init__(self, fmaps, num_levels=4, radius=3):
        super().__init__(fmaps)
        self.radius = radius
        self.levels = [(self.rows, self.H, self.W)]
        for level in build_pyramid(fmaps, num_levels)[1:]:
            self.levels.append((channel_last_rows(level), *level.shape[-2:]))

    def lookup(self, targets, coords, levels=None):
        """targets: B,S,N,K,C. coords: B,S,N,2 (feature-map pixels). levels: how many
        pyramid levels, from the finest (None: all).

        Returns B,S,N,K,L*(2r+1)**2: for each target, the windows of the L levels.
        """
        B, S, N, K, C = targets.shape
        pyramid = self.levels[:levels]
        frame_ids = torch.arange(B * S, device=coords.device).view(B, S, 1).expand(B, S, N)
        frame_ids = frame_ids.reshape(-1)
        coords = coords.reshape(-1, 2)
        targets = targets.reshape(-1, K, C)
        step = WINDOW_CHUNK['cpu' if coords.device.type == 'cpu' else 'other']  # see WINDOW_CHUNK
        width = len(pyramid) * (2 * self.radius + 1) ** 2
        out = coords.new_empty(coords.shape[0], K, width)  # filled chunk by chunk: no second copy
        for i in range(0, coords.shape[0], step):
            out[i:i + step] = self._lookup_chunk(targets[i:i + step], coords[i:i + step], frame_ids[i:i + step],
                                                 pyramid)
        return out.view(B, S, N, K, width)

    def _lookup_chunk(self, targets, coords, frame_ids, pyramid):
        # targets P,K,C; coords P,2; frame_ids P; pyramid: the (rows, H, W) levels to read
        r = self.radius
        side = 2 * r + 2  # integer cells a (2r+1)-wide bilinear window touches
        offsets = torch.arange(-r, r + 2, device=coords.device)
        windows = []
        for level, (rows, H, W) in enumerate(pyramid):
            centre = coords / 2 ** level
            corner = centre.floor()
            frac = centre - corner  # P,2
            corner = corner.long()
            xs = corner[:, 0:1] + offsets  # P,side
            ys = corner[:, 1:2] + offsets
            inside = ((ys >= 0) & (ys < H)).unsqueeze(2) & ((xs >= 0) & (xs < W)).unsqueeze(1)
            index = frame_ids.view(-1, 1, 1) * (H * W) + ys.unsqueeze(2) * W + xs.unsqueeze(1)
            index = torch.where(inside, index, rows.shape[0] - 1)  # P,side(y),side(x)
            patch = rows.index_select(0, index.reshape(-1)).view(-1, side * side, rows.shape[1])  # P,side^2,C
            dots = torch.bmm(patch, targets.transpose(1, 2)) / math.sqrt(self.C)
            dots = dots.view(-1, side, side, targets.shape[1])  # P,y,x,K
            fx = frac[:, 0].view(-1, 1, 1, 1)
            fy = frac[:, 1].view(-1, 1, 1, 1)
            dots = dots[:, :-1] * (1 - fy) + dots[:, 1:] * fy  # P,2r+1,side,K
            win = dots[:, :, :-1] * (1 - fx) + dots[:, :, 1:] * fx  # P,y,x,K
            windows.append(win.permute(0, 3, 2, 1).reshape(win.shape[0], win.shape[3], -1))
        return torch.cat(windows, dim=-1).to(coords.dtype)  # P,K,L*(2r+1)^2


class FullVolumeCorr(FeatureRows):
    """The original's lookup: full correlation volumes, then grid_sample (test oracle)."""

    def __init__(self, fmaps, num_levels=4, radius=3):
        super().__init__(fmaps)
        self.pyramid = build_pyramid(fmaps, num_levels)
        self.radius = radius

    def lookup(self, targets, coords, levels=None):
        """Same contract as ``WindowedCorr.lookup``."""
        B, S, N, K, C = targets.shape
        r = self.radius
        steps = torch.arange(-r, r + 1, device=coords.device, dtype=coords.dtype)
        # cell (i, j) reads (x + v_i, y + v_j): the x offset is the slow index
        offsets = torch.stack(torch.meshgrid(steps, steps, indexing='ij'), dim=-1)  # 7,7,2
        out = []
        for k in range(K):
            windows = []
            for level, fmaps in enumerate(self.pyramid[:levels]):
                H, W = fmaps.shape[-2:]
                volume = torch.matmul(targets[:, :, :, k], fmaps.reshape(B, S, C, H * W))
                volume = (volume / math.sqrt(C)).reshape(B * S * N, 1, H, W)
                points = coords.reshape(B * S * N, 1, 1, 2) / 2 ** level + offsets
                grid = torch.stack([2 * points[..., 0] / (W - 1) - 1,
                                    2 * points[..., 1] / (H - 1) - 1], dim=-1)
                sampled = F.grid_sample(volume, grid, align_corners=True)  # P,1,7,7
                windows.append(sampled.reshape(B, S, N, -1))
            out.append(torch.cat(windows, dim=-1))
        return torch.stack(out, dim=3).to(coords.dtype)


CORR_IMPLS = {'windowed': WindowedCorr, 'full': FullVolumeCorr}
