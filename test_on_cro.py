"""Evaluate PIPs++ on CroHD (MOT Head Tracking 21, HT21 train videos).

    python test_on_cro.py --dataset_location=/data/crohd   # holds HT21/ (and HT21Labels/)
    torchrun --nproc_per_node=8 test_on_cro.py --dataset_location=... --out_json=cro.json

Videos are cut into clips of --clip_len frames every clip_len/2 frames (the original's
1000 / 500), each head's box centre is tracked from frame 0 in windows of S frames, and
the paper's metrics are reported. Under torchrun the clips are split over the ranks.
"""

from evaluation.benchmarks import RunSettings, evaluate_cro
from tracking import BENCHMARK
from utils import cli


def main(B=1, S=128, N=256, stride=8, iters=16, image_size=(512, 896), shuffle=False, log_freq=99, max_iters=99,
         log_dir='./logs_test_on_cro', dataset_location='./crohd', init_dir='./reference_model', n_pool=1000,
         device=None, out_json=None, clip_len=1000, min_clip_len=128, results=None, resume=False, overwrite=False,
         precision='fp32'):
    """The original's arguments, plus --device, --precision (fp32 | bf16 | fp16), --out_json=PATH, the clip cutting
    (--clip_len, --min_clip_len), --results=PATH (per-video results, default <out_json
    stem>.jsonl), --resume=True (skip the clips already in it) and --overwrite=True (replace
    an earlier run's results, which is refused otherwise). B must be 1; --shuffle and --N
    are unused: as in the original, every head that passes the filter is tracked."""
    options = BENCHMARK.replace(S=S, iters=iters, image_size=image_size, precision=precision)
    run = RunSettings(init_dir=init_dir, device=device, log_dir=log_dir, log_freq=log_freq, n_pool=n_pool,
                      max_iters=max_iters, out_json=out_json, results=results, resume=resume, overwrite=overwrite,
                      B=B, stride=stride)
    evaluate_cro(dataset_location=dataset_location, clip_len=clip_len, min_clip_len=min_clip_len, options=options,
                 run=run)


if __name__ == '__main__':
    cli.run(main)
