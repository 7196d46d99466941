"""Export augmented PointOdyssey training clips as small mp4s + tracks, for train.py.

    python export_mp4_dataset.py --dataset_location=/data/pointodyssey   # in as many shells as you like

Writes ``<out_dir>/<mod>_<S>_<N>_<H>x<W>/<step:06d>/rgb.mp4`` (frames through JPEG q75,
then H.264 yuv420p crf 20 at 24 fps) and ``track.npz`` (``track_g`` S,N,4: x, y,
visible, valid). Any number of processes, on one machine or several sharing the folder,
can run at once: each clip is claimed with an exclusive lock file, written into a
temporary folder and renamed into place, so no clip is half-written or written twice.
A killed run's claim is taken over by a later run (at once on the same machine, after
--lock_timeout seconds from another machine), so rerunning completes the set.
"""

import os
import shutil
import socket
import sys
import time

import cv2
import numpy as np
from fire import Fire

from datasets.pointodysseydataset import PointOdysseyDataset
from utils.video import write_mp4

HOST = socket.gethostname()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_is_stale(lock_path, lock_timeout):
    """A lock whose owner died (same host) or that is older than lock_timeout (any host)."""
    try:
        host, pid, _ = open(lock_path).read().split()
        age = time.time() - os.path.getmtime(lock_path)
    except (OSError, ValueError):
        return True  # vanished or half-written: let the claim be retried
    if host == HOST:
        return not pid_alive(int(pid))
    return age > lock_timeout


def claim(lock_path, lock_timeout):
    """Create the lock file exclusively; take over a stale one. True if this process owns it."""
    for _ in range(2):
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if not lock_is_stale(lock_path, lock_timeout):
                return False
            try:
                os.remove(lock_path)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, 'w') as f:
            f.write(f'{HOST} {os.getpid()} {time.time():.0f}\n')
        return True
    return False


def remove_dead_temporaries(out_dir):
    """Temporary folders left by killed processes of this host."""
    for name in os.listdir(out_dir):
        if name.startswith('.tmp_'):
            _, _, host, pid = name.split('_', 3)
            if host == HOST and not pid_alive(int(pid)):
                shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)


def jpeg_roundtrip(frame, quality=75):
    """H,W,3 RGB through JPEG at ``quality`` (the original stores frames this way first)."""
    ok, data = cv2.imencode('.jpg', frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1]


def write_clip(out_dir, step, sample):
    """Write one clip into a temporary folder and rename it into place."""
    tmp_dir = os.path.join(out_dir, f'.tmp_{step:06d}_{HOST}_{os.getpid()}')
    os.makedirs(tmp_dir, exist_ok=True)
    frames = sample['rgbs'].permute(0, 2, 3, 1).numpy()
    write_mp4(os.path.join(tmp_dir, 'rgb.mp4'), (jpeg_roundtrip(f) for f in frames), fps=24, crf=20)
    track_g = np.concatenate([sample['trajs'].numpy(), sample['visibs'].numpy()[..., None],
                              sample['valids'].numpy()[..., None]], axis=-1).astype(np.float32)  # S,N,4
    np.savez(os.path.join(tmp_dir, 'track.npz'), track_g=track_g)
    os.rename(tmp_dir, os.path.join(out_dir, f'{step:06d}'))


def main(dset='train', S=36, N=128, crop_size=(384, 512), use_augs=True, dataset_location='./pointodyssey',
         out_dir='./pod_export', mod='ae', max_iters=0, lock_timeout=3600, seed=None, quick=False):
    """The original's arguments, plus --out_dir (the export root), --mod (the version
    prefix), --lock_timeout (seconds before another machine's claim counts as dead),
    --seed (the order of clips; default random per process)."""
    crop_size = tuple(int(c) for c in crop_size)
    if crop_size[0] % 64 or crop_size[1] % 64:
        sys.exit(f'error: crop_size {crop_size} must be multiples of 64')
    version = '%s_%d_%d_%dx%d' % (mod, S, N, crop_size[0], crop_size[1])
    export_dir = os.path.join(out_dir, version)
    os.makedirs(export_dir, exist_ok=True)
    remove_dead_temporaries(export_dir)
    dataset = PointOdysseyDataset(dataset_location, dset=dset, use_augs=use_augs, S=S, N=N, crop_size=crop_size,
                                  resize_size=(crop_size[0] + 64, crop_size[1] + 64), quick=quick)
    if len(dataset) == 0:
        sys.exit(f'error: no clips of {S} frames in {os.path.join(dataset_location, dset)}')
    order = np.random.default_rng(seed).permutation(len(dataset))
    if max_iters:
        order = order[:max_iters]
    print('exporting to', export_dir)
    written = 0
    for count, step in enumerate(order, start=1):
        start = time.time()
        clip_dir = os.path.join(export_dir, f'{step:06d}')
        skip_marker = os.path.join(export_dir, f'.{step:06d}.skipped')
        if os.path.exists(clip_dir) or os.path.exists(skip_marker):
            print(':', end='', flush=True)
            continue
        lock_path = os.path.join(export_dir, f'.{step:06d}.lock')
        if not claim(lock_path, lock_timeout):
            print(':', end='', flush=True)
            continue
        try:
            if os.path.exists(clip_dir) or os.path.exists(skip_marker):
                continue  # finished by another process between our check and our claim
            sample, gotit = dataset[step]
            valid_fraction = float(sample['valids'].mean()) if gotit else 0.0
            if not gotit or valid_fraction < 0.5:
                reason = 'too few tracks' if not gotit else f'only {valid_fraction:.0%} of track entries valid'
                print(f'x (clip {step:06d}: {reason})', flush=True)
                open(skip_marker, 'w').close()
                continue
            write_clip(export_dir, step, sample)
            written += 1
        finally:
            os.remove(lock_path)
        print('%s; step %06d/%d; this_step %06d; itime %.2f' % (
            version, count, len(order), step, time.time() - start), flush=True)
    print(f'done: wrote {written} clips into {export_dir}')


if __name__ == '__main__':
    Fire(main)
