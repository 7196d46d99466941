"""Does training learn? Train PIPs++ from scratch on procedural sequences, score it on held-out ones.

    python benchmarks/bench_learning.py --out_dir=./bench_learning              # the 2-core CPU recipe (about an hour)
    python benchmarks/bench_learning.py --device=cuda --steps=20000 --B=8 --evals=20

1. Makes a training set (``<out_dir>/data/train``, --train_seqs sequences from --seed) and a
   held-out set (``<out_dir>/data/test``, --heldout_seqs sequences of --heldout_T frames from
   --heldout_seed) with ``datasets.synthetic``; sets already there are reused.
2. Scores, on the held-out set, the zero-motion baseline (every point left at its frame-0
   position) and the untrained model (random weights drawn from --seed), with
   test_on_pod.py's protocol (``evaluation.benchmarks.evaluate_pod``: --eval_N tracks per
   sequence queried at frame 0 and tracked to the end in windows of --eval_S frames with
   --eval_iters iterations, the BENCHMARK schedule, at the frames' own size).
3. Trains from scratch with train.py's loop (``training.run``) on clips cut from the raw
   training sequences and augmented at every step (``training.raw_samples``), for --steps
   steps with the one-cycle schedule sized to them (without --steps: for --minutes of
   training, the steps sized from the time of a few timed steps), and scores each of --evals checkpoints on the
   held-out set as it goes.
4. Writes ``<out_dir>/learning.json`` (settings, machine, load averages, baselines, the
   curve: step, minutes since the start, d_avg, survival, median_l2 and the other paper
   metrics; the minute each baseline was passed) and ``<out_dir>/learning.png`` (held-out
   d_avg against steps and against minutes, with the baselines), and prints a summary.

Every evaluation's per-video results are in ``<out_dir>/evals/``; the checkpoints in
``<out_dir>/checkpoints/<run name>/`` (every --evals-th, the last --keep_latest kept).
"""

import dataclasses
import json
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import training  # noqa: E402
from datasets import synthetic  # noqa: E402
from evaluation.benchmarks import RunSettings, evaluate_pod  # noqa: E402
from tracking import BENCHMARK  # noqa: E402
from utils import cli  # noqa: E402
from utils.checks import check_count, check_positive  # noqa: E402
from utils.errors import SettingsError  # noqa: E402

TIMED_STEPS = 3  # steps timed (after one warm-up step) to size a --minutes budget
CURVE_METRICS = ('d_avg', 'survival', 'median_l2')


class Clock:
    """Minutes since the benchmark started: wall-clock, and CPU time of this process (which
    other jobs on a shared machine slow much less); the seconds spent evaluating."""

    def __init__(self):
        self.start = time.time()
        self.cpu_start = time.process_time()
        self.eval_seconds = 0.0

    def minutes(self):
        return (time.time() - self.start) / 60

    def cpu_minutes(self):
        return (time.process_time() - self.cpu_start) / 60


def load_averages():
    """The 1, 5 and 15 minute load averages (as ``uptime`` prints them), or None."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine(device):
    """What the benchmark ran on: the CPU's model name, cores, torch threads, the GPU."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    info = dict(cpu=cpu, cores=os.cpu_count(), torch_threads=torch.get_num_threads(), device=device,
                torch=torch.__version__)
    if device.startswith('cuda'):
        info['gpu'] = torch.cuda.get_device_name(device)
    return info


def make_sets(data_dir, *, train_seqs, heldout_seqs, T, heldout_T, H, W, N, seed, heldout_seed, motion_blur):
    """Write (or find) the training and held-out sets; returns the seconds it took."""
    start = time.time()
    for dset, n_seqs, set_seed, frames in (('train', train_seqs, seed, T),
                                           ('test', heldout_seqs, heldout_seed, heldout_T)):
        outcomes = [outcome for _, outcome in synthetic.make_sequences(
            data_dir, dset=dset, n_seqs=n_seqs, seed=set_seed, T=frames, H=H, W=W, N=N, motion_blur=motion_blur)]
        print(f'{dset}: {outcomes.count("written")} sequences written, {outcomes.count("present")} already there',
              flush=True)
    return time.time() - start


