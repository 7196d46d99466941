"""Evaluate PIPs++ on CroHD (MOT Head Tracking 21, HT21 train videos).

    python test_on_cro.py --dataset_location=/data/crohd   # holds HT21/ (and HT21Labels/)

Videos are cut into clips of --clip_len frames every clip_len/2 frames (the original's
1000 / 500), each head's box centre is tracked from frame 0 in windows of S frames, and
the paper's metrics are reported.
"""

from fire import Fire

from datasets.common import DatasetError
from datasets.crohddataset import CrohdDataset
from utils.evaluate import run_disk_benchmark
from utils.misc import fail


def main(B=1, S=128, N=256, stride=8, iters=16, image_size=(512, 896), shuffle=False, log_freq=99, max_iters=99,
         log_dir='./logs_test_on_cro', dataset_location='./crohd', init_dir='./reference_model', n_pool=1000,
         device=None, out_json=None, clip_len=1000, min_clip_len=128):
    """The original's arguments, plus --device, --out_json=PATH and the clip cutting
    (--clip_len, --min_clip_len). B must be 1; --shuffle and --N are unused: as in the
    original, every head that passes the filter is tracked."""
    try:
        dataset = CrohdDataset(dataset_location, S=clip_len, S_min=min_clip_len)
    except DatasetError as exc:
        fail(str(exc))
    run_disk_benchmark(dataset, 'cro01', 'no head passes the filter (visible, moving, away from borders)', B, S,
                       iters, image_size, stride, init_dir, device, log_dir, max_iters, n_pool, log_freq, out_json)


if __name__ == '__main__':
    Fire(main)
