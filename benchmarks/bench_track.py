"""What the tracking engine costs: query layouts, video length, dense grids, online use.

    python benchmarks/bench_track.py                       # every case, current device
    python benchmarks/bench_track.py --cases=memory --lengths=200,1200

Cases (each measurement runs in a fresh process, so "peak" is that process's maximum
resident memory on CPU, or the peak of allocated GPU memory on CUDA; weights are random,
which changes neither time nor memory):
- queries: time of N points on frame 0 against the same N points spread over several
  query frames (forward and backward passes over shared features);
- memory: peak memory of a one-pass frame stream (a generator) with one query on its last
  frame, for several video lengths;
- dense: peak memory of a grid of N points on frame 0, for several N;
- online: ``TrackStream`` throughput (frames/s) and the time a frame takes to become final;
- confidence: the time of tracking with confidence off, with appearance and peak only
  (``consistency=False``) and with every signal (the forward-backward check too), the
  three in turn (in a rotated order) in each of --repeats processes after a warm-up run,
  the fastest of each kept (wall clock, and CPU time of the process, which other
  processes on a shared machine disturb less; on the CPU with one thread).
"""

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils import cli  # noqa: E402
from utils.checks import check_count  # noqa: E402
from utils.distributed import default_device  # noqa: E402


def textured_frames(T, H, W, seed=0):
    """A one-pass generator of T,H,W,3 uint8 frames: a random texture drifting right."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (H, W + T, 3), dtype=np.uint8)
    for t in range(T):
        yield np.ascontiguousarray(base[:, t:t + W])


def build_model(device):
    from nets.pips2 import Pips

    torch.manual_seed(0)
    return Pips().to(device).eval()


def peak_gb(device):
    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def run_queries(device, T, H, W, N, query_frames, S, iters):
    """Seconds to track N points from frame 0, and from ``query_frames`` distinct frames."""
    from tracking import BENCHMARK, track_points

    model = build_model(device)
    video = np.stack(list(textured_frames(T, H, W)))
    rng = np.random.default_rng(0)
    xy = np.stack([rng.uniform(0, W - 1, N), rng.uniform(0, H - 1, N)], axis=1)
    spread = np.linspace(0, T - 1, query_frames).round()[np.arange(N) % query_frames]
    out = {}
    options = BENCHMARK.replace(S=S, iters=iters, image_size=None)
    for name, t in [('frame0_s', np.zeros(N)), (f'{query_frames}_frames_s', spread)]:
        start = time.perf_counter()
        track_points(model, video, np.concatenate([t[:, None], xy], axis=1), options)
        out[name] = time.perf_counter() - start
    return out


def run_memory(device, T, H, W, N, S, iters):
    """Peak memory of a one-pass stream of T frames with N queries on the last frame."""
    from tracking import BENCHMARK, track_points

    model = build_model(device)
    rng = np.random.default_rng(0)
    queries = np.stack([np.full(N, T - 1), rng.uniform(0, W - 1, N), rng.uniform(0, H - 1, N)], axis=1)
    start = time.perf_counter()
    track_points(model, textured_frames(T, H, W), queries, BENCHMARK.replace(S=S, iters=iters, image_size=None))
    return {'seconds': time.perf_counter() - start}


def run_dense(device, T, H, W, N, S, iters):
    """Peak memory of about N frame-0 points on a regular grid."""
    from tracking import BENCHMARK, track_points
    from tracking.queries import stride_grid_queries

    model = build_model(device)
    stride = max(1, int(np.sqrt(H * W / N)))
    queries = stride_grid_queries(H, W, stride)
    start = time.perf_counter()
    track_points(model, textured_frames(T, H, W), queries, BENCHMARK.replace(S=S, iters=iters, image_size=None))
    return {'points': len(queries), 'seconds': time.perf_counter() - start}


def run_online(device, T, H, W, N, S, iters):
    """Frames/s of a TrackStream, and the delay between a frame's push and its emission."""
    from tracking import INTERACTIVE, TrackStream

    model = build_model(device)
    rng = np.random.default_rng(0)
    queries = np.stack([np.zeros(N), rng.uniform(0, W - 1, N), rng.uniform(0, H - 1, N)], axis=1)
    stream = TrackStream(model, queries, INTERACTIVE.replace(S=S, iters=iters, image_size=None), backward=False)
    pushed, delays, frame_delays = {}, [], []
    start = time.perf_counter()
    for t, frame in enumerate(textured_frames(T, H, W)):
        pushed[t] = time.perf_counter()
        for done, _ in stream.push(frame):
            delays.append(time.perf_counter() - pushed[done])
            frame_delays.append(t - done)
    stream.finish()
    seconds = time.perf_counter() - start
    return {'frames_per_s': T / seconds, 'mean_delay_s': float(np.mean(delays)),
            'max_delay_s': float(np.max(delays)), 'max_delay_frames': int(np.max(frame_delays))}


