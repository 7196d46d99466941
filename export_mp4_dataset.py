"""Export augmented PointOdyssey training clips as small mp4s with their tracks, for train.py.

    python export_mp4_dataset.py --dataset_location=/data/pointodyssey   # in as many shells as you like

Each clip goes to ``<out_dir>/<mod>_<S>_<N>_<H>x<W>/<step:06d>/``: ``rgb.mp4`` (frames
through JPEG quality 75, then H.264 yuv420p crf 20 at 24 fps) and ``track.npz`` with
``track_g`` S,N,4 float32 (x, y, visible, valid). Steps are visited in a random order, so
parallel runs spread out. A clip the loader refuses, or whose valid entries are under half
of S x N, is skipped and recorded as ``.<step>.skipped`` (delete those files to retry).

Any number of processes, on one machine or on several sharing the folder, may run at once:
a step is claimed with an exclusive lock file (``.<step>.lock``, O_CREAT|O_EXCL, holding
host, pid and process start time), written into a temporary folder and renamed into place
in one step, so a clip is never half-written or written twice. The claim of a killed
process is taken over by the next run that reaches the step (at once on the same machine,
after ``--stale_lock_s`` seconds from another machine), and its temporary folder removed,
so rerunning after a crash completes the set.
"""

import datetime
import os
import shutil
import socket
import sys
import time

import av
import cv2
import numpy as np
from fire import Fire

from datasets.pointodysseydataset import ClipRefused, PointOdysseyClips
from utils.video import write_mp4

HOST = socket.gethostname()
JPEG_QUALITY = 75
FPS = 24
CRF = 20


def process_start(pid):
    """The process's start time in clock ticks since boot ('?' without /proc), or None if
    there is no such process."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[19]
    except FileNotFoundError:
        if os.path.isdir('/proc/self'):
            return None
    try:  # no /proc (not Linux): the pid alone
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return '?'


def owner_token():
    """'host pid start-ticks' naming this process uniquely (pids get reused, start times not)."""
    return f'{HOST} {os.getpid()} {process_start(os.getpid())}'


def owner_alive(token, age, stale_lock_s):
    """Whether the process named by a lock token may still be working. On this host that is
    checked exactly; from another host (or a half-written token), only by the lock's age."""
    parts = token.split()
    if len(parts) == 3 and parts[0] == HOST:
        return process_start(parts[1]) == parts[2]
    return age < stale_lock_s


def read_lock(path):
    """(token, age in seconds) of a lock file; raises FileNotFoundError if it is gone."""
    with open(path) as f:
        token = f.read().strip()
    return token, time.time() - os.path.getmtime(path)


def break_stale_lock(lock_path, stale_lock_s):
    """Remove the lock if its owner is dead; True if the caller should try to claim again."""
    try:
        token, age = read_lock(lock_path)
    except FileNotFoundError:
        return True
    if owner_alive(token, age, stale_lock_s):
        return False
    grave = f'{lock_path}.stale.{HOST}.{os.getpid()}'
    try:
        os.rename(lock_path, grave)  # atomic: of several breakers only one gets the file
    except FileNotFoundError:
        return True
    with open(grave) as f:
        taken = f.read().strip()
    if taken != token:  # a fresh claim replaced the stale one before the rename: give it back
        try:
            os.link(grave, lock_path)
        except OSError:  # claimed again meanwhile, or no hard links here: the clip's rename stays atomic
            pass
    os.remove(grave)
    return taken == token


def claim(lock_path, stale_lock_s):
    """Create the lock exclusively (taking over a dead owner's); True if this process holds it."""
    for _ in range(3):
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not break_stale_lock(lock_path, stale_lock_s):
                return False
            continue
        with os.fdopen(fd, 'w') as f:
            f.write(owner_token() + '\n')
        return True
    return False


def release(lock_path):
    """Remove this process's lock (left alone if another process has taken it over)."""
    try:
        if read_lock(lock_path)[0] == owner_token():
            os.remove(lock_path)
    except FileNotFoundError:
        pass


