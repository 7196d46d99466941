"""The benchmark loop of test_on_tap.py, test_on_cro.py and test_on_pod.py.

A script hands ``run_benchmark`` its samples (anything indexable with a length) and a
scoring function ``score(model, sample, sw) -> (metrics, curves)``; this module runs the
videos (split over the ranks when started by torchrun), appends each video's result to
the results file as it finishes (``utils.results``: resumable), keeps the running
averages, prints the original's step line, logs tensorboard scalars and visuals, and on
rank 0 gathers every video, prints the table and writes ``--out_json`` and the plots
(``utils.plots``). The means are taken over the videos in index order, so they do not
depend on the number of ranks or on interruptions.
"""

import datetime
import json
import os
import sys
import time

import numpy as np
import torch
from prettytable import PrettyTable
from tensorboardX import SummaryWriter
from tqdm import tqdm

from utils.metrics import SimplePool, distances_256, paper_metrics
from utils.misc import count_parameters, fail, load_model
from utils.plots import track_curves, write_plots
from utils.results import ResultsError, ResultsFile
from utils.track import track_points
from utils.vis import Summ_writer, preprocess_color

PAPER_METRICS = ['d_1', 'd_2', 'd_4', 'd_8', 'd_16', 'd_avg', 'survival', 'median_l2']
TAPVID_METRICS = (['occlusion_accuracy'] + [f'pts_within_{t}' for t in (1, 2, 4, 8, 16)]
                  + [f'jaccard_{t}' for t in (1, 2, 4, 8, 16)]
                  + ['average_pts_within_thresh', 'average_jaccard'])
PAPER_LINE = [('d_x', 'd_avg'), ('sur_x', 'survival'), ('med_x', 'median_l2')]
TAPVID_LINE = [('delta_avg', 'average_pts_within_thresh'), ('AJ', 'average_jaccard')]


class SkipVideo(Exception):
    """Raised by a scoring function for a video that cannot be scored (the reason is
    printed and listed in the JSON; the video is left out of the means)."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def eval_run_name(B, S, iters, exp_name):
    """The original's run name for the test scripts, e.g. 1_128_i16_tap01_153012."""
    return f'{B}_{S}_i{iters}_{exp_name}_{datetime.datetime.now().strftime("%H%M%S")}'


def start_benchmark(ranks, *, B, S, iters, exp_name, init_dir, stride=8):
    """(run name, model) of a test script: one name for all ranks, the model on this
    rank's device; rank 0 prints both as the original does."""
    if B != 1:
        fail('B must be 1 (videos are tracked one at a time)')
    run_name = ranks.broadcast(eval_run_name(B, S, iters, exp_name))
    if ranks.is_main:
        print('model_name', run_name)
    model = load_model(init_dir, ranks.device, stride)
    if ranks.is_main:
        count_parameters(model)
    return run_name, model


def to_model_pixels(array, model_size, video_size):
    """1,T,N,2 float32 tensor: T,N,2 video pixels scaled to the model's H x W."""
    (H_, W_), (H, W) = model_size, video_size
    scale = torch.tensor([W_ / W, H_ / H], dtype=torch.float32)
    return torch.as_tensor(np.asarray(array), dtype=torch.float32)[None] * scale


def score_tracks(trajs_e, trajs_g, valids, model_size, video_size):
    """(paper metrics, track_curves) of T,N,2 frame-0 tracks given in video pixels,
    measured at the model's size as the original does (ground truth scaled there, then
    distances as if 256x256)."""
    e = to_model_pixels(trajs_e, model_size, video_size)
    g = to_model_pixels(trajs_g, model_size, video_size)
    v = torch.as_tensor(np.asarray(valids), dtype=torch.float32)[None]
    metrics = paper_metrics(e, g, v, *model_size)
    dists = distances_256(e, g, *model_size)[0].numpy()  # T,N
    return metrics, track_curves(dists, v[0].numpy(), np.zeros(dists.shape[1], np.int64))


