"""Evaluate PIPs++ on the PointOdyssey test set (full sequences, ~2k frames each).

    python test_on_pod.py --dataset_location=/data/pointodyssey   # holds test/<sequence>/
    torchrun --nproc_per_node=8 test_on_pod.py --dataset_location=... --out_json=pod.json

N=256 evenly spaced tracks per sequence that pass the original's filter are tracked from
frame 0 in windows of S frames, reading frames from disk as it goes, and the paper's
metrics are reported. Under torchrun the sequences are split over the ranks.
"""

from functools import partial

from fire import Fire

from datasets.common import DatasetError
from datasets.pointodysseydataset_fullseq import PointOdysseyDataset
from utils.distributed import Ranks
from utils.evaluate import run_benchmark, score_disk_sample, start_benchmark
from utils.misc import check_precision_arg, fail


def main(B=1, S=128, N=256, stride=8, iters=16, image_size=(512, 896), shuffle=False, log_freq=99, max_iters=99,
         log_dir='./logs_test_on_pod', dataset_location='./pointodyssey', dset='test', init_dir='./reference_model',
         n_pool=1000, device=None, out_json=None, results=None, resume=False, precision='fp32'):
    """The original's arguments, plus --device, --precision (fp32 | bf16 | fp16),
    --out_json=PATH, --results=PATH (per-video results, default <out_json stem>.jsonl) and
    --resume=True (skip the videos already in it). B must be 1; --shuffle is unused."""
    check_precision_arg(precision)
    ranks = Ranks.start(device)
    image_size = tuple(int(v) for v in image_size)
    try:
        dataset = PointOdysseyDataset(dataset_location, dset=dset, N=N)
        run_name, model = start_benchmark(ranks, B=B, S=S, iters=iters, exp_name='pod01', init_dir=init_dir,
                                          stride=stride)
        track_args = dict(S=S, iters=iters, image_size=image_size, precision=precision)
        score = partial(score_disk_sample, frames_of=PointOdysseyDataset.frames, **track_args,
                        skip_reason='no track passes the filter (visible at frame 0 and in 8 frames)')
        config = dict(benchmark='pod', dataset_location=str(dataset_location), dset=dset, N=N, **track_args,
                      init_dir=str(init_dir))
        run_benchmark(samples=dataset, score=score, model=model, run_name=run_name, config=config, ranks=ranks,
                      log_dir=log_dir, out_json=out_json, results=results, resume=resume, max_iters=max_iters,
                      log_freq=log_freq, n_pool=n_pool)
    except DatasetError as exc:
        fail(str(exc))
    finally:
        ranks.stop()


if __name__ == '__main__':
    Fire(main)
