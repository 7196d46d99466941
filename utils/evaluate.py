"""The evaluation loop shared by test_on_tap.py, test_on_cro.py and test_on_pod.py.

Each script turns its dataset into samples (frames, ground-truth tracks, validity) and
hands them to ``Evaluation``; this module tracks them with the long-video tracker,
scores them with ``utils.metrics``, keeps the running averages, prints the original's
step line, logs tensorboard scalars and visuals, and writes the final table and JSON.
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

from datasets.common import DatasetError, read_rgb
from utils.metrics import SimplePool, paper_metrics
from utils.misc import count_parameters, default_device, fail, load_model
from utils.track import track_points
from utils.vis import Summ_writer, preprocess_color

PAPER_METRICS = ['d_1', 'd_2', 'd_4', 'd_8', 'd_16', 'd_avg', 'survival', 'median_l2']
TAPVID_METRICS = (['occlusion_accuracy'] + [f'pts_within_{t}' for t in (1, 2, 4, 8, 16)]
                  + [f'jaccard_{t}' for t in (1, 2, 4, 8, 16)]
                  + ['average_pts_within_thresh', 'average_jaccard'])
PAPER_LINE = [('d_x', 'd_avg'), ('sur_x', 'survival'), ('med_x', 'median_l2')]
TAPVID_LINE = [('delta_avg', 'average_pts_within_thresh'), ('AJ', 'average_jaccard')]


def eval_run_name(B, S, iters, exp_name):
    """The original's run name for the test scripts, e.g. 1_128_i16_tap01_153012."""
    return f'{B}_{S}_i{iters}_{exp_name}_{datetime.datetime.now().strftime("%H%M%S")}'


def score_tracks(trajs_e, trajs_g, valids, model_size, video_size):
    """Paper metrics of T,N,2 tracks given in video pixels, measured at the model's size.

    The original scales the ground truth to the model's resolution and measures there
    (then divides by W/256, H/256 inside the metrics); this does the same.
    """
    (H_, W_), (H, W) = model_size, video_size
    scale = torch.tensor([W_ / W, H_ / H], dtype=torch.float32)
    e = torch.as_tensor(np.asarray(trajs_e), dtype=torch.float32)[None] * scale
    g = torch.as_tensor(np.asarray(trajs_g), dtype=torch.float32)[None] * scale
    v = torch.as_tensor(np.asarray(valids), dtype=torch.float32)[None]
    return paper_metrics(e, g, v, H_, W_)


class Evaluation:
    """Running averages, step lines, tensorboard and the final report of one test run."""

    def __init__(self, model_name, log_dir, total_steps, n_pool=1000, log_freq=99, out_json=None,
                 metric_names=PAPER_METRICS, line=PAPER_LINE):
        self.model_name = model_name
        self.line = line  # (label, metric) pairs of the step line
        self.total_steps = total_steps
        self.log_freq = log_freq
        self.out_json = out_json
        self.metric_names = list(metric_names)
        self.pools = {key: SimplePool(n_pool) for key in self.metric_names}
        self.per_video = []
        self.skipped = []
        self.step = 0
        self.writer = SummaryWriter(os.path.join(log_dir, model_name, 'x'), max_queue=10, flush_secs=60)
        self.bar = tqdm(total=total_steps, desc='videos', unit='video', file=sys.stderr)

    def summ_writer(self, step=None):
        """A Summ_writer for the current (or given) step."""
        return Summ_writer(writer=self.writer, global_step=self.step + 1 if step is None else step,
                           log_freq=self.log_freq, fps=8, scalar_freq=1, just_gif=True)

    def add(self, video_name, metrics, rtime, itime):
        """Record one video's metrics and print the original's step line."""
        self.step += 1
        record = {'name': video_name}
        record.update({key: float(value) for key, value in metrics.items()})
        self.per_video.append(record)
        sw = self.summ_writer(self.step)
        for key, pool in self.pools.items():
            if key in metrics:
                pool.update([float(metrics[key])])
                sw.summ_scalar(f'_/{key}', pool.mean())
        text = '%s; step %06d/%d; rtime %.2f; itime %.2f' % (self.model_name, self.step, self.total_steps,
                                                             rtime, itime)
        for label, key in self.line:
            scale = 100.0 if key in TAPVID_METRICS else 1.0  # TAP-Vid fractions shown as percentages
            text += '; %s %.1f' % (label, self.pools[key].mean() * scale)
        tqdm.write(text)
        self.bar.update(1)

    def skip(self, video_name, reason):
        """A video that cannot be scored: printed, listed in the JSON, left out of the means."""
        self.skipped.append({'name': video_name, 'reason': reason})
        tqdm.write(f'skipping {video_name}: {reason}')
        self.bar.update(1)

    def means(self):
        """Mean of each metric over the scored videos (NaN-free: absent values are left out)."""
        out = {}
        for key in self.metric_names:
            values = [v[key] for v in self.per_video if key in v and np.isfinite(v[key])]
            if values:
                out[key] = float(np.mean(values))
        return out

    def finish(self):
        """Print the table of all metrics, write --out_json, close the logs; return the means."""
        self.bar.close()
        self.writer.close()
        means = self.means()
        table = PrettyTable(['metric', 'mean'])
        for key, value in means.items():
            table.add_row([key, f'{value:.4f}' if key in TAPVID_METRICS else f'{value:.2f}'])
        print(f'{len(self.per_video)} videos scored, {len(self.skipped)} skipped')
        print(table)
        if self.out_json:
            folder = os.path.dirname(os.path.abspath(self.out_json))
            os.makedirs(folder, exist_ok=True)
            with open(self.out_json, 'w') as f:
                json.dump({'mean': means, 'per_video': self.per_video, 'skipped': self.skipped}, f, indent=1)
            print(f'wrote {self.out_json}')
        return means


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