def sweep_leftovers(export_dir, stale_lock_s):
    """Remove the locks, temporary folders and broken-lock files of processes that died."""
    for name in os.listdir(export_dir):
        path = os.path.join(export_dir, name)
        if not name.startswith('.'):
            continue
        if name.endswith('.lock'):
            break_stale_lock(path, stale_lock_s)
        for kind in ('.tmp.', '.lock.stale.'):
            if kind in name:
                host, _, pid = name.split(kind, 1)[1].rpartition('.')
                if host == HOST:
                    dead = process_start(pid) is None
                else:
                    dead = time.time() - os.path.getmtime(path) > stale_lock_s
                if dead and os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                elif dead:
                    os.remove(path)


def jpeg_roundtrip(frame, quality=JPEG_QUALITY):
    """An H,W,3 uint8 RGB frame after JPEG compression at ``quality``."""
    ok, data = cv2.imencode('.jpg', frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError('JPEG encoding failed')
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]


def track_array(sample):
    """track_g S,N,4 float32 (x, y, visible, valid) from a loader sample."""
    return np.concatenate([sample['trajs'].numpy(), sample['visibs'].numpy()[..., None],
                           sample['valids'].numpy()[..., None]], axis=-1).astype(np.float32)


def write_clip(clip_dir, sample):
    """Write rgb.mp4 and track.npz into a temporary folder and rename it to ``clip_dir``.
    False (and nothing written) if ``clip_dir`` appeared meanwhile."""
    tmp_dir = os.path.join(os.path.dirname(clip_dir), f'.{os.path.basename(clip_dir)}.tmp.{HOST}.{os.getpid()}')
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(tmp_dir)
    try:
        frames = sample['rgbs'].permute(0, 2, 3, 1).numpy()  # S,H,W,3
        write_mp4(os.path.join(tmp_dir, 'rgb.mp4'), (jpeg_roundtrip(f) for f in frames), fps=FPS, crf=CRF)
        np.savez_compressed(os.path.join(tmp_dir, 'track.npz'), track_g=track_array(sample))
        try:
            os.rename(tmp_dir, clip_dir)  # atomic, and refuses to replace a finished clip
        except OSError:
            if os.path.isdir(clip_dir):
                return False
            raise
        return True
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def record_skip(export_dir, step, reason):
    """Mark a step as skipped (so later runs do not retry it), with the reason inside."""
    with open(os.path.join(export_dir, f'.{step:06d}.skipped'), 'w') as f:
        f.write(reason + '\n')


def export_step(dataset, export_dir, step, stale_lock_s):
    """Export one step: ('written' | 'skipped: <reason>' | 'failed: <error>' | 'elsewhere',
    the sample or None)."""
    clip_dir = os.path.join(export_dir, f'{step:06d}')
    skip_path = os.path.join(export_dir, f'.{step:06d}.skipped')
    lock_path = os.path.join(export_dir, f'.{step:06d}.lock')
    if os.path.exists(clip_dir) or os.path.exists(skip_path) or not claim(lock_path, stale_lock_s):
        return 'elsewhere', None
    try:
        if os.path.exists(clip_dir) or os.path.exists(skip_path):  # finished just before our claim
            return 'elsewhere', None
        try:
            sample = dataset.load_clip(step % len(dataset))
        except ClipRefused as refusal:
            record_skip(export_dir, step, str(refusal))
            return f'skipped: {refusal}', None
        valid, total = int(sample['valids'].sum()), dataset.S * dataset.N
        if valid < total / 2:
            reason = f'{valid} of {total} track entries valid, need half'
            record_skip(export_dir, step, reason)
            return f'skipped: {reason}', None
        try:
            written = write_clip(clip_dir, sample)
        except (OSError, av.FFmpegError) as exc:  # e.g. disk full; a later run retries the step
            return f'failed: {exc}', None
        return ('written' if written else 'elsewhere'), sample
    finally:
        release(lock_path)