class HeldOut:
    """Scores checkpoints on the held-out set with test_on_pod.py's protocol, keeping the curve."""

    def __init__(self, *, data_dir, out_dir, options, N, device, clock):
        self.data_dir, self.out_dir, self.options, self.N = data_dir, out_dir, options, N
        self.device, self.clock = device, clock
        self.curve = []

    def evaluate(self, name, init_dir='', zero_motion=False):
        """The means of one evaluation (its per-video results in <out_dir>/evals/<name>.json)."""
        start = time.time()
        run = RunSettings(init_dir=init_dir, device=self.device, log_dir=os.path.join(self.out_dir, 'logs'),
                          out_json=os.path.join(self.out_dir, 'evals', f'{name}.json'), overwrite=True)
        means = evaluate_pod(dataset_location=self.data_dir, dset='test', N=self.N, options=self.options, run=run,
                             zero_motion=zero_motion)
        self.clock.eval_seconds += time.time() - start
        return means

    def checkpoint(self, step, folder):
        """``training.run``'s on_save: score the checkpoint of ``step`` just written in ``folder``."""
        minutes, cpu_minutes = self.clock.minutes(), self.clock.cpu_minutes()  # when this model was there
        means = self.evaluate('step_%06d' % step, init_dir=folder)
        self.curve.append(dict(step=step, minutes=round(minutes, 3), cpu_minutes=round(cpu_minutes, 3),
                               load=load_averages(), **means))
        print(f'held-out at step {step} ({minutes:.1f} min): ' + ', '.join(
            f'{key} {means[key]:.2f}' for key in CURVE_METRICS), flush=True)


