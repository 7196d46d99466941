"""Evaluate PIPs++ on the PointOdyssey test set (full sequences, ~2k frames each).

    python test_on_pod.py --dataset_location=/data/pointodyssey   # holds test/<sequence>/

N=256 evenly spaced tracks per sequence that pass the original's filter are tracked from
frame 0 in windows of S frames, reading frames from disk as it goes, and the paper's
metrics are reported.
"""

from fire import Fire

from datasets.common import DatasetError
from datasets.pointodysseydataset_fullseq import PointOdysseyDataset
from utils.evaluate import run_disk_benchmark
from utils.misc import fail


def main(B=1, S=128, N=256, stride=8, iters=16, image_size=(512, 896), shuffle=False, log_freq=99, max_iters=99,
         log_dir='./logs_test_on_pod', dataset_location='./pointodyssey', dset='test', init_dir='./reference_model',
         n_pool=1000, device=None, out_json=None):
    """The original's arguments, plus --device and --out_json=PATH. B must be 1;
    --shuffle is unused."""
    try:
        dataset = PointOdysseyDataset(dataset_location, dset=dset, N=N)
    except DatasetError as exc:
        fail(str(exc))
    run_disk_benchmark(dataset, 'pod01', 'no track passes the filter (visible at frame 0 and in 8 frames)', B, S,
                       iters, image_size, stride, init_dir, device, log_dir, max_iters, n_pool, log_freq, out_json)


if __name__ == '__main__':
    Fire(main)