def run_confidence(device, T, H, W, N, S, iters, rotate=0):
    """Wall and CPU seconds of N frame-0 points with confidence off, light and full, in turn
    (the order rotated ``rotate`` times), after a warm-up run."""
    from tracking import INTERACTIVE, track_points

    if device == 'cpu':
        torch.set_num_threads(1)  # idle threads spin, and their CPU time would count
    model = build_model(device)
    video = np.stack(list(textured_frames(T, H, W)))
    rng = np.random.default_rng(0)
    queries = np.stack([np.zeros(N), rng.uniform(0, W - 1, N), rng.uniform(0, H - 1, N)], axis=1)
    options = INTERACTIVE.replace(S=S, iters=iters, image_size=None)
    track_points(model, video[:S + 1], queries[:4], options)  # first calls allocate and initialise
    modes = [('off', options.replace(confidence=False)), ('light', options.replace(consistency=False)),
             ('full', options)]
    out = {}
    for mode, mode_options in modes[rotate:] + modes[:rotate]:
        start, start_cpu = time.perf_counter(), time.process_time()
        track_points(model, video, queries, mode_options)
        if device.startswith('cuda'):
            torch.cuda.synchronize()
        out[f'{mode}_s'], out[f'{mode}_cpu_s'] = time.perf_counter() - start, time.process_time() - start_cpu
    return out


CASES = {'queries': run_queries, 'memory': run_memory, 'dense': run_dense, 'online': run_online,
         'confidence': run_confidence}


def measure(case, device, **kwargs):
    """Run one measurement in this process and print it as a JSON line."""
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    result = CASES[case](device, **kwargs)
    result['peak_gb'] = peak_gb(device)
    print(json.dumps(result))


def in_subprocess(case, device, **kwargs):
    args = [f'--{key}={value}' for key, value in kwargs.items()]
    cmd = [sys.executable, os.path.abspath(__file__), '--child', f'--cases={case}', f'--device={device}', *args]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f'{case} failed:\n{out.stderr}')
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(cases='queries,memory,dense,online,confidence', device=None, lengths=(200, 1200),
         dense_points=(1000, 4000, 16000), size=(128, 160), S=8, iters=4, repeats=3, child=False, **kwargs):
    """Print the figures of each case (see the module docstring)."""
    device = default_device(device)
    repeats = check_count('--repeats', repeats, minimum=1)
    cases = cases.split(',') if isinstance(cases, str) else list(cases)
    if child:
        return measure(cases[0], device, S=S, iters=iters, **kwargs)
    H, W = size
    print(f'device: {device}, frames {H}x{W}, S={S}, iters={iters} (1 for the memory figures)')
    if 'queries' in cases:
        r = in_subprocess('queries', device, T=40, H=256, W=256, N=40, query_frames=8, S=S, iters=iters)
        print(f'queries: 40 points, 40 frames at 256x256: frame 0 {r["frame0_s"]:.1f} s, on 8 frames '
              f'{r["8_frames_s"]:.1f} s ({r["8_frames_s"] / r["frame0_s"]:.2f}x)')
    if 'memory' in cases:
        peaks = []
        for T in lengths:
            r = in_subprocess('memory', device, T=T, H=H, W=W, N=40, S=S, iters=1)  # memory does not need iters
            peaks.append(r['peak_gb'])
            print(f'memory: one-pass stream, query on the last of {T} frames: peak {r["peak_gb"] * 1e3:.0f} MB '
                  f'({r["seconds"]:.1f} s)')
        print(f'memory: growth from {lengths[0]} to {lengths[-1]} frames: {(peaks[-1] - peaks[0]) * 1e3:.0f} MB')
    if 'dense' in cases:
        for N in dense_points:
            r = in_subprocess('dense', device, T=2 * S, H=H, W=W, N=N, S=S, iters=1)
            print(f'dense: {r["points"]} points, {2 * S} frames: peak {r["peak_gb"] * 1e3:.0f} MB '
                  f'({r["seconds"]:.1f} s)')
    if 'online' in cases:
        r = in_subprocess('online', device, T=4 * S + 1, H=H, W=W, N=256, S=S, iters=iters)
        print(f'online: 256 points: {r["frames_per_s"]:.1f} frames/s; a frame is final {r["mean_delay_s"]:.2f} s '
              f'after its push on average (max {r["max_delay_s"]:.2f} s, {r["max_delay_frames"]} frames)')
    if 'confidence' in cases:  # the interactive preset's 16 iterations (the check's share depends on them)
        runs = [in_subprocess('confidence', device, T=2 * 16 + 1, H=256, W=256, N=64, S=16, iters=16, rotate=k % 3)
                for k in range(repeats)]
        r = {key: min(run[key] for run in runs) for key in runs[0]}
        for clock, suffix in (('wall', '_s'), ('CPU', '_cpu_s')):
            off = r[f'off{suffix}']
            print(f'confidence ({clock} time, fastest of {repeats}): 64 points, 33 frames at 256x256, S=16, '
                  f'16 iterations: off {off:.1f} s, appearance + peak {r[f"light{suffix}"]:.1f} s '
                  f'({r[f"light{suffix}"] / off:.2f}x), every signal {r[f"full{suffix}"]:.1f} s '
                  f'({r[f"full{suffix}"] / off:.2f}x)')


if __name__ == '__main__':
    cli.run(main)
