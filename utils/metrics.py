"""Point-tracking metrics: the PIPs++ paper's, and the standard TAP-Vid ones.

The paper's metrics (``paper_metrics``) are defined exactly as in the original release
so that numbers sit next to the published ones. The TAP-Vid metrics
(``compute_tapvid_metrics``) follow the TAP-Vid benchmark's own conventions, so numbers
sit in the same tables as TAPIR's and CoTracker's.
"""

import random

import numpy as np
import torch

THRESHOLDS = (1, 2, 4, 8, 16)
SURVIVAL_THRESHOLD = 16


def masked_mean(x, mask):
    """sum(x * mask) / (1e-6 + sum(mask)), the original's masked mean."""
    return (x * mask).sum() / (1e-6 + mask.sum())


def masked_median(x, mask):
    """Per row of P,S ``x``: the median of the entries where ``mask`` > 0 (the mean of the
    two middle values for an even count); NaN for a row with no such entry. Returns P."""
    x = x.detach().cpu().numpy()
    mask = mask.detach().cpu().numpy() > 0
    return np.array([np.median(row[m]) if m.any() else np.nan for row, m in zip(x, mask)], dtype=np.float64)


def paper_metrics(trajs_e, trajs_g, valids, H, W, drop_invalid_first=False):
    """The PIPs++ paper's metrics of estimates ``trajs_e`` against truth ``trajs_g``.

    trajs_e, trajs_g: B,S,N,2 pixels at the resolution H x W the model ran at.
    valids: B,S,N (1 where the truth exists). Distances are measured after dividing x by
    W/256 and y by H/256, as if the frames were 256 x 256.

    - ``d_<thr>`` for thr in 1, 2, 4, 8, 16: the percentage of valid (frame, point) pairs
      in frames 1..S-1 (frame 0, the query, is excluded) closer than thr; a masked mean
      over the whole batch. ``d_avg`` is the mean of the five.
    - ``survival`` (survival_16): per point, the fraction of frames before its first
      failure (a distance over 16 on a valid frame; invalid frames count as fine), i.e.
      the mean over frames and points of the running product of "fine", x100. Frame 0
      is included.
    - ``median_l2``: per point, the median distance over its valid frames; the mean over
      points. Points with no valid frame are left out (the original would return NaN),
      and with ``drop_invalid_first`` (as in training) so are points invalid at frame 0.
    Returns a dict of floats.
    """
    trajs_e, trajs_g, valids = trajs_e.float(), trajs_g.float(), valids.float()
    scale = trajs_g.new_tensor([W / 256.0, H / 256.0])
    dists = torch.norm(trajs_e / scale - trajs_g / scale, dim=-1)  # B,S,N
    metrics = {}
    for thr in THRESHOLDS:
        within = (dists[:, 1:] < thr).float()
        metrics[f'd_{thr}'] = masked_mean(within, valids[:, 1:]).item() * 100.0
    metrics['d_avg'] = float(np.mean([metrics[f'd_{thr}'] for thr in THRESHOLDS]))

    fine = 1 - (dists > SURVIVAL_THRESHOLD).float() * valids
    metrics['survival'] = torch.cumprod(fine, dim=1).mean().item() * 100.0

    B, S, N = dists.shape
    point_dists = dists.permute(0, 2, 1).reshape(B * N, S)
    point_valids = valids.permute(0, 2, 1).reshape(B * N, S)
    if drop_invalid_first:
        keep = point_valids[:, 0] > 0
        point_dists, point_valids = point_dists[keep], point_valids[keep]
    medians = masked_median(point_dists, point_valids)
    medians = medians[np.isfinite(medians)]
    metrics['median_l2'] = float(medians.mean()) if len(medians) else float('nan')
    return metrics