def log_tracks(sw, trajs_e, trajs_g, valids, frames, model_size, video_size, frame_step=4):
    """The original's final visuals: estimates over the truth on frame 0, and on frames.

    frames: a few video frames (list of H,W,3 uint8) taken every ``frame_step`` frames.
    """
    if not sw.save_this:
        return
    (H_, W_), (H, W) = model_size, video_size
    scale = torch.tensor([W_ / W, H_ / H], dtype=torch.float32)
    e = torch.as_tensor(trajs_e, dtype=torch.float32)[None] * scale
    g = torch.as_tensor(trajs_g, dtype=torch.float32)[None] * scale
    v = torch.as_tensor(valids, dtype=torch.float32)[None]
    rgbs = torch.stack([torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1).float() for f in frames])
    rgbs = torch.nn.functional.interpolate(rgbs, size=tuple(model_size), mode='bilinear',
                                           align_corners=False)[None]  # 1,F,3,H_,W_
    prep = preprocess_color(rgbs)
    rgb0 = sw.summ_traj2ds_on_rgb('', g, prep[0:1, 0], valids=v, cmap='winter', linewidth=2, only_return=True)
    sw.summ_traj2ds_on_rgb('2_outputs/trajs_e_on_rgb0', e, preprocess_color(rgb0), valids=v, cmap='spring',
                           linewidth=2)
    n = prep.shape[1]
    e_sub, v_sub = e[:, ::frame_step][:, :n], v[:, ::frame_step][:, :n]
    sw.summ_traj2ds_on_rgbs2('2_outputs/trajs_e_on_rgbs2', e_sub, v_sub, prep, valids=v_sub,
                             frame_ids=list(range(0, n * frame_step, frame_step)))


def animate_windows(sw, trajs_g, valids, model_size, video_size):
    """An ``on_window`` callback logging the refinement of each window over the truth."""
    (H_, W_), (H, W) = model_size, video_size
    scale = torch.tensor([W_ / W, H_ / H], dtype=torch.float32)
    g_all = torch.as_tensor(trajs_g, dtype=torch.float32)[None] * scale
    v_all = torch.as_tensor(valids, dtype=torch.float32)[None]

    def on_window(start, end, rgbs, preds_anim):
        if not sw.save_this:
            return
        g, v = g_all[:, start:end], v_all[:, start:end]
        grays = preprocess_color(rgbs.cpu()).mean(dim=2, keepdim=True).repeat(1, 1, 3, 1, 1)
        gt_rgb = preprocess_color(sw.summ_traj2ds_on_rgb('', g, grays.mean(dim=1), valids=v, cmap='winter',
                                                         only_return=True))
        frames = [sw.summ_traj2ds_on_rgb('', pred[0:1].cpu(), gt_rgb, valids=v, cmap='spring',
                                         only_return=True) for pred in preds_anim]
        sw.summ_rgbs('3_test/animated_trajs_on_rgb_cur%02d' % start, frames)

    return on_window


def score_frame0(model, sample, sw, *, frames, vis_frames, S, iters, image_size, precision='fp32'):
    """The original protocol on one video: track every point from its frame-0 position to
    the end, score with the paper's metrics, log the visuals.

    sample: ``trajs`` T,N,2 and ``valids`` T,N in video pixels, frame size ``H``, ``W``.
    frames: the video (array, tensor or iterable of frames; read once). vis_frames: a few
    frames (every 4th from frame 0, H,W,3 uint8) for tensorboard.
    Returns (metrics, curves, trajs_e T,N,2).
    """
    trajs_g = np.asarray(sample['trajs'], dtype=np.float64)
    valids = np.asarray(sample['valids'], dtype=np.float32)
    video_size = (int(sample['H']), int(sample['W']))
    queries = np.concatenate([np.zeros((trajs_g.shape[1], 1)), trajs_g[0]], axis=1)
    on_window = animate_windows(sw, trajs_g, valids, image_size, video_size)
    trajs_e = track_points(model, frames, queries, S=S, iters=iters, image_size=image_size,
                           num_frames=len(trajs_g), on_window=on_window, precision=precision)
    metrics, curves = score_tracks(trajs_e, trajs_g, valids, image_size, video_size)
    log_tracks(sw, trajs_e, trajs_g, valids, vis_frames, image_size, video_size)
    return metrics, curves, trajs_e