def train_config(args, *, steps, ckpt_dir, log_dir, save_freq):
    """The training Config of the benchmark's arguments."""
    return training.Config.from_args(
        args, stride=8, shuffle=True, cache_len=0, cache_freq=0, n_pool=100, quick=False, grad_acc=1,
        use_scheduler=True, max_iters=steps, log_dir=log_dir, log_freq=max(steps // 10, 1), val_freq=0,
        ckpt_dir=ckpt_dir, save_freq=save_freq, init_dir='', load_optimizer=True, load_step=True,
        ignore_load=None, exp_name='learn')


def timed_steps(cfg, samples):
    """Seconds per training step of ``cfg``, from TIMED_STEPS steps after one warm-up step
    (a throwaway model; nothing is saved)."""
    trainer = training.Trainer(cfg, samples)
    trainer.model.train()
    trainer.train_step(1, None)
    start = time.time()
    for step in range(TIMED_STEPS):
        trainer.train_step(step + 2, None)
    return (time.time() - start) / TIMED_STEPS


def crossing_minutes(curve, level, key='d_avg'):
    """The minute of the first evaluation above ``level`` (None if none was)."""
    return next((point['minutes'] for point in curve if point[key] > level), None)


def plot_curve(path, curve, baselines):
    """learning.png: held-out d_avg against steps and against minutes, with the baselines."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, x_key, label in zip(axes, ('step', 'minutes'), ('training step', 'minutes since the start')):
        ax.plot([p[x_key] for p in curve], [p['d_avg'] for p in curve], 'o-', color='tab:blue', label='trained')
        for (name, means), style in zip(baselines.items(), ('--', ':')):
            ax.axhline(means['d_avg'], linestyle=style, color='gray', label=name.replace('_', ' '))
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel('held-out d_avg')
    axes[0].legend(loc='best')
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def summary_line(name, means):
    return f'{name:>12}: ' + ', '.join(f'{key} {means[key]:6.2f}' for key in CURVE_METRICS)


def main(out_dir='./bench_learning', train_seqs=200, heldout_seqs=8, T=40, heldout_T=40, H=128, W=160, track_N=600,
         seed=0, heldout_seed=1, motion_blur=False, steps=0, minutes=45.0, evals=5, B=2, S=8, N=64, iters=3,
         crop_size=(128, 160), use_augs=True, lr=5e-4, clip_grad=5.0, amp='bf16', num_workers=1, device=None,
         eval_S=8, eval_iters=6, eval_N=64, keep_latest=1, threads=0):
    """See the module docstring. --H, --W: frame size of both sets (the held-out set is
    scored at this size); --track_N: tracks per generated sequence; --B, --S, --N, --iters,
    --crop_size, --use_augs, --lr, --clip_grad, --amp, --num_workers: training as in
    finetune_highres.py; --steps, or (--steps=0) --minutes of training;
    --evals: checkpoints scored along the way (the last at the final step); --threads: torch
    threads (0: torch's default, one per core; 1 is faster on a machine other jobs keep busy)."""
    settings = {key: list(value) if isinstance(value, tuple) else value for key, value in locals().items()}
    clock = Clock()
    threads = check_count('--threads', threads)
    if threads:
        torch.set_num_threads(threads)
    evals, steps = check_count('--evals', evals, minimum=1), check_count('--steps', steps)
    if steps and steps < evals:
        raise SettingsError(f'--steps ({steps}) must be at least --evals ({evals})')
    if not steps:
        minutes = check_positive('--minutes (of training, without --steps)', minutes)
    out_dir = str(out_dir)
    data_dir = os.path.join(out_dir, 'data')
    paths = dict(ckpt_dir=os.path.join(out_dir, 'checkpoints'), log_dir=os.path.join(out_dir, 'logs'))
    # the training settings are checked (and the process group joined) before any data is made
    cfg = training.setup(train_config(settings, steps=max(steps, TIMED_STEPS + 1), save_freq=1, **paths), {})
    try:
        generate_seconds = make_sets(data_dir, train_seqs=train_seqs, heldout_seqs=heldout_seqs, T=T,
                                     heldout_T=heldout_T, H=H, W=W, N=track_N, seed=seed, heldout_seed=heldout_seed,
                                     motion_blur=motion_blur)
        step_seconds = None
        if not steps:
            timed = dataclasses.replace(cfg, max_iters=TIMED_STEPS + 1, save_freq=TIMED_STEPS + 2)
            step_seconds = timed_steps(timed, training.raw_samples(timed, dataset_location=data_dir))
            steps = max(int(minutes * 60 / step_seconds), evals)
            print(f'{step_seconds:.2f} s per step: {steps} steps in {minutes} minutes', flush=True)
        cfg = dataclasses.replace(cfg, max_iters=steps, save_freq=-(-steps // evals), log_freq=max(steps // 10, 1))
        options = BENCHMARK.replace(S=eval_S, iters=eval_iters, image_size=(H, W))
        held_out = HeldOut(data_dir=data_dir, out_dir=out_dir, options=options, N=eval_N, device=cfg.device,
                           clock=clock)
        torch.manual_seed(seed)
        baselines = {'zero_motion': held_out.evaluate('zero_motion', zero_motion=True),
                     'untrained': held_out.evaluate('untrained')}
        load_start = load_averages()
        training.run(cfg, training.raw_samples(cfg, dataset_location=data_dir), on_save=held_out.checkpoint)
    finally:
        cfg.ranks.stop()
    report = dict(
        settings=settings, machine=machine(cfg.device), run_name=cfg.name,
        checkpoint_dir=os.path.join(cfg.ckpt_dir, cfg.name), baselines=baselines, curve=held_out.curve,
        final=held_out.curve[-1],
        crossed_minutes={name: crossing_minutes(held_out.curve, means['d_avg']) for name, means in baselines.items()},
        seconds=dict(generate=round(generate_seconds, 1), evaluate=round(clock.eval_seconds, 1),
                     total=round(time.time() - clock.start, 1), cpu_total=round(clock.cpu_minutes() * 60, 1),
                     per_step_timed=step_seconds),
        load_averages=dict(start=load_start, end=load_averages()))
    write_report(out_dir, report, baselines)


def write_report(out_dir, report, baselines):
    """learning.json and learning.png in ``out_dir``, and the summary lines."""
    json_path, png_path = os.path.join(out_dir, 'learning.json'), os.path.join(out_dir, 'learning.png')
    with open(json_path, 'w') as f:
        json.dump(report, f, indent=1)
    plot_curve(png_path, report['curve'], baselines)
    print(summary_line('trained', report['final']))
    for name, means in baselines.items():
        print(summary_line(name, means))
    print(f'{report["seconds"]["total"] / 60:.1f} minutes in all; wrote {json_path} and {png_path}')


if __name__ == '__main__':
    cli.run(main)
