"""Inference precision: run the model's matrix products in float32, bfloat16 or float16.

    with inference_precision('bf16', device):
        preds = model(trajs_e0, rgbs, iters=16)[0]

'bf16' and 'fp16' turn on ``torch.autocast`` for the device: convolutions and matrix
products (encoder, correlations, delta block) run in the low precision, while the model
keeps coordinates, flow embeddings, bilinear weights and the coordinate updates in
float32 (see ``nets/pips2.py``). 'fp32' leaves everything as it is. The outputs are
float32 in every precision.

On CPU 'fp16' works but is meant for checking its numbers: CPUs without float16 matrix
units run it no faster than float32. 'bf16' is fast on CPUs with AMX or AVX512-BF16.
"""

import contextlib

import torch

PRECISIONS = ('fp32', 'bf16', 'fp16')
LOW_PRECISION_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def check_precision(precision):
    """Raise ValueError unless ``precision`` is one of PRECISIONS."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")


@contextlib.contextmanager
def inference_precision(precision, device):
    """Context in which the model runs its matrix products in ``precision`` on ``device``."""
    check_precision(precision)
    if precision == 'fp32':
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=LOW_PRECISION_DTYPES[precision]):
        yield


def matmul_dtype(device, default):
    """The dtype matrix products run in on ``device``: autocast's where it is on, else ``default``."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return default


def training_autocast(amp, device):
    """(autocast context factory, gradient scaler) for training with ``amp``: '' or 'fp32'
    (off), 'bf16' or 'fp16' (the same table as inference; fp16 scales the loss). Raises
    ValueError for other values or devices that cannot train in them."""
    if amp in ('', 'fp32', None):
        return contextlib.nullcontext, torch.amp.GradScaler(enabled=False)
    check_precision(amp)
    device_type = torch.device(device).type
    if device_type != 'cuda':
        raise ValueError(f'amp={amp} needs a CUDA device')
    dtype = LOW_PRECISION_DTYPES[amp]
    return (lambda: torch.autocast(device_type, dtype=dtype)), torch.amp.GradScaler(enabled=(amp == 'fp16'))
