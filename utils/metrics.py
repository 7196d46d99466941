"""Point-tracking metrics: the PIPs++ paper's and the TAP-Vid benchmark's.

``paper_metrics`` gives the numbers the PIPs++ paper reports (d_avg, survival_16,
median_l2), defined as the original evaluation and training scripts compute them, so
results sit next to the published ones. ``compute_tapvid_metrics`` gives the TAP-Vid
benchmark's numbers (occlusion accuracy, <delta^x_avg, average Jaccard), defined as
the benchmark's reference evaluation computes them, so results sit next to other
trackers'. ``tapvid_queries`` builds the benchmark's queries from a set of tracks, and
``SimplePool`` keeps the scripts' running averages.
"""

import random

import numpy as np
import torch

THRESHOLDS = (1, 2, 4, 8, 16)  # pixels, at 256 x 256
SURVIVAL_THRESHOLD = 16  # pixels, at 256 x 256
EPS = 1e-6  # the masked mean's guard against an empty mask


def masked_mean(x, mask):
    """sum(x * mask) / (1e-6 + sum(mask)) over all entries: the original's masked mean.

    An empty mask gives 0, not NaN.
    """
    return (x * mask).sum() / (EPS + mask.sum())


def masked_median_rows(x, mask):
    """Per row of ``x`` (P,S): the median of the entries whose ``mask`` is > 0.

    The original's masked median, row by row: a row whose mask sums to <= 0 gets NaN;
    otherwise the entries with mask > 0 are taken and their median is numpy's (the middle
    value for an odd count, the mean of the two middle values for an even one, NaN if
    any taken entry is NaN). Computed in x's dtype and on x's device. Returns P.
    """
    taken = mask > 0  # P,S
    count = taken.sum(dim=1)  # P
    ordered = torch.where(taken & ~torch.isnan(x), x, torch.full_like(x, float('inf'))).sort(dim=1).values
    last = x.shape[1] - 1
    low = ordered.gather(1, ((count - 1) // 2).clamp(0, last)[:, None])[:, 0]
    high = ordered.gather(1, (count // 2).clamp(0, last)[:, None])[:, 0]
    median = torch.where(count % 2 == 1, low, (low + high) / 2)
    undefined = (mask.sum(dim=1) <= 0) | (torch.isnan(x) & taken).any(dim=1)
    return torch.where(undefined, torch.full_like(median, float('nan')), median)


def distances_256(trajs_e, trajs_g, H, W):
    """B,S,N distances between B,S,N,2 pixel tracks after dividing x by W/256 and y by
    H/256 (as if the H x W frames were 256 x 256), in float32 like the original."""
    scale = torch.tensor([W / 256.0, H / 256.0], dtype=torch.float32, device=trajs_g.device)
    return torch.norm(trajs_e.float() / scale - trajs_g.float() / scale, dim=-1)


def paper_metrics(trajs_e, trajs_g, valids, H, W, drop_invalid_first=False):
    """The PIPs++ paper's metrics of estimated tracks against the truth.

    trajs_e, trajs_g: B,S,N,2 pixel (x, y) at the resolution H x W the model ran at.
    valids: B,S,N, > 0 where the truth exists. Distances come from ``distances_256``.

    - ``d_1`` .. ``d_16``: for thr in 1, 2, 4, 8, 16, the percentage of valid (frame,
      point) pairs closer than thr, over frames 1..S-1 only (frame 0 holds the query),
      as one masked mean over the whole batch (``masked_mean``, so 0 when nothing is
      valid). ``d_avg``: the mean of the five.
    - ``survival`` (printed as survival_16): a (frame, point) is "ok" unless its
      distance exceeds 16 on a valid frame (invalid frames are ok); the running product
      of "ok" over time (a track dies at its first failure and stays dead), averaged
      over all frames, frame 0 included, and all points, x100.
    - ``median_l2``: each point's median distance over its valid frames
      (``masked_median_rows``), averaged over points. With ``drop_invalid_first``
      (as in training) points invalid at frame 0 are left out first. Unlike the
      original, whose mean turns NaN, points with no valid frame at all are left out
      too; median_l2 is NaN only when no point has a valid frame.

    Tensors or arrays; returns a dict of Python floats.
    """
    trajs_e, trajs_g = torch.as_tensor(trajs_e), torch.as_tensor(trajs_g)
    valids = torch.as_tensor(valids, device=trajs_g.device).float()
    dists = distances_256(trajs_e, trajs_g, H, W)  # B,S,N
    metrics = {}
    for thr in THRESHOLDS:
        within = (dists[:, 1:] < thr).float()  # B,S-1,N
        metrics[f'd_{thr}'] = masked_mean(within, valids[:, 1:]).item() * 100.0
    metrics['d_avg'] = sum(metrics[f'd_{thr}'] for thr in THRESHOLDS) / len(THRESHOLDS)

    ok = 1 - (dists > SURVIVAL_THRESHOLD).float() * valids  # B,S,N
    metrics['survival'] = torch.cumprod(ok, dim=1).mean().item() * 100.0

    metrics['median_l2'] = median_l2(dists, valids, drop_invalid_first)
    return metrics


def median_l2(dists, valids, drop_invalid_first=False):
    """Mean over points of each point's median distance over its valid frames.

    dists, valids: B,S,N. Points (of every batch element) invalid at frame 0 are left out
    with ``drop_invalid_first``; points without a valid frame are always left out.
    NaN if no point is left.
    """
    B, S, N = dists.shape
    point_dists = dists.permute(0, 2, 1).reshape(B * N, S)
    point_valids = valids.permute(0, 2, 1).reshape(B * N, S)
    keep = point_valids.sum(dim=1) > 0
    if drop_invalid_first:
        keep &= point_valids[:, 0] > 0
    if not keep.any():
        return float('nan')
    return masked_median_rows(point_dists[keep], point_valids[keep]).mean().item()


def evaluated_frames(query_points, T, query_mode):
    """B,N,T bool: the frames each query is scored on. 'first': the frames after the
    query frame; 'strided': every frame but the query frame."""
    eye = np.eye(T, dtype=np.int32)
    if query_mode == 'first':
        frames_of_query = np.cumsum(eye, axis=1) - eye
    elif query_mode == 'strided':
        frames_of_query = 1 - eye
    else:
        raise ValueError(f"query_mode must be 'first' or 'strided'; got {query_mode!r}")
    query_frame = np.round(query_points[..., 0]).astype(np.int32)  # B,N
    return frames_of_query[query_frame] > 0


def compute_tapvid_metrics(query_points, gt_occluded, gt_tracks, pred_occluded, pred_tracks, query_mode):
    """The TAP-Vid benchmark's metrics, one value per video (numpy, B videos at once).

    query_points: B,N,3 as [t, y, x] (only t is used). gt_occluded, pred_occluded: B,N,T
    bool, True = occluded. gt_tracks, pred_tracks: B,N,T,2 as [x, y] in the pixels of
    256 x 256 frames. query_mode: 'first' (a query is scored on the frames after its
    frame; the points are known to be occluded before it) or 'strided' (on every frame
    but its own). Sums run over the N queries and T frames of each video.

    Returns a dict of B-arrays of fractions:
    - ``occlusion_accuracy``: scored entries whose predicted occlusion equals the truth,
      over the scored entries;
    - ``pts_within_<thr>`` (thr in 1, 2, 4, 8, 16): scored entries visible in the truth
      and predicted closer than thr (strictly, whatever the predicted occlusion), over
      scored entries visible in the truth;
    - ``jaccard_<thr>``: true positives (visible in the truth, predicted visible and
      closer than thr) over (entries visible in the truth + false positives), a false
      positive being predicted visible while occluded in the truth or not closer than thr;
    - ``average_pts_within_thresh`` (<delta^x_avg) and ``average_jaccard`` (AJ): the means
      over the five thresholds.
    A video with nothing to score gets NaN (0 / 0), as in the benchmark.
    """
    scored = evaluated_frames(query_points, gt_tracks.shape[2], query_mode)  # B,N,T
    visible = ~gt_occluded
    pred_visible = ~pred_occluded
    per_video = (1, 2)
    metrics = {}
    with np.errstate(invalid='ignore', divide='ignore'):
        metrics['occlusion_accuracy'] = (np.sum((pred_occluded == gt_occluded) & scored, axis=per_video)
                                         / np.sum(scored, axis=per_video))
        visible_count = np.sum(visible & scored, axis=per_video)
        squared_dists = np.sum(np.square(pred_tracks - gt_tracks), axis=-1)  # B,N,T
        for thr in THRESHOLDS:
            close = squared_dists < thr * thr
            correct = close & visible
            true_pos = np.sum(correct & pred_visible & scored, axis=per_video)
            false_pos = np.sum((~visible | ~close) & pred_visible & scored, axis=per_video)
            metrics[f'pts_within_{thr}'] = np.sum(correct & scored, axis=per_video) / visible_count
            metrics[f'jaccard_{thr}'] = true_pos / (visible_count + false_pos)
    metrics['average_jaccard'] = np.mean([metrics[f'jaccard_{thr}'] for thr in THRESHOLDS], axis=0)
    metrics['average_pts_within_thresh'] = np.mean([metrics[f'pts_within_{thr}'] for thr in THRESHOLDS], axis=0)
    return metrics


def tapvid_queries(points, occluded, query_mode, stride=5):
    """The TAP-Vid benchmark's queries for one video's tracks.

    points: N,T,2 as [x, y]; occluded: N,T bool. 'first': one query per track that is
    visible somewhere, at its first visible frame, in track order. 'strided': for frames
    0, stride, 2*stride, ... in order, one query per track visible at that frame, in
    track order. Returns (query_points Q,3 as [t, y, x] float64, track_index Q int64):
    query q asks for track ``track_index[q]`` (its truth is ``points[track_index[q]]``).
    """
    visible = ~np.asarray(occluded, dtype=bool)
    if query_mode == 'first':
        track_index = np.flatnonzero(visible.any(axis=1))
        frames = visible[track_index].argmax(axis=1)
    elif query_mode == 'strided':
        query_frames = np.arange(0, visible.shape[1], stride)
        frame_index, track_index = np.nonzero(visible[:, query_frames].T)
        frames = query_frames[frame_index]
    else:
        raise ValueError(f"query_mode must be 'first' or 'strided'; got {query_mode!r}")
    xy = np.asarray(points, dtype=np.float64)[track_index, frames]  # Q,2
    query_points = np.stack([frames.astype(np.float64), xy[:, 1], xy[:, 0]], axis=1).reshape(-1, 3)
    return query_points, track_index.astype(np.int64)


class SimplePool:
    """The last ``pool_size`` items added, oldest dropped first (the original's pool).

    ``mean()`` is the running average the scripts print: the mean of the finite values
    among the kept items. Unlike the original, whose average turns NaN for good once a
    NaN enters, NaN and inf values are skipped; the mean is NaN only when no kept value
    is finite (e.g. an empty pool). ``sample()`` returns a kept item at random, which
    training uses as a cache of samples.
    """

    def __init__(self, pool_size):
        self.pool_size = pool_size
        self.items = []

    def __len__(self):
        return len(self.items)

    def update(self, items):
        """Add items (an iterable), dropping the oldest beyond ``pool_size``."""
        self.items.extend(items)
        del self.items[:max(len(self.items) - self.pool_size, 0)]

    def mean(self):
        values = np.array([float(item) for item in self.items], dtype=np.float64)
        finite = values[np.isfinite(values)]
        return float(finite.mean()) if len(finite) else float('nan')

    def sample(self):
        """One kept item, picked uniformly at random (with replacement)."""
        return random.choice(self.items)