def score_disk_sample(model, sample, sw, *, frames_of, skip_reason, S, iters, image_size, precision='fp32'):
    """``score_frame0`` for a sample whose frames are read from disk (CroHD,
    PointOdyssey): ``frames_of(sample)`` gives its frames, read on demand: iterable, with a
    length and ``frame(t)`` (H,W,3 uint8), like ``datasets.crohddataset.FrameSequence``."""
    if sample['trajs'].shape[1] == 0:
        raise SkipVideo(skip_reason)
    frames = frames_of(sample)
    vis_frames = [frames.frame(t) for t in range(0, min(S, len(frames)), 4)]
    metrics, curves, _ = score_frame0(model, sample, sw, frames=frames, vis_frames=vis_frames, S=S, iters=iters,
                                      image_size=image_size, precision=precision)
    return metrics, curves


class Progress:
    """One rank's running averages, step lines, tensorboard scalars and progress bar."""

    def __init__(self, *, run_name, writer, total, todo, done, ranks, metric_names, line, n_pool, log_freq):
        self.run_name = run_name
        self.writer = writer
        self.total = total
        self.line = line  # (label, metric) pairs of the step line
        self.log_freq = log_freq
        self.pools = {key: SimplePool(n_pool) for key in metric_names}
        for record in done:  # resumed: the running averages go on from the scored videos
            self.update_pools(record)
        self.bar = tqdm(total=todo, desc='videos' if ranks.world == 1 else f'videos of rank 0 (of {ranks.world})',
                        unit='video', file=sys.stderr, disable=not ranks.is_main)

    def summ_writer(self, index):
        return Summ_writer(writer=self.writer, global_step=index + 1, log_freq=self.log_freq, fps=8, scalar_freq=1,
                           just_gif=True)

    def update_pools(self, record):
        for key, pool in self.pools.items():
            if key in record.get('metrics', {}):
                pool.update([record['metrics'][key]])

    def add(self, record, rtime, itime):
        """Print a finished video's step line (or why it was skipped)."""
        self.bar.update(1)
        if 'skipped' in record:
            tqdm.write(f'skipping {record["name"]}: {record["skipped"]}')
            return
        self.update_pools(record)
        sw = self.summ_writer(record['index'])
        text = '%s; step %06d/%d; rtime %.2f; itime %.2f' % (self.run_name, record['index'] + 1, self.total,
                                                             rtime, itime)
        for label, key in self.line:
            scale = 100.0 if key in TAPVID_METRICS else 1.0  # TAP-Vid fractions shown as percentages
            text += '; %s %.1f' % (label, self.pools[key].mean() * scale)
        for key, pool in self.pools.items():
            sw.summ_scalar(f'_/{key}', pool.mean())
        tqdm.write(text)

    def close(self):
        self.bar.close()


def report(records, *, metric_names, out_json, plot_prefix, writer, total):
    """Rank 0's final report of all videos (records in index order): the table, the JSON
    and the plots. Returns the means."""
    per_video = [{'name': r['name'], **r['metrics']} for r in records if 'metrics' in r]
    skipped = [{'name': r['name'], 'reason': r['skipped']} for r in records if 'skipped' in r]
    means = {}
    for key in metric_names:
        values = [v[key] for v in per_video if key in v and np.isfinite(v[key])]
        if values:
            means[key] = float(np.mean(values))
    table = PrettyTable(['metric', 'mean'])
    for key, value in means.items():
        table.add_row([key, f'{value:.4f}' if key in TAPVID_METRICS else f'{value:.2f}'])
    print(f'{len(per_video)} videos scored, {len(skipped)} skipped')
    print(table)
    if out_json:
        os.makedirs(os.path.dirname(os.path.abspath(out_json)), exist_ok=True)
        with open(out_json, 'w') as f:
            json.dump({'mean': means, 'per_video': per_video, 'skipped': skipped}, f, indent=1)
        print(f'wrote {out_json}')
    named_curves = [(r['name'], r['curves']) for r in records if 'metrics' in r]
    paths = write_plots(per_video, named_curves, plot_prefix, writer, step=total)
    if paths:
        print('wrote plots: ' + ', '.join(paths))
    return means


