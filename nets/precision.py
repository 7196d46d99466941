"""Inference precision: run the model's matrix products in float32, bfloat16 or float16.

    with inference_precision('bf16', device):
        preds = model(trajs_e0, rgbs, iters=16)[0]

'bf16' and 'fp16' turn on ``torch.autocast`` for the device: convolutions and matrix
products (encoder, correlations, delta block) run in the low precision, while the model
keeps coordinates, flow embeddings, bilinear weights and the coordinate updates in
float32 (see ``nets/pips2.py``). 'fp32' leaves everything as it is. The outputs are
float32 in every precision.

On CPU 'fp16' works but is meant for checking its numbers: CPUs without float16 matrix
units run it no faster than float32. 'bf16' is fast on CPUs with bf16 matrix units (the
``amx_bf16`` or ``avx512_bf16`` flags of /proc/cpuinfo); ``training_autocast`` trains in it
only there, since elsewhere it would be slower than float32.
"""

import contextlib

import torch

PRECISIONS = ('fp32', 'bf16', 'fp16')
LOW_PRECISION_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}
CPU_BF16_FLAGS = ('amx_bf16', 'avx512_bf16')  # /proc/cpuinfo flags of bf16 matrix units (Intel AMX, AVX-512)
CPUINFO = '/proc/cpuinfo'


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


def cpu_flags():
    """The feature flags of this machine's CPU as /proc/cpuinfo lists them (an empty set
    where there is no such file)."""
    try:
        with open(CPUINFO) as f:
            for line in f:
                if line.startswith('flags'):
                    return set(line.partition(':')[2].split())
    except OSError:
        pass
    return set()


def check_training_device(amp, device_type):
    """Raise ValueError unless ``device_type`` trains fast in ``amp`` ('bf16' or 'fp16'):
    CUDA in both; the CPU in bf16 where it has bf16 matrix units (CPU_BF16_FLAGS)."""
    if device_type == 'cuda':
        return
    if amp != 'bf16':
        raise ValueError(f'amp={amp} needs a CUDA device (on the CPU, use bf16)')
    if not cpu_flags() & set(CPU_BF16_FLAGS):
        raise ValueError(f'amp=bf16 on the CPU needs bf16 matrix units ({" or ".join(CPU_BF16_FLAGS)} among '
                         f'the flags of {CPUINFO}), which this CPU lacks; leave --amp empty to train in float32')


def training_autocast(amp, device):
    """(autocast context factory, gradient scaler) for training with ``amp``: '' or 'fp32'
    (off), 'bf16' or 'fp16' (the same table as inference; fp16 scales the loss). bf16 runs
    on CUDA and on CPUs with bf16 matrix units, fp16 on CUDA. Raises ValueError for other
    values or devices that cannot train in them."""
    if amp in ('', 'fp32', None):
        return contextlib.nullcontext, torch.amp.GradScaler(enabled=False)
    check_precision(amp)
    device_type = torch.device(device).type
    check_training_device(amp, device_type)
    dtype = LOW_PRECISION_DTYPES[amp]
    return (lambda: torch.autocast(device_type, dtype=dtype)), torch.amp.GradScaler(enabled=(amp == 'fp16'))
