"""Time (and profile) one training forward+backward of the model on the current device.

    python benchmarks/profile_train_step.py --B=4 --S=36 --N=128 --H=256 --W=384 --iters=6 --profile=True
"""

import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import nets.corr  # noqa: E402
import nets.pips2  # noqa: E402
from nets.pips2 import Pips  # noqa: E402
from utils import cli  # noqa: E402


def step_time(model, rgbs, trajs, iters, repeats, amp):
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast('cuda', dtype=torch.bfloat16, enabled=amp):
            loss = model(trajs + 3 * torch.randn_like(trajs), rgbs, iters=iters, trajs_g=trajs)[3]
        loss.backward()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main(B=4, S=36, N=128, H=256, W=384, iters=6, repeats=3, profile=False, amp=False, encoder_chunk=None,
         delta_chunk=None, window_chunk=None):
    device = 'cuda'
    for table, value in ((nets.pips2.ENCODER_CHUNK, encoder_chunk), (nets.pips2.DELTA_CHUNK, delta_chunk),
                         (nets.corr.WINDOW_CHUNK, window_chunk)):
        if value:
            table['other'] = value
    model = Pips().to(device)
    rgbs = torch.rand(B, S, 3, H, W, device=device) * 255
    trajs = torch.rand(B, 1, N, 2, device=device) * torch.tensor([W - 1.0, H - 1.0], device=device)
    trajs = trajs.repeat(1, S, 1, 1)
    print('chunks', nets.pips2.ENCODER_CHUNK, nets.pips2.DELTA_CHUNK, nets.corr.WINDOW_CHUNK)
    print(f'fwd+bwd: {step_time(model, rgbs, trajs, iters, repeats, amp):.3f} s')
    if profile:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                torch.profiler.ProfilerActivity.CUDA]) as prof:
            step_time(model, rgbs, trajs, iters, 1, amp)
        print(prof.key_averages().table(sort_by='cuda_time_total', row_limit=15))


if __name__ == '__main__':
    cli.run(main)
