"""Train PIPs++ on exported PointOdyssey clips (see export_mp4_dataset.py).

    python train.py                                   # one GPU, or the CPU without one
    torchrun --nproc_per_node=4 train.py --B=1        # DistributedDataParallel, B per GPU
    python train.py --init_dir=<run name>             # resume a run under --ckpt_dir

The arguments and defaults are the original's. Note that ``--N`` only names the run: clips
are read with all the tracks they were exported with (``--clip_N``), as in the original.
The loop is training/loop.py, shared with finetune_highres.py.
"""

import training
from utils import cli

QUICK = dict(B=1, log_freq=100, max_iters=1000, shuffle=False, val_freq=10, n_pool=100, use_augs=False,
             cache_len=0, cache_freq=0, save_freq=99999999)  # the original's --quick


def main(B=2, S=36, N=64, stride=8, iters=6, crop_size=(384, 512), use_augs=True, shuffle=True,
         cache_len=0, cache_freq=0, dataset_location='./pod_export', dataset_version='ae_36_128_384x512',
         n_pool=1000, quick=False, lr=5e-4, grad_acc=1, use_scheduler=True, max_iters=200000,
         log_dir='./logs_train', log_freq=1000, val_freq=100, ckpt_dir='./checkpoints', save_freq=1000,
         keep_latest=2, init_dir='', load_optimizer=True, load_step=True, ignore_load=None,
         device=None, amp='', num_workers=6, exp_name='aa01', seed=None, clip_N=None):
    """Train PIPs++. Beyond the original's arguments: --device (cuda if available, else
    cpu), --amp ('' off; 'bf16' on CUDA or a CPU with bf16 matrix units; 'fp16' on CUDA),
    --num_workers, --exp_name, --seed, --clip_N. As in the original, --N only names the run: clips are read with
    --clip_N tracks (default: all the tracks the clips were exported with, 128 by default).
    --init_dir is a run folder under --ckpt_dir, or any folder holding checkpoints (e.g.
    ./reference_model); --load_step=False loads its model only, to fine-tune with a fresh
    step count, optimizer and schedule.
    """
    cfg = training.setup(training.Config.from_args(locals()), QUICK)
    try:
        samples = training.export_samples(cfg, dataset_location=dataset_location, dataset_version=dataset_version,
                                          clip_N=clip_N)
        training.run(cfg, samples)
    finally:
        cfg.ranks.stop()


if __name__ == '__main__':
    cli.run(main)
