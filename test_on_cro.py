"""Evaluate PIPs++ on CroHD (MOT Head Tracking 21, HT21 train videos).

    python test_on_cro.py --dataset_location=/data/crohd   # holds HT21/ (and HT21Labels/)
    torchrun --nproc_per_node=8 test_on_cro.py --dataset_location=... --out_json=cro.json

Videos are cut into clips of --clip_len frames every clip_len/2 frames (the original's
1000 / 500), each head's box centre is tracked from frame 0 in windows of S frames, and
the paper's metrics are reported. Under torchrun the clips are split over the ranks.
"""

from functools import partial

from fire import Fire

from datasets.common import DatasetError
from datasets.crohddataset import CrohdDataset
from utils.distributed import Ranks
from utils.evaluate import run_benchmark, score_disk_sample, start_benchmark
from utils.misc import check_precision_arg, fail


def main(B=1, S=128, N=256, stride=8, iters=16, image_size=(512, 896), shuffle=False, log_freq=99, max_iters=99,
         log_dir='./logs_test_on_cro', dataset_location='./crohd', init_dir='./reference_model', n_pool=1000,
         device=None, out_json=None, clip_len=1000, min_clip_len=128, results=None, resume=False, precision='fp32'):
    """The original's arguments, plus --device, --precision (fp32 | bf16 | fp16), --out_json=PATH, the clip cutting
    (--clip_len, --min_clip_len), --results=PATH (per-video results, default <out_json
    stem>.jsonl) and --resume=True (skip the clips already in it). B must be 1; --shuffle
    and --N are unused: as in the original, every head that passes the filter is tracked."""
    check_precision_arg(precision)
    ranks = Ranks.start(device)
    image_size = tuple(int(v) for v in image_size)
    try:
        dataset = CrohdDataset(dataset_location, S=clip_len, S_min=min_clip_len)
        run_name, model = start_benchmark(ranks, B=B, S=S, iters=iters, exp_name='cro01', init_dir=init_dir,
                                          stride=stride)
        track_args = dict(S=S, iters=iters, image_size=image_size, precision=precision)
        score = partial(score_disk_sample, frames_of=CrohdDataset.frames, **track_args,
                        skip_reason='no head passes the filter (visible, moving, away from borders)')
        config = dict(benchmark='cro', dataset_location=str(dataset_location), clip_len=clip_len,
                      min_clip_len=min_clip_len, **track_args, init_dir=str(init_dir))
        run_benchmark(samples=dataset, score=score, model=model, run_name=run_name, config=config, ranks=ranks,
                      log_dir=log_dir, out_json=out_json, results=results, resume=resume, max_iters=max_iters,
                      log_freq=log_freq, n_pool=n_pool)
    except DatasetError as exc:
        fail(str(exc))
    finally:
        ranks.stop()


if __name__ == '__main__':
    Fire(main)
