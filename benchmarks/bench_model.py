"""Forward time and peak memory of the windowed vs the full-volume correlation.

    python benchmarks/bench_model.py                      # default configurations
    python benchmarks/bench_model.py --configs=512x896:24:2048 --iters=1 --device=cpu

Each (configuration, implementation) runs in a fresh process, so the CPU figure is that
process's peak resident memory (what the original's 7.9 GB refers to); on CUDA it is
the peak of allocated GPU memory. Weights are random: speed and memory do not depend on
them. A full-volume run whose estimated cost volume exceeds --max_full_gb is skipped.
"""

import json
import os
import resource
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils import cli  # noqa: E402
from utils.distributed import default_device  # noqa: E402

DEFAULT_CONFIGS = '256x384:8:256,256x384:24:1024,512x896:8:256,512x896:24:2048,512x896:48:4096'


def parse_config(text):
    """'HxW:S:N' -> (H, W, S, N)."""
    size, S, N = text.split(':')
    H, W = size.split('x')
    return int(H), int(W), int(S), int(N)


def full_volume_gb(H, W, S, N):
    """Bytes of the original's correlation volumes: 3 targets x 4 levels, float32."""
    cells = sum((H // 8 >> level) * (W // 8 >> level) for level in range(4))
    return 3 * N * S * cells * 4 / 1e9


def measure_once(config, impl, iters, device, repeats):
    """Run one configuration in this process and print a JSON line with the figures."""
    from nets.pips2 import Pips

    H, W, S, N = parse_config(config)
    torch.manual_seed(0)
    model = Pips(corr_impl=impl).to(device).eval()
    rgbs = torch.randint(0, 256, (1, S, 3, H, W), dtype=torch.uint8, device=device).float()
    trajs = (torch.rand(1, 1, N, 2, device=device) * torch.tensor([W - 1.0, H - 1.0], device=device))
    trajs = trajs.repeat(1, S, 1, 1)
    if device.startswith('cuda'):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            model(trajs, rgbs, iters=iters)
            if device.startswith('cuda'):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    if device.startswith('cuda'):
        peak_gb = torch.cuda.max_memory_allocated() / 1e9
    else:
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux
    print(json.dumps({'seconds': min(times), 'peak_gb': peak_gb}))


def run_child(config, impl, iters, device, repeats):
    cmd = [sys.executable, os.path.abspath(__file__), f'--single={config}', f'--impl={impl}',
           f'--iters={iters}', f'--device={device}', f'--repeats={repeats}']
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return None, out.stderr.strip().splitlines()[-1:] or ['failed']
    return json.loads(out.stdout.strip().splitlines()[-1]), None


def main(configs=DEFAULT_CONFIGS, iters=1, device=None, repeats=1, max_full_gb=12.0, single=None,
         impl='windowed'):
    device = default_device(device)
    if single:
        return measure_once(single, impl, iters, device, repeats)
    if isinstance(configs, (tuple, list)):
        configs = ','.join(configs)
    name = torch.cuda.get_device_name() if device.startswith('cuda') else f'CPU x{torch.get_num_threads()}'
    print(f'device: {device} ({name}); iters={iters}; float32; peak = '
          f'{"max allocated GPU memory" if device.startswith("cuda") else "process max RSS"}')
    header = (f'{"H x W":>9} {"S":>3} {"N":>5} | {"windowed s":>10} {"GB":>6} | '
              f'{"full s":>8} {"GB":>6} | speedup  mem')
    print(header)
    print('-' * len(header))
    for config in configs.split(','):
        H, W, S, N = parse_config(config)
        win, _ = run_child(config, 'windowed', iters, device, repeats)
        if full_volume_gb(H, W, S, N) > max_full_gb:
            full, note = None, f'full skipped (cost volume ~{full_volume_gb(H, W, S, N):.0f} GB)'
        else:
            full, note = run_child(config, 'full', iters, device, repeats)
        row = f'{H:>4}x{W:<4} {S:>3} {N:>5} | '
        row += f'{win["seconds"]:>10.2f} {win["peak_gb"]:>6.2f} | ' if win else f'{"failed":>17} | '
        if full and win:
            row += (f'{full["seconds"]:>8.2f} {full["peak_gb"]:>6.2f} | '
                    f'{full["seconds"] / win["seconds"]:>6.2f}x {full["peak_gb"] / win["peak_gb"]:>4.1f}x')
        else:
            row += f'{note if isinstance(note, str) else " ".join(note or [])}'
        print(row, flush=True)


if __name__ == '__main__':
    cli.run(main)
