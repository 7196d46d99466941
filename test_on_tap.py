"""Evaluate PIPs++ on TAP-Vid (DAVIS by default; Kinetics, RGB-Stacking).

    python test_on_tap.py --dataset_location=/data/tapvid_davis
    python test_on_tap.py --dataset_location=... --query_mode=tapvid_strided --out_json=davis.json

--query_mode=first (default) is the original protocol: points visible at frame 0,
tracked from there, at the video's resolution scaled to --image_size; it reports the
paper's metrics and the TAP-Vid metrics of the same tracks. tapvid_first and
tapvid_strided are the TAP-Vid protocols (frames resized to 256x256, queries at each
track's first visible frame, or at every 5th frame where visible); they report the
TAP-Vid metrics. Occlusion is not predicted: every point is predicted visible.
"""

import time

import numpy as np
import torch
from fire import Fire

from datasets.common import DatasetError
from datasets.tapviddataset_fullseq import TapVidDavis, tapvid_protocol
from utils.evaluate import (
    PAPER_LINE,
    PAPER_METRICS,
    TAPVID_LINE,
    TAPVID_METRICS,
    Evaluation,
    eval_run_name,
    evaluate_frame0,
)
from utils.metrics import compute_tapvid_metrics
from utils.misc import count_parameters, default_device, fail, load_model
from utils.track import track_points

QUERY_MODES = ('first', 'tapvid_first', 'tapvid_strided')


def tapvid_scores(query_points, gt_points, gt_occluded, pred_tracks, mode):
    """TAP-Vid metrics of one video with all points predicted visible (floats)."""
    pred_occluded = np.zeros_like(gt_occluded)
    metrics = compute_tapvid_metrics(query_points[None], gt_occluded[None], gt_points[None],
                                     pred_occluded[None], pred_tracks[None], mode)
    return {key: float(value[0]) for key, value in metrics.items()}


def eval_first(model, sample, S, iters, image_size, sw):
    """The original protocol; returns paper + TAP-Vid metrics."""
    rgbs = sample['rgbs']
    H, W = rgbs.shape[-2:]
    metrics, trajs_e = evaluate_frame0(model, rgbs, sample['trajs'].numpy(), sample['valids'].numpy(), (H, W),
                                       S, iters, image_size, sw, rgbs[:S:4].permute(0, 2, 3, 1).numpy())
    # the same tracks in the TAP-Vid convention: 256 x 256 pixels, queries at frame 0
    to_256 = np.array([256.0 / (W - 1), 256.0 / (H - 1)])
    visible0 = ~sample['occluded'][:, 0]
    gt_points = sample['points'][visible0] * 256.0  # N,T,2
    queries = np.stack([np.zeros(len(gt_points)), gt_points[:, 0, 1], gt_points[:, 0, 0]], axis=1)
    metrics.update(tapvid_scores(queries, gt_points, sample['occluded'][visible0],
                                 (trajs_e * to_256).transpose(1, 0, 2), 'first'))
    return metrics


def eval_tapvid(model, sample, S, iters, image_size, mode):
    """A TAP-Vid protocol: 256x256 frames, the benchmark's queries; TAP-Vid metrics."""
    protocol = tapvid_protocol(sample, mode.split('_')[1])
    if len(protocol['query_points']) == 0:
        return None
    queries = protocol['query_points'][:, [0, 2, 1]]  # [t, y, x] -> (t, x, y)
    tracks = track_points(model, protocol['rgbs'], queries, S=S, iters=iters, image_size=image_size)  # T,Q,2
    return tapvid_scores(protocol['query_points'], protocol['target_points'], protocol['occluded'],
                         tracks.transpose(1, 0, 2), mode.split('_')[1])


def main(B=1, S=128, stride=8, iters=16, image_size=(512, 896), shuffle=False, log_freq=99, max_iters=30,
         log_dir='./logs_test_on_tap', dataset_location='./tapvid_davis', dataset_name='davis',
         init_dir='./reference_model', n_pool=1000, device=None, out_json=None, query_mode='first'):
    """The original's arguments, plus --device, --out_json=PATH, --query_mode (first |
    tapvid_first | tapvid_strided) and --dataset_name (davis | kinetics | rgb_stacking).
    B must be 1 and --shuffle is unused (videos are read in order)."""
    if B != 1:
        fail('B must be 1 (videos are tracked one at a time)')
    if query_mode not in QUERY_MODES:
        fail(f'--query_mode must be one of {QUERY_MODES}; got {query_mode!r}')
    image_size = tuple(int(v) for v in image_size)
    device = default_device(device)
    try:
        dataset = TapVidDavis(dataset_location, dataset_name)
        total = min(max_iters, len(dataset)) if max_iters else len(dataset)
    except DatasetError as exc:
        fail(str(exc))
    model_name = eval_run_name(B, S, iters, 'tap01')
    print('model_name', model_name)
    model = load_model(init_dir, device, stride)
    count_parameters(model)
    first = query_mode == 'first'
    evaluation = Evaluation(model_name, log_dir, total, n_pool, log_freq, out_json,
                            PAPER_METRICS + TAPVID_METRICS if first else TAPVID_METRICS,
                            PAPER_LINE if first else TAPVID_LINE)
    samples = iter(dataset)
    try:
        for _ in range(total):
            start = time.time()
            sample = next(samples)
            read_time = time.time() - start
            if first and sample['trajs'].shape[1] == 0:
                evaluation.skip(sample['name'], 'no point is visible at frame 0')
                continue
            with torch.no_grad():
                if first:
                    metrics = eval_first(model, sample, S, iters, image_size, evaluation.summ_writer())
                else:
                    metrics = eval_tapvid(model, sample, S, iters, image_size, query_mode)
            if metrics is None:
                evaluation.skip(sample['name'], 'no visible point to query')
                continue
            evaluation.add(sample['name'], metrics, read_time, time.time() - start)
    except DatasetError as exc:
        fail(str(exc))
    evaluation.finish()


if __name__ == '__main__':
    Fire(main)
