"""Queries: the points to track, as N,3 rows (t, x, y) in the video's pixels at frame t.

One owner for reading them (``.csv`` / ``.npy``), checking them, the default grid every
interactive entry point uses, the dense stride grid, and the scale between the video's
pixels and the model's.
"""

import numpy as np

from utils.errors import PipsError

DEFAULT_GRID_POINTS = 1024  # the original demo's 32 x 32 grid
GRID_MARGIN = 8  # pixels left free at each side of a grid, at the model's size


class QueryError(PipsError, ValueError):
    """Queries that are malformed, or do not fit the video."""


def check_queries(queries):
    """queries: N,3 (t, x, y) -> float64 numpy array; raise QueryError when malformed."""
    try:
        queries = np.asarray(queries, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise QueryError(f'queries must be numbers in N,3 rows of (t, x, y) ({exc})') from None
    if queries.ndim != 2 or queries.shape[1] != 3 or len(queries) == 0:
        raise QueryError(f'queries must be an N,3 array of (t, x, y) rows with N >= 1; got shape {queries.shape}')
    if not np.isfinite(queries).all():
        raise QueryError('queries contain NaN or infinite values')
    if (queries[:, 0] < 0).any() or (queries[:, 0] != np.round(queries[:, 0])).any():
        raise QueryError('query frames (column t) must be non-negative integers')
    return queries


def read_queries(path):
    """N,3 (t, x, y) rows in video pixels from a .csv (an optional header line) or .npy file;
    QueryError naming the file when it cannot be read or is malformed."""
    path = str(path)
    try:
        if path.endswith('.npy'):
            queries = np.load(path)
        else:
            queries = np.genfromtxt(path, delimiter=',', comments='#', dtype=np.float64)
            if queries.ndim >= 1 and np.isnan(queries).all(axis=-1).any():  # a header row
                queries = np.genfromtxt(path, delimiter=',', comments='#', dtype=np.float64, skip_header=1)
    except (OSError, ValueError) as exc:
        raise QueryError(f'{path}: cannot read queries ({exc})') from exc
    try:
        return check_queries(np.atleast_2d(queries))
    except QueryError as exc:
        raise QueryError(f'{path}: {exc}') from exc


def check_queries_fit(queries, T, H, W, where='queries'):
    """Raise QueryError (naming ``where``) unless every query lies in the T frames and
    inside the H x W frame."""
    if queries[:, 0].max() >= T:
        raise QueryError(f'{where}: a query is at frame {int(queries[:, 0].max())} but only {T} frames are tracked')
    outside = (queries[:, 1] < 0) | (queries[:, 1] > W - 1) | (queries[:, 2] < 0) | (queries[:, 2] > H - 1)
    if outside.any():
        raise QueryError(f'{where}: {int(outside.sum())} queries lie outside the {W}x{H} frame')


def grid_queries(H, W, N, margin=GRID_MARGIN):
    """round(sqrt(N))**2 frame-0 queries (t, x, y) spanning an H x W frame with ``margin``
    pixels left at each side (y the slow index): the original demo's grid."""
    side = int(round(np.sqrt(N)))
    if side < 2:
        raise QueryError(f'N must be at least 4 for a grid of points; got {N}')
    ys, xs = np.meshgrid(np.linspace(margin, H - margin, side), np.linspace(margin, W - margin, side),
                         indexing='ij')
    return np.stack([np.zeros(side * side), xs.ravel(), ys.ravel()], axis=1)


def default_queries(H, W, image_size, N=DEFAULT_GRID_POINTS):
    """The default queries of every interactive entry point: the original demo's grid of N
    points on frame 0, laid out at the model's size (``image_size``, None: the video's) and
    mapped to the H x W video."""
    model_H, model_W = image_size or (H, W)
    return grid_queries(model_H, model_W, N) * [1, W / model_W, H / model_H]


def stride_grid_queries(H, W, grid_stride, t=0):
    """Dense queries: every ``grid_stride``-th pixel of an H x W frame, at frame ``t``.

    Points sit at the centre of each grid_stride x grid_stride cell, (k-1)/2 + i*k, so the
    grid is symmetric in the frame. Returns M,3 rows (t, x, y), y the slow index.
    """
    if isinstance(grid_stride, bool) or not isinstance(grid_stride, (int, np.integer)) or grid_stride < 1:
        raise QueryError(f'grid_stride must be a positive integer; got {grid_stride!r}')
    offset = (grid_stride - 1) / 2
    ys, xs = np.meshgrid(np.arange(offset, H, grid_stride), np.arange(offset, W, grid_stride), indexing='ij')
    return np.stack([np.full(xs.size, float(t)), xs.ravel(), ys.ravel()], axis=1)


def model_scale(video_size, model_size):
    """(sx, sy) float64: video pixels (x, y) times this are the model's pixels.

    video_size, model_size: (H, W); a model_size of None is the video's own size."""
    H, W = video_size
    model_H, model_W = model_size or video_size
    return np.array([model_W / W, model_H / H])