def compute_tapvid_metrics(query_points, gt_occluded, gt_tracks, pred_occluded, pred_tracks, query_mode):
    """The TAP-Vid benchmark's metrics, per video (numpy, batched over B videos).

    query_points: B,N,3 as [t, y, x] (only t is used). gt_occluded, pred_occluded: B,N,T
    bool. gt_tracks, pred_tracks: B,N,T,2 as [x, y] in 256 x 256 pixels.
    query_mode: 'first' (only frames after each query count) or 'strided' (every frame
    but the query's counts).

    Returns, each of shape B and as fractions: ``occlusion_accuracy`` (agreement of the
    occlusion flags; divided by the evaluated entries of the whole batch, as TAP-Vid
    does), ``pts_within_<thr>`` (visible truth points predicted within thr pixels, over
    visible truth points), ``jaccard_<thr>`` (true positives / (visible truth + false
    positives), where a false positive is a point predicted visible that is occluded or
    farther than thr), ``average_pts_within_thresh`` (delta_avg) and ``average_jaccard``
    (AJ), the means over thr in 1, 2, 4, 8, 16.
    """
    T = gt_tracks.shape[2]
    eye = np.eye(T, dtype=np.int32)
    if query_mode == 'first':
        eval_frames_of_query = np.cumsum(eye, axis=1) - eye  # frames after the query
    elif query_mode == 'strided':
        eval_frames_of_query = 1 - eye  # every frame but the query
    else:
        raise ValueError(f"query_mode must be 'first' or 'strided'; got {query_mode!r}")
    query_frame = np.round(query_points[..., 0]).astype(np.int32)
    evaluated = eval_frames_of_query[query_frame] > 0  # B,N,T

    metrics = {'occlusion_accuracy': np.sum((pred_occluded == gt_occluded) & evaluated, axis=(1, 2))
               / np.sum(evaluated)}
    visible = ~gt_occluded
    pred_visible = ~pred_occluded
    fractions, jaccards = [], []
    for thr in THRESHOLDS:
        within = np.sum(np.square(pred_tracks - gt_tracks), axis=-1) < thr ** 2
        correct = within & visible
        visible_count = np.sum(visible & evaluated, axis=(1, 2))
        fraction = np.sum(correct & evaluated, axis=(1, 2)) / visible_count
        true_pos = np.sum(correct & pred_visible & evaluated, axis=(1, 2))
        false_pos = np.sum(((~visible) | (~within)) & pred_visible & evaluated, axis=(1, 2))
        jaccard = true_pos / (visible_count + false_pos)
        metrics[f'pts_within_{thr}'] = fraction
        metrics[f'jaccard_{thr}'] = jaccard
        fractions.append(fraction)
        jaccards.append(jaccard)
    metrics['average_jaccard'] = np.mean(np.stack(jaccards, axis=1), axis=1)
    metrics['average_pts_within_thresh'] = np.mean(np.stack(fractions, axis=1), axis=1)
    return metrics


def tapvid_queries(points, occluded, query_mode, stride=5):
    """TAP-Vid queries for one video's tracks.

    points: N,T,2 as [x, y]; occluded: N,T bool. 'first': one query per track with a
    visible frame, at its first visible frame. 'strided': a query at every ``stride``-th
    frame (0, 5, 10, ...) where the track is visible. Returns (query_points Q,3 as
    [t, y, x], track_index Q): query q asks for track ``track_index[q]``.
    """
    rows, index = [], []
    for n in range(points.shape[0]):
        visible_frames = np.flatnonzero(~occluded[n])
        if query_mode == 'first':
            frames = visible_frames[:1]
        elif query_mode == 'strided':
            frames = visible_frames[visible_frames % stride == 0]
        else:
            raise ValueError(f"query_mode must be 'first' or 'strided'; got {query_mode!r}")
        for t in frames:
            rows.append([t, points[n, t, 1], points[n, t, 0]])
            index.append(n)
    return np.array(rows, dtype=np.float64).reshape(-1, 3), np.array(index, dtype=np.int64)


class SimplePool:
    """The last ``pool_size`` items; ``mean`` of the finite ones (NaN if there are none).

    Used for the scripts' running averages and for training's cache of samples.
    """

    def __init__(self, pool_size):
        self.pool_size = pool_size
        self.items = []

    def __len__(self):
        return len(self.items)

    def update(self, items):
        for item in items:
            self.items.append(item)
            if len(self.items) > self.pool_size:
                self.items.pop(0)

    def mean(self):
        values = [float(v) for v in self.items if np.isfinite(float(v))]
        return float(np.mean(values)) if values else float('nan')

    def sample(self):
        """One stored item, picked at random (with replacement)."""
        return random.choice(self.items)