def results_location(out_json, results, resume, log_dir, run_name):
    """The per-video results file: --results, else <out_json stem>.jsonl, else one in the
    run's log folder (which --resume cannot find: it needs one of the first two)."""
    if results:
        return str(results)
    if out_json:
        return os.path.splitext(str(out_json))[0] + '.jsonl'
    if resume:
        fail('--resume=True needs --out_json or --results (the results file to go on from)')
    return os.path.join(log_dir, run_name, 'results.jsonl')


def score_videos(indices, *, samples, score, model, store, progress):
    """Score the videos ``indices`` one by one, appending each record as it finishes."""
    records = []
    for index in indices:
        start = time.time()
        sample = samples[index]
        read_time = time.time() - start
        record = {'index': index, 'name': str(sample['name'])}
        try:
            with torch.no_grad():
                metrics, curves = score(model, sample, progress.summ_writer(index))
            record.update(metrics={key: float(value) for key, value in metrics.items()}, curves=curves)
        except SkipVideo as skip:
            record['skipped'] = skip.reason
        store.append(record)
        records.append(record)
        progress.add(record, read_time, time.time() - start)
    return records


def run_benchmark(*, samples, score, model, run_name, config, ranks, log_dir, out_json=None, results=None,
                  resume=False, max_iters=0, metric_names=PAPER_METRICS, line=PAPER_LINE, log_freq=99, n_pool=1000):
    """Score the first ``max_iters`` samples (0: all) with ``score(model, sample, sw)``,
    which returns (metrics, curves) or raises SkipVideo; report on rank 0 (the means).

    config: the settings that decide the results (a resumed file must have been written
    with the same). Errors of the samples propagate to the script.
    """
    total = min(max_iters, len(samples)) if max_iters else len(samples)
    path = results_location(out_json, results, resume, log_dir, run_name)
    try:
        store = ResultsFile(path, config, ranks, resume)
    except ResultsError as exc:
        fail(str(exc))
    mine = ranks.share(range(total))
    todo = [index for index in mine if index not in store.done]
    if ranks.is_main and store.done:
        print(f'resuming: {sum(i < total for i in store.done)} of {total} videos already scored in {path}')
    writer = SummaryWriter(os.path.join(log_dir, run_name, 'x' if ranks.is_main else f'x_rank{ranks.rank}'),
                           max_queue=10, flush_secs=60)
    progress = Progress(run_name=run_name, writer=writer, total=total, todo=len(todo), ranks=ranks,
                        done=[store.done[i] for i in mine if i in store.done], metric_names=metric_names,
                        line=line, n_pool=n_pool, log_freq=log_freq)
    try:
        scored = score_videos(todo, samples=samples, score=score, model=model, store=store, progress=progress)
    except KeyboardInterrupt:
        print(f'\ninterrupted: the videos scored so far are in {path}; run the same command with --resume=True '
              'to go on', file=sys.stderr)
        sys.exit(130)
    finally:
        store.close()
        progress.close()
    gathered = ranks.gather([store.done[i] for i in mine if i in store.done] + scored)
    means = None
    if ranks.is_main:
        records = {r['index']: r for part in gathered for r in part}
        store.merge(list({**store.done, **records}.values()))
        means = report([records[i] for i in range(total)], metric_names=metric_names, out_json=out_json,
                       plot_prefix=os.path.splitext(path)[0], writer=writer, total=total)
    writer.close()
    return means
