"""Exporting augmented PointOdyssey training clips as small mp4s with their tracks.

Each clip goes to ``<export_dir>/<step:06d>/``: ``rgb.mp4`` (frames through JPEG quality
75, then H.264 yuv420p crf 20 at 24 fps) and ``track.npz`` with ``track_g`` S,N,4 float32
(x, y, visible, valid). A clip the loader refuses, or whose valid entries are under half
of S x N, is recorded as ``.<step>.skipped`` (delete those files to retry).

Any number of processes, on one machine or on several sharing the folder, may export at
once: a step is claimed with a lock file (``utils.claims``), written into a temporary
folder and renamed into place in one step, so a clip is never half-written or written
twice, and the leftovers of killed processes are swept by the next run.

One bad file does not stop an export: a clip whose frames, masks or annotations cannot be
read, or that cannot be written (a full disk), is reported on its step line with the file
and the problem, counted, and left for the next run to retry; the others go on. The run
then ends with ``ExportIncomplete`` (exit status 1) after its summary, so a script or a
scheduler sees that the set is not complete.
"""

import os
import time

import av
import cv2
import numpy as np

from datasets.pointodysseydataset import ClipRefused
from utils.checks import check_count, check_flag, check_positive, check_size
from utils.claims import claim, release, sweep_stale_locks
from utils.errors import PipsError
from utils.files import check_writable, remove, sweep_temporaries, temporary_name
from utils.video import write_mp4

JPEG_QUALITY = 75
FPS = 24
CRF = 20


CROP_MULTIPLE = 64  # the original's rule for export crops


class ExportIncomplete(PipsError):
    """Some clips failed (each was reported with its reason); a rerun retries them."""


def check_arguments(*, S, N, crop_size, max_iters, log_freq, stale_lock_s, seed, use_augs, quick):
    """Raise SettingsError naming the first value that cannot work; returns crop_size as (H, W)."""
    check_count('--S', S, minimum=2)
    check_count('--N', N, minimum=1)
    check_count('--max_iters', max_iters, minimum=0)
    check_count('--log_freq', log_freq, minimum=0)
    check_positive('--stale_lock_s', stale_lock_s)
    check_flag('--use_augs', use_augs)
    check_flag('--quick', quick)
    if seed is not None:
        check_count('--seed', seed, minimum=0)
    return check_size('--crop_size', crop_size, minimum=CROP_MULTIPLE, multiple=CROP_MULTIPLE)


def prepare_export_dir(export_dir, stale_seconds):
    """Create the export folder, check that it takes files, and remove the locks, temporary
    folders and broken-lock files of processes that died."""
    check_writable(export_dir, '--out_dir')
    sweep_stale_locks(export_dir, stale_seconds)
    sweep_temporaries(export_dir, stale_seconds)


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
    tmp_dir = temporary_name(clip_dir)
    remove(tmp_dir)
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
        remove(tmp_dir)


def record_skip(export_dir, step, reason):
    """Mark a step as skipped (so later runs do not retry it), with the reason inside."""
    with open(os.path.join(export_dir, f'.{step:06d}.skipped'), 'w') as f:
        f.write(reason + '\n')


def export_step(dataset, export_dir, step, stale_seconds):
    """Export one step: ('written' | 'skipped: <reason>' | 'failed: <error>' | 'elsewhere',
    the sample or None)."""
    clip_dir = os.path.join(export_dir, f'{step:06d}')
    skip_path = os.path.join(export_dir, f'.{step:06d}.skipped')
    lock_path = os.path.join(export_dir, f'.{step:06d}.lock')
    if os.path.exists(clip_dir) or os.path.exists(skip_path):
        return 'elsewhere', None
    try:  # the claim inside: a stop signal raised as the claim ends still releases it
        if not claim(lock_path, stale_seconds):
            return 'elsewhere', None
        if os.path.exists(clip_dir) or os.path.exists(skip_path):  # finished just before our claim
            return 'elsewhere', None
        try:
            sample = dataset.load_clip(step % len(dataset))
        except ClipRefused as refusal:
            record_skip(export_dir, step, str(refusal))
            return f'skipped: {refusal}', None
        except (PipsError, OSError) as exc:  # an unreadable frame, mask or annotation file; a rerun retries
            return f'failed: {exc}', None
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


def log_clip(writer, step, log_freq, sample):
    """Every log_freq-th step: the clip's tracks over its mean frame, in tensorboard (the
    drawing code is imported only when logging is on)."""
    from utils.vis import Summ_writer, preprocess_color
    sw = Summ_writer(writer=writer, global_step=step, log_freq=log_freq, fps=4, just_gif=True)
    if sw.save_this:
        mean_frame = preprocess_color(sample['rgbs'].float().mean(dim=0, keepdim=True))  # 1,3,H,W
        sw.summ_traj2ds_on_rgb('0_inputs/trajs_on_rgbs', sample['trajs'][None], mean_frame,
                               valids=sample['valids'][None], cmap='winter', linewidth=2)


def export_clips(dataset, export_dir, *, max_iters=0, seed=None, stale_seconds=600, name='', writer=None,
                 log_freq=0):
    """Export the first ``max_iters`` steps of ``dataset`` (0: all) in a random order (``seed``),
    printing a step line per clip and a summary; returns the counts of 'written', 'skipped',
    'failed' and 'elsewhere' (done or taken by another process). Raises ExportIncomplete
    after the summary if any clip failed; on Ctrl-C or SIGTERM, KeyboardInterrupt saying how
    to finish."""
    max_iters = max_iters or len(dataset)
    order = np.random.default_rng(seed).permutation(max_iters)
    counts = {'written': 0, 'skipped': 0, 'failed': 0, 'elsewhere': 0}
    try:
        for global_step, this_step in enumerate(order, start=1):
            export_one(dataset, export_dir, int(this_step), counts, stale_seconds=stale_seconds,
                       line='%s; step %06d/%d; this_step %06d' % (name, global_step, max_iters, this_step),
                       writer=writer, log_freq=log_freq)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f'{counts["written"]} clips written by this run, none half-written; run the same '
                                'command again to finish the set') from None
    print('\ndone: {written} written, {skipped} skipped, {failed} failed, {elsewhere} already there or taken '
          'by another process; in {dir}'.format(dir=export_dir, **counts))
    check_complete(counts['failed'], max_iters, getattr(dataset, 'unreadable', []))
    return counts


def check_complete(failed, total, unreadable):
    """ExportIncomplete if clips failed or sequences were left out for an unreadable file."""
    problems = []
    if failed:
        problems.append(f'{failed} of {total} clips failed (the "failed:" lines above name the file and the problem)')
    if unreadable:
        problems.append(f'{len(unreadable)} sequence(s) were left out for an unreadable file ({unreadable[0]}'
                        + (', ...)' if len(unreadable) > 1 else ')'))
    if problems:
        raise ExportIncomplete('; '.join(problems) + '; fix them and run the same command again to export the rest')


def export_one(dataset, export_dir, step, counts, *, stale_seconds, line, writer, log_freq):
    """Export one step, count it and print its line."""
    start = time.time()
    status, sample = export_step(dataset, export_dir, step, stale_seconds)
    counts[status.split(':')[0]] += 1
    if status == 'elsewhere':
        print(':', end='', flush=True)
    elif status == 'written':
        print('%s; itime %.2f' % (line, time.time() - start), flush=True)
        if writer is not None:
            log_clip(writer, step, log_freq, sample)
    else:
        print(f'{line}; {status}', flush=True)
