"""Evaluate PIPs++ on the PointOdyssey test set (full sequences, ~2k frames each).

    python test_on_pod.py --dataset_location=/data/pointodyssey   # holds test/<sequence>/
    torchrun --nproc_per_node=8 test_on_pod.py --dataset_location=... --out_json=pod.json

N=256 evenly spaced tracks per sequence that pass the original's filter are tracked from
frame 0 in windows of S frames, reading frames from disk as it goes, and the paper's
metrics are reported. Under torchrun the sequences are split over the ranks.
"""

from evaluation.benchmarks import RunSettings, evaluate_pod
from tracking import BENCHMARK
from utils import cli


def main(B=1, S=128, N=256, stride=8, iters=16, image_size=(512, 896), shuffle=False, log_freq=99, max_iters=99,
         log_dir='./logs_test_on_pod', dataset_location='./pointodyssey', dset='test', init_dir='./reference_model',
         n_pool=1000, device=None, out_json=None, results=None, resume=False, overwrite=False, precision='fp32'):
    """The original's arguments, plus --device, --precision (fp32 | bf16 | fp16),
    --out_json=PATH, --results=PATH (per-video results, default <out_json stem>.jsonl),
    --resume=True (skip the videos already in it) and --overwrite=True (replace an earlier
    run's results, which is refused otherwise). B must be 1; --shuffle is unused."""
    options = BENCHMARK.replace(S=S, iters=iters, image_size=image_size, precision=precision)
    run = RunSettings(init_dir=init_dir, device=device, log_dir=log_dir, log_freq=log_freq, n_pool=n_pool,
                      max_iters=max_iters, out_json=out_json, results=results, resume=resume, overwrite=overwrite,
                      B=B, stride=stride)
    evaluate_pod(dataset_location=dataset_location, dset=dset, N=N, options=options, run=run)


if __name__ == '__main__':
    cli.run(main)
