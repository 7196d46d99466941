"""Small helpers shared by the scripts: model loading, queries files, one-line failures."""

import os
import sys

import numpy as np
import torch
from prettytable import PrettyTable


def count_parameters(model, min_numel=100000):
    """Print a table of the trainable tensors over ``min_numel`` elements and the total.

    Returns the total number of trainable parameters.
    """
    table = PrettyTable(['Modules', 'Parameters'])
    total = 0
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.numel() > min_numel:
            table.add_row([name, param.numel()])
        total += param.numel()
    print(table)
    print('total params: %.2f M' % (total / 1e6))
    return total


def fail(message):
    """Stop a script on a user error: one line on stderr, exit status 1, no traceback."""
    print(f'error: {message}', file=sys.stderr)
    sys.exit(1)


def default_device(device=None):
    """--device, or CUDA when available, else the CPU."""
    return str(device) if device else ('cuda' if torch.cuda.is_available() else 'cpu')


def check_precision_arg(precision):
    """--precision, or stop the script with one line naming the allowed values."""
    from nets.precision import check_precision

    try:
        check_precision(precision)
    except ValueError as exc:
        fail(f'--{exc}')
    return precision


def load_pips(init_dir, device='cpu', stride=8):
    """A Pips model with the newest checkpoint of ``init_dir`` (strictly), in eval mode.

    An empty ``init_dir`` runs untrained weights on purpose, with a warning. A missing
    folder or a checkpoint that cannot be read or does not fit raises
    ``saverloader.CheckpointError`` saying what to do.
    """
    from nets.pips2 import Pips
    from saverloader import CheckpointError, load

    model = Pips(stride=stride)
    if not init_dir:
        print('warning: --init_dir is empty, running UNTRAINED weights: the tracks are meaningless')
    elif not os.path.isdir(init_dir):
        raise CheckpointError(f'{init_dir}: no model here; run `sh get_reference_model.sh` first '
                              "(or pass --init_dir='' to run untrained weights)")
    else:
        load(init_dir, model)
    return model.to(device).eval()


def load_model(init_dir, device, stride=8):
    """``load_pips`` for scripts: a checkpoint problem stops the script with one line."""
    from saverloader import CheckpointError

    try:
        return load_pips(init_dir, device, stride)
    except CheckpointError as exc:
        fail(str(exc))


def read_queries(path):
    """N,3 (t, x, y) rows in video pixels from a .csv (optional header) or .npy file.

    Raises ValueError naming the file when it cannot be read or is malformed.
    """
    from utils.track import check_queries

    path = str(path)
    try:
        if path.endswith('.npy'):
            queries = np.load(path)
        else:
            queries = np.genfromtxt(path, delimiter=',', comments='#', dtype=np.float64)
            if queries.ndim >= 1 and np.isnan(queries).all(axis=-1).any():  # a header row
                queries = np.genfromtxt(path, delimiter=',', comments='#', dtype=np.float64, skip_header=1)
    except (OSError, ValueError) as exc:
        raise ValueError(f'{path}: cannot read queries ({exc})') from exc
    try:
        return check_queries(np.atleast_2d(queries))
    except ValueError as exc:
        raise ValueError(f'{path}: {exc}') from exc


def check_queries_fit(path, queries, T, H, W):
    """Raise ValueError (naming ``path``) unless every query lies in the T frames and inside H x W."""
    if queries[:, 0].max() >= T:
        raise ValueError(f'{path}: a query is at frame {int(queries[:, 0].max())} but only {T} frames are tracked')
    outside = (queries[:, 1] < 0) | (queries[:, 1] > W - 1) | (queries[:, 2] < 0) | (queries[:, 2] > H - 1)
    if outside.any():
        raise ValueError(f'{path}: {int(outside.sum())} queries lie outside the {W}x{H} frame')
