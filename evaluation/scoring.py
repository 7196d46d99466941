"""Scoring one video: track its ground-truth points and measure them.

A benchmark hands the loop (``evaluation.loop``) a scoring function
``score(model, sample, sw) -> (metrics, curves)``. ``score_frame0`` is the original
protocol (every point tracked from its frame-0 position, the paper's metrics measured at
the model's size); the TAP-Vid protocols are in ``evaluation.benchmarks``. Visuals go to
tensorboard in the original's style.
"""

import numpy as np
import torch

from evaluation.plots import track_curves
from tracking.queries import model_scale
from tracking.run import track_points
from utils.metrics import distances_256, paper_metrics
from utils.vis import preprocess_color

PAPER_METRICS = ['d_1', 'd_2', 'd_4', 'd_8', 'd_16', 'd_avg', 'survival', 'median_l2']
TAPVID_METRICS = (['occlusion_accuracy'] + [f'pts_within_{t}' for t in (1, 2, 4, 8, 16)]
                  + [f'jaccard_{t}' for t in (1, 2, 4, 8, 16)]
                  + ['average_pts_within_thresh', 'average_jaccard'])
# The TAP-Vid metrics that depend on predicted occlusion, measured again with the visibility
# that confidence predicts (tracking.confidence); the keys above keep all points visible.
OCCLUSION_METRICS = ['occlusion_accuracy'] + [f'jaccard_{t}' for t in (1, 2, 4, 8, 16)] + ['average_jaccard']
PREDVIS_METRICS = [f'{key}_predvis' for key in OCCLUSION_METRICS]
FRACTION_METRICS = TAPVID_METRICS + PREDVIS_METRICS  # fractions in [0, 1] (the paper's are percentages or px)
PAPER_LINE = [('d_x', 'd_avg'), ('sur_x', 'survival'), ('med_x', 'median_l2')]
TAPVID_LINE = [('delta_avg', 'average_pts_within_thresh'), ('AJ', 'average_jaccard')]


class SkipVideo(Exception):
    """Raised by a scoring function for a video that cannot be scored (the reason is
    printed and listed in the JSON; the video is left out of the means)."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def require_frames(count):
    """SkipVideo unless a video of ``count`` frames has something to track (2 frames or more)."""
    if count < 2:
        raise SkipVideo(f'{count} frame(s): tracking needs at least 2')


def to_model_pixels(array, model_size, video_size):
    """1,T,N,2 float32 tensor: T,N,2 video pixels scaled to the model's H x W."""
    scale = torch.tensor(model_scale(video_size, model_size), dtype=torch.float32)
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
    e = to_model_pixels(trajs_e, model_size, video_size)
    g = to_model_pixels(trajs_g, model_size, video_size)
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
    g_all = to_model_pixels(trajs_g, model_size, video_size)
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


def score_frame0(model, sample, sw, *, frames, vis_frames, options):
    """The original protocol on one video: track every point from its frame-0 position to
    the end, score with the paper's metrics, log the visuals.

    sample: ``trajs`` T,N,2 and ``valids`` T,N in video pixels, frame size ``H``, ``W``.
    frames: the video (array, tensor or iterable of frames; read once). vis_frames: a few
    frames (every 4th from frame 0, H,W,3 uint8) for tensorboard. options: TrackOptions.
    Returns (metrics, curves, the ``tracking.Tracks``).
    """
    trajs_g = np.asarray(sample['trajs'], dtype=np.float64)
    require_frames(len(trajs_g))
    valids = np.asarray(sample['valids'], dtype=np.float32)
    video_size = (int(sample['H']), int(sample['W']))
    queries = np.concatenate([np.zeros((trajs_g.shape[1], 1)), trajs_g[0]], axis=1)
    on_window = animate_windows(sw, trajs_g, valids, options.image_size, video_size)
    tracks = track_points(model, frames, queries, options, num_frames=len(trajs_g), on_window=on_window)
    metrics, curves = score_tracks(tracks.tracks, trajs_g, valids, options.image_size, video_size)
    log_tracks(sw, tracks.tracks, trajs_g, valids, vis_frames, options.image_size, video_size)
    return metrics, curves, tracks


def score_zero_motion(model, sample, sw, *, skip_reason, options):
    """The zero-motion baseline on one video: every point left at its frame-0 position,
    measured as ``score_frame0`` measures tracks (``model`` and ``sw`` are not used; no
    frame is read). Returns (metrics, curves)."""
    trajs_g = np.asarray(sample['trajs'], dtype=np.float64)  # T,N,2
    if trajs_g.shape[1] == 0:
        raise SkipVideo(skip_reason)
    trajs_e = np.repeat(trajs_g[:1], len(trajs_g), axis=0)
    video_size = (int(sample['H']), int(sample['W']))
    return score_tracks(trajs_e, trajs_g, np.asarray(sample['valids'], dtype=np.float32), options.image_size,
                        video_size)


def score_disk_sample(model, sample, sw, *, frames_of, skip_reason, options):
    """``score_frame0`` for a sample whose frames are read from disk (CroHD,
    PointOdyssey): ``frames_of(sample)`` gives its frames, read on demand: iterable, with a
    length and ``frame(t)`` (H,W,3 uint8), like ``datasets.common.FrameSequence``."""
    if sample['trajs'].shape[1] == 0:
        raise SkipVideo(skip_reason)
    frames = frames_of(sample)
    vis_frames = [frames.frame(t) for t in range(0, min(options.S, len(frames)), 4)]
    metrics, curves, _ = score_frame0(model, sample, sw, frames=frames, vis_frames=vis_frames, options=options)
    return metrics, curves
