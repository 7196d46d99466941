"""Efficiency of the model per configuration, precision and delta-block implementation.

    python benchmarks/bench_efficiency.py                         # the device's default configurations
    python benchmarks/bench_efficiency.py --configs=256x384:8:256 --precisions=fp32,bf16 --threads=1

For each configuration and precision, in a fresh process where the implementations run in
turns (min of --repeats): the forward's wall time and peak memory (on CPU the process max
RSS after each implementation's first forward, in turn; on CUDA max allocated memory); the
achieved GFLOP/s of the encoder and of the delta block, timed alone, with FLOPs counted
from the layer shapes (2 per multiply-add), as a share of the device's GEMM peak, measured
in the same process as the rate of a large matmul in the same dtype; and the time of one
training step (forward + backward; autocast for bf16/fp16). 'gemm' is the delta block as
it runs, 'conv1d' its nn.Conv1d formulation (nets.pips2.reference_delta_block, with the CPU
chunk of 256 tracks it used), the baseline.
The training step is the reference recipe on GPU (B=4, S=36, N=128, 256x384, iters=6) and
a smaller one on CPU (--train). Weights are random: speed does not depend on them.
"""

import functools
import json
import os
import resource
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import nets.pips2  # noqa: E402
from nets.pips2 import Pips, reference_delta_block  # noqa: E402
from nets.precision import LOW_PRECISION_DTYPES, inference_precision  # noqa: E402
from utils import cli  # noqa: E402
from utils.distributed import default_device  # noqa: E402

DEFAULTS = {'cuda': dict(configs='512x896:24:2048', iters=16, train='4:36:128:256x384:6', gemm_size=8192),
            'cpu': dict(configs='256x384:8:256,256x384:24:1024', iters=1, train='1:8:64:128x192:2',
                        gemm_size=2048)}
OLD_CPU_DELTA_CHUNK = 256


def parse_config(text):
    """'HxW:S:N' -> (H, W, S, N)."""
    size, S, N = text.split(':')
    H, W = size.split('x')
    return int(H), int(W), int(S), int(N)