def evaluate_frame0(model, frames, trajs_g, valids, video_size, S, iters, image_size, sw, vis_frames):
    """The original protocol on one video: track every point from its frame-0 position to
    the end, score with the paper's metrics, log the visuals.

    frames: the video (array, tensor or iterable of frames; read once). trajs_g: T,N,2 and
    valids: T,N in video pixels; video_size: (H, W). vis_frames: a few frames (every 4th
    from frame 0, H,W,3 uint8) for tensorboard. Returns (metrics, trajs_e T,N,2).
    """
    trajs_g = np.asarray(trajs_g, dtype=np.float64)
    valids = np.asarray(valids, dtype=np.float32)
    queries = np.concatenate([np.zeros((trajs_g.shape[1], 1)), trajs_g[0]], axis=1)
    on_window = animate_windows(sw, trajs_g, valids, image_size, video_size)
    trajs_e = track_points(model, frames, queries, S=S, iters=iters, image_size=image_size,
                           num_frames=len(trajs_g), on_window=on_window)
    metrics = score_tracks(trajs_e, trajs_g, valids, image_size, video_size)
    log_tracks(sw, trajs_e, trajs_g, valids, vis_frames, image_size, video_size)
    return metrics, trajs_e


def run_disk_benchmark(dataset, exp_name, skip_reason, B, S, iters, image_size, stride, init_dir, device, log_dir,
                       max_iters, n_pool, log_freq, out_json):
    """The whole run of a test script whose frames are read from disk (CroHD, PointOdyssey):
    load the model, score every sample (frame-0 protocol), report. Samples hold
    ``frame_paths``, ``trajs``, ``valids``, ``name``, ``H``, ``W``; ``dataset.frames(sample)``
    reads the frames one at a time. User errors end the script with one line."""
    if B != 1:
        fail('B must be 1 (videos are tracked one at a time)')
    image_size = tuple(int(v) for v in image_size)
    total = min(max_iters, len(dataset)) if max_iters else len(dataset)
    model_name = eval_run_name(B, S, iters, exp_name)
    print('model_name', model_name)
    model = load_model(init_dir, default_device(device), stride)
    count_parameters(model)
    evaluation = Evaluation(model_name, log_dir, total, n_pool, log_freq, out_json)
    try:
        for index in range(total):
            start = time.time()
            sample = dataset[index]
            read_time = time.time() - start
            if sample['trajs'].shape[1] == 0:
                evaluation.skip(sample['name'], skip_reason)
                continue
            vis_frames = [read_rgb(path) for path in sample['frame_paths'][:S:4]]
            with torch.no_grad():
                metrics, _ = evaluate_frame0(model, dataset.frames(sample), sample['trajs'], sample['valids'],
                                             (sample['H'], sample['W']), S, iters, image_size,
                                             evaluation.summ_writer(), vis_frames)
            evaluation.add(sample['name'], metrics, read_time, time.time() - start)
    except DatasetError as exc:
        fail(str(exc))
    return evaluation.finish()
