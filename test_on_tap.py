"""Evaluate PIPs++ on TAP-Vid (DAVIS by default; Kinetics, RGB-Stacking).

    python test_on_tap.py --dataset_location=/data/tapvid_davis
    python test_on_tap.py --dataset_location=... --query_mode=tapvid_strided --out_json=davis.json
    torchrun --nproc_per_node=8 test_on_tap.py --dataset_location=... --dataset_name=kinetics --max_iters=0

--query_mode=first (default) is the original protocol: points visible at frame 0,
tracked from there, at the video's resolution scaled to --image_size; it reports the
paper's metrics and the TAP-Vid metrics of the same tracks. tapvid_first and
tapvid_strided are the TAP-Vid protocols (frames resized to 256x256, queries at each
track's first visible frame, or at every 5th frame where visible); they report the
TAP-Vid metrics. Those keep the published definition, every point predicted visible;
next to them, occlusion_accuracy_predvis, jaccard_*_predvis and average_jaccard_predvis
measure the visibility that confidence predicts (docs/confidence.md; --confidence=False
leaves them out, --consistency=False drops the forward-backward check). The tracks, and
so every other metric, are the same either way.
"""

from evaluation.benchmarks import RunSettings, evaluate_tap
from tracking import BENCHMARK
from utils import cli


def main(B=1, S=128, stride=8, iters=16, image_size=(512, 896), shuffle=False, log_freq=99, max_iters=30,
         log_dir='./logs_test_on_tap', dataset_location='./tapvid_davis', dataset_name='davis',
         init_dir='./reference_model', n_pool=1000, device=None, out_json=None, query_mode='first', results=None,
         resume=False, overwrite=False, precision='fp32', confidence=True, consistency=True):
    """The original's arguments, plus --device, --precision (fp32 | bf16 | fp16), --out_json=PATH, --query_mode (first |
    tapvid_first | tapvid_strided), --dataset_name (davis | kinetics | rgb_stacking),
    --results=PATH (per-video results, default <out_json stem>.jsonl), --resume=True
    (skip the videos already in it), --overwrite=True (replace an earlier run's results,
    which is refused otherwise), --confidence and --consistency (predicted visibility). B must
    be 1 and --shuffle is unused."""
    options = BENCHMARK.replace(S=S, iters=iters, image_size=image_size, precision=precision,
                                confidence=confidence, consistency=consistency)
    run = RunSettings(init_dir=init_dir, device=device, log_dir=log_dir, log_freq=log_freq, n_pool=n_pool,
                      max_iters=max_iters, out_json=out_json, results=results, resume=resume, overwrite=overwrite,
                      B=B, stride=stride)
    evaluate_tap(dataset_location=dataset_location, dataset_name=dataset_name, query_mode=query_mode,
                 options=options, run=run)


if __name__ == '__main__':
    cli.run(main)
