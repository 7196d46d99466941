"""Fine-tune PIPs++ at high resolution on raw PointOdyssey frames (the recipe's second stage).

    python finetune_highres.py --init_dir=./checkpoints/<train.py run> --load_step=False --max_iters=10000

The arguments and defaults are the original's: B=2, S=38, N=64, iters=4, 512x896 crops,
clips at strides 1 and 2 that must fill N tracks (req_full), no validation, gradient
clipping at 1.0. Clips are cut and augmented afresh at every step by
datasets/pointodysseydataset.py, and a batch holding a refused clip is drawn again. The loop
is train.py's (training/loop.py); only the data and the defaults differ.
"""

import training
from utils import cli

QUICK = dict(B=1, log_freq=100, max_iters=1000, shuffle=False, val_freq=10, n_pool=10, use_augs=False,
             cache_len=3, cache_freq=0, save_freq=99999999)  # the original's --quick
CLIP_GRAD = 1.0  # the largest gradient norm (train.py: 5.0)


def main(B=2, S=38, N=64, stride=8, iters=4, crop_size=(512, 896), use_augs=True, shuffle=True,
         cache_len=0, cache_freq=0, dataset_location='./pointodyssey', n_pool=1000, quick=False, lr=5e-4,
         grad_acc=1, use_scheduler=True, max_iters=200000, log_dir='./logs_finetune_highres', log_freq=1000,
         val_freq=0, ckpt_dir='./checkpoints', save_freq=1000, keep_latest=2, init_dir='', load_optimizer=True,
         load_step=True, ignore_load=None, device=None, amp='', num_workers=6, exp_name='ac00', seed=None):
    """Fine-tune PIPs++ on <dataset_location>/train/<sequence>/ (PointOdyssey's layout).
    Beyond the original's arguments: --device, --amp, --num_workers, --exp_name and --seed,
    as in train.py. --init_dir is a run folder under --ckpt_dir or any folder holding
    checkpoints; --load_step=False loads its model only (fresh step count, optimizer and
    schedule), which is how the second stage starts from the first.
    """
    cfg = training.setup(training.Config.from_args(locals(), clip_grad=CLIP_GRAD), QUICK)
    try:
        training.run(cfg, training.raw_samples(cfg, dataset_location=dataset_location))
    finally:
        cfg.ranks.stop()


if __name__ == '__main__':
    cli.run(main)