def synchronize(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def best_times(fns, device, repeats):
    """Min wall time of each of fns, run in turns (so a busy machine slows them alike)."""
    times = [[] for _ in fns]
    for fn in fns:
        fn()  # warm-up
    for _ in range(repeats):
        for fn, runs in zip(fns, times):
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            runs.append(time.perf_counter() - start)
    return [min(runs) for runs in times]


def gemm_peak_gflops(dtype, device, size, repeats):
    """GFLOP/s of a size x size x size matmul in dtype: the device's GEMM rate."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    return 2 * size ** 3 / best_times([lambda: a @ b], device, repeats)[0] / 1e9


def delta_block_flops(block, rows):
    """Multiply-adds x 2 of the convolutions and the dense layer over rows (track, frame) pairs."""
    weights = [m.weight for m in block.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.Linear))]
    return 2 * rows * sum(w.numel() for w in weights)


def encoder_flops(fnet, frames):
    """Multiply-adds x 2 of every Conv2d of the encoder on ``frames`` (F,3,H,W), from hooks."""
    total = []

    def count(module, inputs, output):
        total.append(2 * output.numel() * module.weight[0].numel())

    hooks = [m.register_forward_hook(count) for m in fnet.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        fnet(frames)
    for hook in hooks:
        hook.remove()
    return sum(total)


def with_impl(model, impl, fn):
    """fn run with the model's delta block as 'gemm' (as it is) or 'conv1d' (the old formulation)."""
    def run():
        if impl == 'gemm':
            return fn()
        old_chunk = dict(nets.pips2.DELTA_CHUNK)
        nets.pips2.DELTA_CHUNK['cpu'] = OLD_CPU_DELTA_CHUNK
        model.delta_block.forward = functools.partial(reference_delta_block, model.delta_block)
        try:
            return fn()
        finally:
            del model.delta_block.forward
            nets.pips2.DELTA_CHUNK.update(old_chunk)
    return run


def scene(B, S, N, H, W, device):
    rgbs = torch.randint(0, 256, (B, S, 3, H, W), device=device).float()
    trajs = torch.rand(B, 1, N, 2, device=device) * torch.tensor([W - 1.0, H - 1.0], device=device)
    return rgbs, trajs.repeat(1, S, 1, 1)


def measure_inference(config, precision, impls, iters, device, repeats, gemm_size):
    H, W, S, N = parse_config(config)
    torch.manual_seed(0)
    model = Pips().to(device).eval()
    rgbs, trajs = scene(1, S, N, H, W, device)
    fcorrs = torch.randn(1, S, N, 588, device=device)
    flows = torch.randn(1, S, N, 2, device=device)
    results = {impl: {} for impl in impls}
    with torch.no_grad(), inference_precision(precision, device):
        for impl in impls:  # one forward each for the peak memory
            if device.type == 'cuda':
                torch.cuda.reset_peak_memory_stats()
            with_impl(model, impl, lambda: model(trajs, rgbs, iters=iters))()
            results[impl]['peak_gb'] = (torch.cuda.max_memory_allocated() if device.type == 'cuda' else
                                        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1e3) / 1e9
        forwards = best_times([with_impl(model, impl, lambda: model(trajs, rgbs, iters=iters)) for impl in impls],
                              device, repeats)
        deltas = best_times([with_impl(model, impl, lambda: model.delta_block(fcorrs, flows)) for impl in impls],
                            device, repeats)
        encoder_s = best_times([lambda: model.encode(rgbs)], device, repeats)[0]
    dtype = LOW_PRECISION_DTYPES.get(precision, torch.float32)
    encoder_gflops = encoder_flops(model.fnet, 2 * (rgbs[0] / 255.0) - 1) / encoder_s / 1e9
    gemm_gflops = gemm_peak_gflops(dtype, device, gemm_size, repeats)
    for impl, seconds, delta_s in zip(impls, forwards, deltas):
        results[impl].update(seconds=seconds, encoder_gflops=encoder_gflops, gemm_gflops=gemm_gflops,
                             delta_gflops=delta_block_flops(model.delta_block, S * N) / delta_s / 1e9)
    return results


def measure_training(train, precision, impls, device, repeats):
    B, S, N, size, iters = train.split(':')
    H, W = (int(v) for v in size.split('x'))
    torch.manual_seed(0)
    model = Pips().to(device).train()
    rgbs, trajs = scene(int(B), int(S), int(N), H, W, device)

    def step():
        with torch.autocast(device.type, dtype=LOW_PRECISION_DTYPES.get(precision, torch.float32),
                            enabled=precision != 'fp32'):
            loss = model(trajs + 3 * torch.randn_like(trajs), rgbs, iters=int(iters), trajs_g=trajs)[3]
        loss.backward()

    seconds = best_times([with_impl(model, impl, step) for impl in impls], device, repeats)
    return {impl: {'train_seconds': s} for impl, s in zip(impls, seconds)}


def run_child(args):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), *args], capture_output=True, text=True)
    if out.returncode != 0:
        return {'error': (out.stderr.strip().splitlines() or ['failed'])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(single, precision, impls, iters, device, repeats, gemm_size):
    """One measurement in this process: single is 'forward:HxW:S:N' or 'train:B:S:N:HxW:iters'."""
    kind, spec = single.split(':', 1)
    impls = impls.split(',') if isinstance(impls, str) else list(impls)
    device = torch.device(device)
    if kind == 'train':
        result = measure_training(spec, precision, impls, device, repeats)
    else:
        result = measure_inference(spec, precision, impls, iters, device, repeats, gemm_size)
    print(json.dumps(result))


def format_row(config, precision, impl, inf, train):
    if 'error' in inf:
        return f'{config:>15} {precision:>4} {impl:>6} | failed: {inf["error"]}'
    peak = inf['gemm_gflops']
    step = f'{train["train_seconds"]:>7.2f}' if 'train_seconds' in train else f'{"failed":>7}'
    return (f'{config:>15} {precision:>4} {impl:>6} | {inf["seconds"]:>7.2f} {inf["peak_gb"]:>6.2f} | '
            f'{inf["encoder_gflops"]:>8.0f} {100 * inf["encoder_gflops"] / peak:>4.0f}% | '
            f'{inf["delta_gflops"]:>8.0f} {100 * inf["delta_gflops"] / peak:>4.0f}% | {peak:>8.0f} | {step}')


def main(configs=None, precisions='fp32,bf16', impls='gemm,conv1d', iters=None, device=None, repeats=2,
         threads=None, train=None, gemm_size=None, single=None, precision='fp32'):
    device = default_device(device)
    defaults = DEFAULTS['cuda' if device.startswith('cuda') else 'cpu']
    iters = iters or defaults['iters']
    gemm_size = gemm_size or defaults['gemm_size']
    if threads:
        torch.set_num_threads(threads)
    if single:
        return child(single, precision, impls, iters, device, repeats, gemm_size)
    train = train or defaults['train']
    configs = configs or defaults['configs']
    configs = ','.join(configs) if isinstance(configs, (tuple, list)) else configs
    precisions = precisions.split(',') if isinstance(precisions, str) else list(precisions)
    impls = impls if isinstance(impls, str) else ','.join(impls)
    name = torch.cuda.get_device_name() if device.startswith('cuda') else f'CPU, {torch.get_num_threads()} threads'
    print(f'device: {device} ({name}); forward iters={iters}; train step B:S:N:HxW:iters = {train}; '
          f'min of {repeats} runs; GFLOP/s with % of the same-dtype GEMM peak')
    header = (f'{"HxW:S:N":>15} {"prec":>4} {"delta":>6} | {"fwd s":>7} {"GB":>6} | {"encoder":>8} {"":>5} | '
              f'{"delta":>8} {"":>5} | {"GEMM":>8} | {"train s":>7}')
    print(header)
    print('-' * len(header))
    common = [f'--device={device}', f'--repeats={repeats}', f'--iters={iters}', f'--gemm_size={gemm_size}']
    common += [f'--threads={threads}'] if threads else []
    for precision in precisions:
        args = [f'--precision={precision}', f'--impls={impls}', *common]
        steps = run_child([f'--single=train:{train}', *args])
        for config in configs.split(','):
            forwards = run_child([f'--single=forward:{config}', *args])
            for impl in impls.split(','):
                print(format_row(config, precision, impl, forwards.get(impl, forwards), steps.get(impl, {})),
                      flush=True)


if __name__ == '__main__':
    cli.run(main)
