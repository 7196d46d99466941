"""Training speed: steps per second and the share of time spent waiting on data.

    python benchmarks/bench_train.py                       # the reference recipe: B=4, S=36, 256x384
    python benchmarks/bench_train.py --B=1 --S=8 --crop_size=128,128 --steps=5   # a quick CPU look
    python benchmarks/bench_train.py --B=2 --S=8 --crop_size=128,160 --export_size=128,160 --amp=fp32,bf16 --device=cpu

Builds a synthetic PointOdyssey-layout dataset at 540x960 in a temporary folder, exports
a few clips at 384x512 (S=36) with export_mp4_dataset.py, runs train.py on them for
--steps steps, and prints the mean step time, steps/s and rtime/itime (data wait over
step time), leaving out the first --warmup steps. ``--amp`` takes one precision or a
list ('fp32' is autocast off): each runs in turn on the same clips, --rounds times (the
fastest round counts, so that a machine shared with other jobs slows them alike), and
with more than one the step-time ratios to the first are printed.
"""

import os
import re
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from utils import cli  # noqa: E402


def main(B=4, S=36, crop_size=(256, 384), iters=6, steps=20, warmup=3, clips=8, num_workers=6, device=None,
         amp='', export_size=(384, 512), rounds=1):
    from datasets.export import export_clips
    from datasets.pointodysseydataset import PointOdysseyClips
    from tests.fixtures.pointodyssey import write_dataset
    from training.config import AMP_CHOICES
    from utils.checks import check_choice, check_count

    amps = [check_choice('--amp', a or 'fp32', AMP_CHOICES) for a in ([amp] if isinstance(amp, str) else amp)]
    rounds = check_count('--rounds', rounds, minimum=1)
    with tempfile.TemporaryDirectory() as tmp:
        write_dataset(os.path.join(tmp, 'pod'), dset='train', n_seqs=1, T=S + 2 * clips, H=540, W=960, N=2000)
        version = 'ae_%d_128_%dx%d' % (S, export_size[0], export_size[1])
        dataset = PointOdysseyClips(os.path.join(tmp, 'pod'), use_augs=True, S=S, N=128, crop_size=tuple(export_size),
                                    seed=0)
        os.makedirs(os.path.join(tmp, 'export', version))
        export_clips(dataset, os.path.join(tmp, 'export', version), max_iters=clips, seed=0)
        args = [f'--dataset_location={tmp}/export', f'--dataset_version={version}', f'--B={B}', f'--S={S}',
                f'--crop_size={crop_size[0]},{crop_size[1]}', f'--iters={iters}', f'--max_iters={steps}',
                '--val_freq=0', '--save_freq=100000', '--log_freq=100000', f'--num_workers={num_workers}',
                f'--ckpt_dir={tmp}/ckpt', f'--log_dir={tmp}/logs']
        if device:
            args.append(f'--device={device}')
        print(f'B={B} S={S} crop={crop_size[0]}x{crop_size[1]} iters={iters} device={device or "auto"} '
              f'workers={num_workers}')
        rounds_times = [[time_steps(args + [f'--amp={a}'], a, warmup) for a in amps]
                        for _ in range(rounds)]
    step_times = np.min(rounds_times, axis=0)
    for a, step_time in zip(amps, step_times):
        print(f'amp={a}: {step_time:.3f} s/step (fastest of {rounds} rounds), '
              f'{step_times[0] / step_time:.2f}x the steps/s of amp={amps[0]}')


def time_steps(args, label, warmup):
    """Run train.py with ``args``; print and return its mean step time after ``warmup`` steps."""
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'train.py'), *args], cwd=ROOT,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    times = np.array([(float(r), float(i)) for r, i in re.findall(r'rtime (\S+); itime (\S+);', out.stdout)])
    times = times[warmup:]
    read, total = times[:, 0].mean(), times[:, 1].mean()
    print(f'amp={label}: {len(times)} steps: {total:.3f} s/step, {1 / total:.2f} steps/s, '
          f'data wait {read:.3f} s/step = {100 * read / total:.1f}% of the step (rtime/itime)', flush=True)
    return total


if __name__ == '__main__':
    cli.run(main)