def run_name(S, use_augs, exp_name, mod):
    """The original's name for an export run, e.g. 36_A_em00_ae_110247."""
    return f'{S}{"_A" if use_augs else ""}_{exp_name}_{mod}_{datetime.datetime.now():%H%M%S}'


def log_clip(writer, step, log_freq, sample):
    """Every log_freq-th step: the clip's tracks over its mean frame, in tensorboard (the
    drawing code is imported only when logging is on)."""
    from utils.vis import Summ_writer, preprocess_color
    sw = Summ_writer(writer=writer, global_step=step, log_freq=log_freq, fps=4, just_gif=True)
    if sw.save_this:
        mean_frame = preprocess_color(sample['rgbs'].float().mean(dim=0, keepdim=True))  # 1,3,H,W
        sw.summ_traj2ds_on_rgb('0_inputs/trajs_on_rgbs', sample['trajs'][None], mean_frame,
                               valids=sample['valids'][None], cmap='winter', linewidth=2)


def main(dset='train', S=36, N=128, crop_size=(384, 512), use_augs=True, log_dir='./logs_export_mp4_dataset',
         dataset_location='./pointodyssey', max_iters=0, log_freq=100, out_dir='./pod_export', mod='ae',
         exp_name='em00', stale_lock_s=600, seed=None, quick=False):
    """Export clips (see the module docstring). The original's arguments (without the unused
    --shuffle and --device_ids; CPU only), plus: --out_dir (the export root), --mod and
    --exp_name (naming), --stale_lock_s (how old another machine's claim must be before it
    counts as dead), --seed (clip order and augmentations; default: fresh per process),
    --quick (first sequence only). --max_iters=0 exports every clip; --log_freq=0 turns
    the tensorboard visuals off."""
    crop_size = tuple(int(c) for c in crop_size)
    if crop_size[0] % 64 or crop_size[1] % 64:
        sys.exit(f'error: crop_size {crop_size} must be multiples of 64')
    name = run_name(S, use_augs, exp_name, mod)
    print('model_name', name)
    export_dir = os.path.join(out_dir, '%s_%d_%d_%dx%d' % (mod, S, N, *crop_size))
    os.makedirs(export_dir, exist_ok=True)
    sweep_leftovers(export_dir, stale_lock_s)
    dataset = PointOdysseyClips(dataset_location, dset=dset, use_augs=use_augs, S=S, N=N, crop_size=crop_size,
                                  quick=quick, seed=seed)
    if len(dataset) == 0:
        sys.exit(f'error: no clips of {S} frames in {os.path.join(dataset_location, dset)}')
    writer = None
    if log_freq:
        from tensorboardX import SummaryWriter
        writer = SummaryWriter(os.path.join(log_dir, name, 't'), max_queue=10, flush_secs=60)
    max_iters = max_iters or len(dataset)
    order = np.random.default_rng(seed).permutation(max_iters)
    print('exporting to', export_dir)
    counts = {'written': 0, 'skipped': 0, 'failed': 0, 'elsewhere': 0}
    for global_step, this_step in enumerate(order, start=1):
        start = time.time()
        status, sample = export_step(dataset, export_dir, int(this_step), stale_lock_s)
        counts[status.split(':')[0]] += 1
        if status == 'elsewhere':
            print(':', end='', flush=True)
            continue
        line = '%s; step %06d/%d; this_step %06d' % (name, global_step, max_iters, this_step)
        if status == 'written':
            print('%s; itime %.2f' % (line, time.time() - start), flush=True)
            if writer is not None:
                log_clip(writer, int(this_step), log_freq, sample)
        else:
            print(f'{line}; {status}', flush=True)
    if writer is not None:
        writer.close()
    print('\ndone: {written} written, {skipped} skipped, {failed} failed, {elsewhere} already there or taken '
          'by another process; in {dir}'.format(dir=export_dir, **counts))


if __name__ == '__main__':
    Fire(main)
