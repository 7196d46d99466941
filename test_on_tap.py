"""Evaluate PIPs++ on TAP-Vid (DAVIS by default; Kinetics, RGB-Stacking).

    python test_on_tap.py --dataset_location=/data/tapvid_davis
    python test_on_tap.py --dataset_location=... --query_mode=tapvid_strided --out_json=davis.json
    torchrun --nproc_per_node=8 test_on_tap.py --dataset_location=... --dataset_name=kinetics --max_iters=0

--query_mode=first (default) is the original protocol: points visible at frame 0,
tracked from there, at the video's resolution scaled to --image_size; it reports the
paper's metrics and the TAP-Vid metrics of the same tracks. tapvid_first and
tapvid_strided are the TAP-Vid protocols (frames resized to 256x256, queries at each
track's first visible frame, or at every 5th frame where visible); they report the
TAP-Vid metrics. Occlusion is not predicted: every point is predicted visible.
"""

from functools import partial

import numpy as np
from fire import Fire

from datasets.common import DatasetError
from datasets.tapviddataset_fullseq import TapVidDavis, tapvid_protocol
from utils.distributed import Ranks
from utils.evaluate import (
    PAPER_LINE,
    PAPER_METRICS,
    TAPVID_LINE,
    TAPVID_METRICS,
    SkipVideo,
    run_benchmark,
    score_frame0,
    start_benchmark,
)
from utils.metrics import compute_tapvid_metrics
from utils.misc import check_precision_arg, fail
from utils.plots import track_curves
from utils.track import track_points

QUERY_MODES = ('first', 'tapvid_first', 'tapvid_strided')


def tapvid_scores(query_points, gt_points, gt_occluded, pred_tracks, mode):
    """TAP-Vid metrics of one video with all points predicted visible (floats)."""
    pred_occluded = np.zeros_like(gt_occluded)
    metrics = compute_tapvid_metrics(query_points[None], gt_occluded[None], gt_points[None],
                                     pred_occluded[None], pred_tracks[None], mode)
    return {key: float(value[0]) for key, value in metrics.items()}


def score_first(model, sample, sw, *, S, iters, image_size, precision='fp32'):
    """The original protocol: paper + TAP-Vid metrics, and the paper's curves."""
    if sample['trajs'].shape[1] == 0:
        raise SkipVideo('no point is visible at frame 0')
    rgbs = sample['rgbs']
    H, W = rgbs.shape[-2:]
    metrics, curves, trajs_e = score_frame0(model, {**sample, 'H': H, 'W': W}, sw, frames=rgbs,
                                            vis_frames=rgbs[:S:4].permute(0, 2, 3, 1).numpy(), S=S, iters=iters,
                                            image_size=image_size, precision=precision)
    # the same tracks in the TAP-Vid convention: 256 x 256 pixels, queries at frame 0
    to_256 = np.array([256.0 / (W - 1), 256.0 / (H - 1)])
    visible0 = ~sample['occluded'][:, 0]
    gt_points = sample['points'][visible0] * 256.0  # N,T,2
    queries = np.stack([np.zeros(len(gt_points)), gt_points[:, 0, 1], gt_points[:, 0, 0]], axis=1)
    metrics.update(tapvid_scores(queries, gt_points, sample['occluded'][visible0],
                                 (trajs_e * to_256).transpose(1, 0, 2), 'first'))
    return metrics, curves


def score_tapvid(model, sample, sw, *, S, iters, image_size, mode, precision='fp32'):
    """A TAP-Vid protocol: 256x256 frames, the benchmark's queries; TAP-Vid metrics, and
    curves of the distances in those 256x256 pixels over the visible frames."""
    protocol = tapvid_protocol(sample, mode)
    if len(protocol['query_points']) == 0:
        raise SkipVideo('no visible point to query')
    queries = protocol['query_points'][:, [0, 2, 1]]  # [t, y, x] -> (t, x, y)
    tracks = track_points(model, protocol['rgbs'], queries, S=S, iters=iters, image_size=image_size,
                          precision=precision)  # T,Q,2
    target = protocol['target_points'].transpose(1, 0, 2)  # T,Q,2
    curves = track_curves(np.linalg.norm(tracks - target, axis=-1), ~protocol['occluded'].T, queries[:, 0])
    return tapvid_scores(protocol['query_points'], protocol['target_points'], protocol['occluded'],
                         tracks.transpose(1, 0, 2), mode), curves


def main(B=1, S=128, stride=8, iters=16, image_size=(512, 896), shuffle=False, log_freq=99, max_iters=30,
         log_dir='./logs_test_on_tap', dataset_location='./tapvid_davis', dataset_name='davis',
         init_dir='./reference_model', n_pool=1000, device=None, out_json=None, query_mode='first', results=None,
         resume=False, precision='fp32'):
    """The original's arguments, plus --device, --precision (fp32 | bf16 | fp16), --out_json=PATH, --query_mode (first |
    tapvid_first | tapvid_strided), --dataset_name (davis | kinetics | rgb_stacking),
    --results=PATH (per-video results, default <out_json stem>.jsonl) and --resume=True
    (skip the videos already in it). B must be 1 and --shuffle is unused."""
    if query_mode not in QUERY_MODES:
        fail(f'--query_mode must be one of {QUERY_MODES}; got {query_mode!r}')
    check_precision_arg(precision)
    ranks = Ranks.start(device)
    image_size = tuple(int(v) for v in image_size)
    first = query_mode == 'first'
    track_args = dict(S=S, iters=iters, image_size=image_size, precision=precision)
    score = (partial(score_first, **track_args) if first else
             partial(score_tapvid, **track_args, mode=query_mode.split('_')[1]))
    try:
        dataset = TapVidDavis(dataset_location, dataset_name)
        run_name, model = start_benchmark(ranks, B=B, S=S, iters=iters, exp_name='tap01', init_dir=init_dir,
                                          stride=stride)
        config = dict(benchmark='tap', dataset_location=str(dataset_location), dataset_name=dataset_name,
                      query_mode=query_mode, **track_args, init_dir=str(init_dir))
        run_benchmark(samples=dataset, score=score, model=model, run_name=run_name, config=config, ranks=ranks,
                      log_dir=log_dir, out_json=out_json, results=results, resume=resume, max_iters=max_iters,
                      metric_names=PAPER_METRICS + TAPVID_METRICS if first else TAPVID_METRICS,
                      line=PAPER_LINE if first else TAPVID_LINE, log_freq=log_freq, n_pool=n_pool)
    except DatasetError as exc:
        fail(str(exc))
    finally:
        ranks.stop()


if __name__ == '__main__':
    Fire(main)
