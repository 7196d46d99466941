"""Export augmented PointOdyssey training clips as small mp4s with their tracks, for train.py.

    python export_mp4_dataset.py --dataset_location=/data/pointodyssey   # in as many shells as you like

Each clip goes to ``<out_dir>/<mod>_<S>_<N>_<H>x<W>/<step:06d>/``: ``rgb.mp4`` and
``track.npz`` (``track_g`` S,N,4: x, y, visible, valid). Steps are visited in a random
order, so parallel runs spread out; any number of processes, on one machine or on several
sharing the folder, may run at once, and rerunning after a crash completes the set (see
datasets/export.py).
"""

import os

from datasets.export import check_arguments, export_clips, prepare_export_dir
from datasets.pointodysseydataset import PointOdysseyClips
from utils import cli
from utils.errors import SettingsError
from utils.files import check_writable
from utils.runs import run_name


def main(dset='train', S=36, N=128, crop_size=(384, 512), use_augs=True, log_dir='./logs_export_mp4_dataset',
         dataset_location='./pointodyssey', max_iters=0, log_freq=100, out_dir='./pod_export', mod='ae',
         exp_name='em00', stale_lock_s=600, seed=None, quick=False):
    """Export clips (see the module docstring). The original's arguments (without the unused
    --shuffle and --device_ids; CPU only), plus: --out_dir (the export root), --mod and
    --exp_name (naming), --stale_lock_s (how old another machine's claim must be before it
    counts as dead), --seed (clip order and augmentations; default: fresh per process),
    --quick (first sequence only). --max_iters=0 exports every clip; --log_freq=0 turns
    the tensorboard visuals off. A clip that fails (an unreadable file) is reported and
    the export goes on; the exit status is then 1, and the same command retries it."""
    crop_size = check_arguments(S=S, N=N, crop_size=crop_size, max_iters=max_iters, log_freq=log_freq,
                                stale_lock_s=stale_lock_s, seed=seed, use_augs=use_augs, quick=quick)
    name = run_name(f'{S}{"_A" if use_augs else ""}', exp_name, mod)
    print('model_name', name)
    export_dir = os.path.join(out_dir, '%s_%d_%d_%dx%d' % (mod, S, N, *crop_size))
    prepare_export_dir(export_dir, stale_lock_s)
    if log_freq:
        check_writable(log_dir, '--log_dir')
    dataset = PointOdysseyClips(dataset_location, dset=dset, use_augs=use_augs, S=S, N=N, crop_size=crop_size,
                                  quick=quick, seed=seed)
    if len(dataset) == 0:
        raise SettingsError(f'no clips of {S} frames in {os.path.join(dataset_location, dset)}')
    writer = None
    if log_freq:
        from tensorboardX import SummaryWriter
        writer = SummaryWriter(os.path.join(log_dir, name, 't'), max_queue=10, flush_secs=60)
    print('exporting to', export_dir)
    try:
        export_clips(dataset, export_dir, max_iters=max_iters, seed=seed, stale_seconds=stale_lock_s, name=name,
                     writer=writer, log_freq=log_freq)
    finally:
        if writer is not None:
            writer.close()


if __name__ == '__main__':
    cli.run(main)
