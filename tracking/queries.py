"""Queries: the points to track, as N,3 rows (t, x, y) in the video's pixels at frame t.

One owner for reading them (``.csv`` / ``.npy``), checking them, the default grid every
interactive entry point uses, the dense stride grid, and the scale between the video's
pixels and the model's.
"""

import hashlib
import os

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
    raise_first_problem(queries)
    return queries


def check_queries_fit(queries, T, H, W, where=None):
    """Raise QueryError (naming ``where``) unless every query lies in the T frames (None:
    not known) and inside the H x W frame."""
    raise_first_problem(queries, where=where, size=(T, H, W))


def check_query_frames(queries, T):
    """Raise QueryError unless every query's frame is one of the video's T frames: before
    any tracking, whenever the length is known."""
    last = int(queries[:, 0].max())
    if last >= T:
        raise QueryError(f'a query is at frame {last} but the video has {T} frames')


def query_problems(queries, size=None):
    """[(N bool: which queries, what is wrong)] of the checks on N,3 (t, x, y) queries;
    ``size`` (T or None, H, W) adds that they lie in the video."""
    t, x, y = queries.T
    problems = [(~np.isfinite(queries).all(axis=1), 'NaN or infinite values'),
                ((t < 0) | (t != np.round(t)), 'the frame t must be a non-negative integer')]
    if size is not None:
        T, H, W = size
        if T is not None:
            problems.append((t >= T, f'the frame t is past the end (frames 0..{T - 1})'))
        outside = (x < 0) | (x > W - 1) | (y < 0) | (y > H - 1)
        problems.append((outside, f'the point lies outside the {W}x{H} frame (x in 0..{W - 1}, y in 0..{H - 1})'))
    return problems


def raise_first_problem(queries, where=None, size=None, label='query', numbers=None):
    """QueryError about the first query that fails a check, naming ``where`` (the file, or
    nothing) and its place: ``label`` and its row, or ``numbers[row]`` (such as 'line 3')."""
    problems = query_problems(queries, size)
    bad = np.any([wrong for wrong, _ in problems], axis=0)
    if not bad.any():
        return
    row = int(np.argmax(bad))
    problem = next(text for wrong, text in problems if wrong[row])
    values = ', '.join(f'{v:g}' for v in queries[row])
    place = f'{label} {row if numbers is None else numbers[row]}'
    raise QueryError(f'{where + ", " if where else ""}{place} ({values}): {problem}')


QUERY_FILE_FORMATS = ('.csv', '.txt', '.npy')
CSV_FORMAT = 'one query a line, t,x,y: the frame, then the point in video pixels'


def read_queries(path, size=None):
    """N,3 (t, x, y) float64 rows in video pixels from a .csv/.txt or .npy file.

    A .csv has one query a line, ``t,x,y``; an optional first line ``t,x,y`` names the
    columns; blank lines and ``#`` comments are skipped. A .npy holds an N,3 array.
    ``size`` (T, H, W): the queries must also lie in the video's T frames (T None: not
    known) and inside its H x W frame. Anything else (another separator, a header
    elsewhere or with other names, a line of 2 or 4 values, a negative frame, ...) raises
    QueryError naming the file, the line and the problem.
    """
    path = str(path)
    extension = os.path.splitext(path)[1].lower()
    if extension not in QUERY_FILE_FORMATS:
        raise QueryError(f'{path}: queries are read from .csv files (t,x,y lines) or .npy files (an N,3 array); '
                         f'got {extension or "a file without an extension"}')
    if not os.path.isfile(path):
        raise QueryError(f'{path}: no such file')
    if extension == '.npy':
        queries, label, numbers = read_npy(path), 'row', None
    else:
        (queries, numbers), label = read_csv(path), 'line'
    if not len(queries):
        raise QueryError(f'{path}: no queries in this file; expected {CSV_FORMAT}')
    raise_first_problem(queries, where=path, size=size, label=label, numbers=numbers)
    return queries


def read_csv(path):
    """(N,3 queries, N line numbers) of a queries .csv; QueryError on a line that is not
    three comma-separated numbers."""
    try:
        with open(path, encoding='utf-8-sig') as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise QueryError(f'{path}: not a text file; expected {CSV_FORMAT}') from None
    rows, line_numbers = [], []
    first = True
    for number, line in enumerate(lines, start=1):
        fields = [field.strip() for field in line.split('#', 1)[0].split(',')]
        if fields == ['']:
            continue
        is_header = first and [field.lower() for field in fields] == ['t', 'x', 'y']
        if not is_header:
            rows.append(parse_csv_line(path, number, line.strip(), fields, first))
            line_numbers.append(number)
        first = False
    return np.asarray(rows, dtype=np.float64).reshape(-1, 3), line_numbers


def parse_csv_line(path, number, line, fields, first):
    """The three numbers of one line of a queries .csv; QueryError saying what is wrong."""
    try:
        values = [float(field) for field in fields]
    except ValueError:
        values = None
    if values is not None and len(values) == 3:
        return values
    if values is not None:
        problem = f'{len(values)} values, not 3'
    elif [field.lower() for field in fields] == ['t', 'x', 'y']:
        problem = 'a header is allowed only as the first line'
    elif first and len(fields) == 3:
        problem = 'a header must name the columns t,x,y, in this order'
    elif len(fields) == 1 and any(sep in line for sep in ';\t '):
        problem = 'the values must be separated by commas'
    else:
        problem = 'not three numbers'
    raise QueryError(f'{path}, line {number} ({line!r}): {problem}; expected {CSV_FORMAT}')


def read_npy(path):
    """The N,3 queries of a queries .npy."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise QueryError(f'{path}: not a readable .npy array ({exc})') from None
    if array.dtype.kind not in 'iuf' or array.ndim != 2 or array.shape[1] != 3:
        raise QueryError(f'{path}: queries must be an N,3 array of numbers (t, x, y); '
                         f'got shape {array.shape} of {array.dtype}')
    return array.astype(np.float64)


def describe_queries(queries_path, N, grid_stride):
    """How a run's queries are chosen, for the settings its outputs record: a file by its
    name and content, else the grid."""
    if queries_path:
        try:
            with open(queries_path, 'rb') as f:
                digest = hashlib.sha256(f.read()).hexdigest()[:16]
        except OSError:
            digest = 'missing'
        return f'{os.path.basename(str(queries_path))} sha256:{digest}'
    return f'every {grid_stride}th pixel of frame 0' if grid_stride else f'grid of {N} points on frame 0'


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
