"""Checkpoint save/load in the original PIPs++ format.

A checkpoint is ``<ckpt_dir>/<model_name>-<step:09d>.pth`` holding a dict with
``model_state_dict`` (keys without a ``module.`` prefix), ``optimizer_state_dict`` and,
when a scheduler is used, ``scheduler_state_dict``. Unlike the original, loading is
strict and every problem raises ``CheckpointError`` naming the file and the keys.
"""

import os
import pickle
import re
import warnings

import torch

from utils.errors import PipsError
from utils.files import atomic_path


class CheckpointError(PipsError, RuntimeError):
    """A checkpoint is missing, unreadable, or does not fit the model."""


def _unwrap(model):
    """The bare model inside DataParallel / DistributedDataParallel wrappers."""
    return model.module if hasattr(model, 'module') else model


def list_checkpoints(ckpt_dir, model_name='model'):
    """{step: path} of the checkpoints in ``ckpt_dir`` (empty if there are none)."""
    pattern = re.compile(rf'^{re.escape(model_name)}-(\d+)\.pth$')
    found = {}
    for name in os.listdir(ckpt_dir):
        match = pattern.match(name)
        if match:
            found[int(match.group(1))] = os.path.join(ckpt_dir, name)
    return found


def os_error_behind(exc):
    """The OSError that ``exc`` is, or that it was raised while handling (torch.save ends a
    failed write with a RuntimeError of its zip writer), or None."""
    while exc is not None and not isinstance(exc, OSError):
        exc = exc.__context__
    return exc


def save(ckpt_dir, optimizer, model, global_step, scheduler=None, keep_latest=5, model_name='model'):
    """Write ``<ckpt_dir>/<model_name>-<step:09d>.pth`` and keep the newest ``keep_latest``.

    The file is written under a temporary name, synced and renamed into place, so an
    interrupted or failed save (a full disk) never leaves a truncated checkpoint, nor its
    temporary; a failed save raises CheckpointError naming the file and keeps the older
    checkpoints. Returns the path written.
    """
    ckpt = {'model_state_dict': _unwrap(model).state_dict()}
    if optimizer is not None:
        ckpt['optimizer_state_dict'] = optimizer.state_dict()
    if scheduler is not None:
        ckpt['scheduler_state_dict'] = scheduler.state_dict()
    path = os.path.join(ckpt_dir, '%s-%09d.pth' % (model_name, global_step))
    try:
        os.makedirs(ckpt_dir, exist_ok=True)
        with atomic_path(path) as tmp_path, open(tmp_path, 'wb') as f:
            torch.save(ckpt, f)  # through a Python file, so a failed write is an OSError with its reason
            f.flush()
            os.fsync(f.fileno())
    except (OSError, RuntimeError) as exc:
        failed_write = os_error_behind(exc)
        if failed_write is None:
            raise
        raise CheckpointError(f'{path}: cannot write the checkpoint ({failed_write.strerror or failed_write}); '
                              'nothing was written and the older checkpoints are kept') from exc
    steps = sorted(list_checkpoints(ckpt_dir, model_name), reverse=True)
    for old_step in steps[max(keep_latest, 1):]:
        os.remove(os.path.join(ckpt_dir, '%s-%09d.pth' % (model_name, old_step)))
    print('saved a checkpoint: %s' % path)
    return path


def read_checkpoint(path):
    """Load a checkpoint file's dict; CheckpointError in one line if it cannot be read
    (a truncated or corrupt file: '<path>: not a readable PyTorch checkpoint')."""
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as exc:
        if 'Unsupported global' not in str(exc):
            raise CheckpointError(f'{path}: not a readable PyTorch checkpoint') from exc
        # Older checkpoints pickle scheduler internals that the safe loader refuses.
        warnings.warn(f'{path}: loading with full unpickling (only do this for files you trust)',
                      stacklevel=2)
    except OSError as exc:
        raise CheckpointError(f'{path}: cannot open ({exc.strerror or exc})') from exc
    except Exception as exc:
        raise CheckpointError(f'{path}: not a readable PyTorch checkpoint') from exc
    try:
        return torch.load(path, map_location='cpu', weights_only=False)
    except Exception as exc:
        raise CheckpointError(f'{path}: not a readable PyTorch checkpoint') from exc


def _strip_module_prefix(state):
    if state and all(key.startswith('module.') for key in state):
        return {key[len('module.'):]: value for key, value in state.items()}
    return state


def _check_keys(path, model_state, ckpt_state, ignored):
    """Raise CheckpointError when keys or shapes differ (ignored keys aside)."""

    def kept(keys):
        return {k for k in keys if not any(s in k for s in ignored)}

    missing = sorted(kept(model_state) - set(ckpt_state))
    unexpected = sorted(set(ckpt_state) - set(model_state))
    wrong_shape = [f'{k} {tuple(ckpt_state[k].shape)} vs model {tuple(model_state[k].shape)}'
                   for k in sorted(set(ckpt_state) & set(model_state))
                   if tuple(ckpt_state[k].shape) != tuple(model_state[k].shape)]
    problems = []
    for label, keys in (('missing keys', missing), ('unexpected keys', unexpected),
                        ('shape mismatches', wrong_shape)):
        if keys:
            shown = ', '.join(keys[:5]) + (f', ... ({len(keys)} in all)' if len(keys) > 5 else '')
            problems.append(f'{label}: {shown}')
    if problems:
        raise CheckpointError(f'{path}: checkpoint does not fit the model; ' + '; '.join(problems))


def load(ckpt_dir, model, optimizer=None, scheduler=None, step=0, model_name='model', ignore_load=None):
    """Load the checkpoint of ``step`` (0: the highest) from ``ckpt_dir``; return its step.

    Loading is strict: every model key must be present with the right shape, except keys
    containing one of the substrings in ``ignore_load``, which are dropped from the
    checkpoint and keep the model's current values. A ``module.`` prefix is accepted.
    """
    if not os.path.isdir(ckpt_dir):
        raise CheckpointError(f'{ckpt_dir}: checkpoint directory does not exist')
    found = list_checkpoints(ckpt_dir, model_name)
    if not found:
        raise CheckpointError(f'{ckpt_dir}: no {model_name}-<step>.pth checkpoint in this directory')
    if step == 0:
        step = max(found)
    if step not in found:
        raise CheckpointError(f'{ckpt_dir}: no checkpoint for step {step} (have {sorted(found)})')
    path = found[step]
    print('reading ckpt from %s' % path)
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or 'model_state_dict' not in ckpt:
        raise CheckpointError(f'{path}: not a PIPs++ checkpoint (no model_state_dict)')

    ignored = list(ignore_load or [])
    state = _strip_module_prefix(ckpt['model_state_dict'])
    state = {k: v for k, v in state.items() if not any(s in k for s in ignored)}
    bare = _unwrap(model)
    model_state = bare.state_dict()
    _check_keys(path, model_state, state, ignored)
    bare.load_state_dict({**model_state, **state}, strict=True)

    for name, target in (('optimizer_state_dict', optimizer), ('scheduler_state_dict', scheduler)):
        if target is None:
            continue
        if name not in ckpt:
            raise CheckpointError(f'{path}: has no {name} to restore')
        try:
            target.load_state_dict(ckpt[name])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise CheckpointError(f'{path}: cannot restore {name} ({exc})') from exc
    return step
