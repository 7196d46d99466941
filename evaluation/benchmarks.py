"""The three benchmarks of the paper, as functions the test scripts call.

Each builds its dataset and scoring function and runs the shared loop
(``evaluation.loop.run_benchmark``) under torchrun's ranks when started by torchrun:

- ``evaluate_tap``: TAP-Vid (DAVIS, Kinetics, RGB-Stacking), the original protocol
  (frame-0 queries; paper and TAP-Vid metrics of the same tracks) or the TAP-Vid
  protocols (256x256 frames, queries at the first visible frame or every 5th frame);
  with ``options.confidence`` also the TAP-Vid occlusion metrics of the predicted
  visibility (``*_predvis``), next to the all-visible ones;
- ``evaluate_cro``: CroHD head tracking, 1000-frame clips;
- ``evaluate_pod``: PointOdyssey test sequences (or, with ``zero_motion``, the baseline
  that leaves every point at its frame-0 position).

Tracking follows ``options`` (``tracking.BENCHMARK`` defines the published numbers). Before
any work each checks its settings (``RunSettings``, ``TrackOptions``) and the output
locations (``evaluation.loop.check_outputs``), then reads the dataset, which must hold a
video, then loads the model.
"""

from dataclasses import dataclass
from functools import partial

import numpy as np

from datasets.common import DatasetError
from datasets.crohddataset import CrohdDataset
from datasets.pointodysseydataset_fullseq import PointOdysseyDataset
from datasets.tapviddataset_fullseq import PICKLES, TapVidDavis, tapvid_protocol
from evaluation.loop import check_outputs, run_benchmark, start_benchmark
from evaluation.plots import track_curves
from evaluation.scoring import (
    OCCLUSION_METRICS,
    PAPER_LINE,
    PAPER_METRICS,
    PREDVIS_METRICS,
    TAPVID_LINE,
    TAPVID_METRICS,
    SkipVideo,
    require_frames,
    score_disk_sample,
    score_frame0,
    score_zero_motion,
)
from tracking.run import track_points
from utils.checks import check_choice, check_count, check_flag
from utils.distributed import Ranks, default_device
from utils.errors import SettingsError
from utils.metrics import compute_tapvid_metrics

QUERY_MODES = ('first', 'tapvid_first', 'tapvid_strided')


@dataclass(frozen=True)
class RunSettings:
    """How a benchmark runs and where its results go (the test scripts' common arguments)."""

    init_dir: str = './reference_model'  # folder of the checkpoint ('' : untrained weights)
    device: str | None = None  # None: CUDA when available
    log_dir: str = './logs'  # tensorboard and, without out_json, the results file
    log_freq: int = 99  # tensorboard visuals every log_freq-th video
    n_pool: int = 1000  # running averages over this many videos
    max_iters: int = 0  # score the first max_iters videos (0: all)
    out_json: str | None = None  # the means and per-video metrics
    results: str | None = None  # the per-video results file (default: beside out_json)
    resume: bool = False  # skip the videos already in the results file
    overwrite: bool = False  # replace an earlier run's results file and out_json (without: refused)
    B: int = 1  # videos at a time (must be 1)
    stride: int = 8  # the model's stride

    def __post_init__(self):
        if self.B != 1:
            raise SettingsError(f'--B must be 1 (videos are tracked one at a time); got {self.B!r}')
        check_count('--stride', self.stride, minimum=1)
        check_count('--log_freq', self.log_freq, minimum=1)
        check_count('--n_pool', self.n_pool, minimum=1)
        check_count('--max_iters', self.max_iters, minimum=0)
        default_device(self.device)  # a device that is not there is refused now, not after the dataset is read
        resume, overwrite = check_flag('--resume', self.resume), check_flag('--overwrite', self.overwrite)
        if resume and overwrite:
            raise SettingsError('--resume=True goes on from the earlier results and --overwrite=True replaces them: '
                                'choose one')


def evaluate(*, dataset, score, config, options, run, exp_name, metric_names=PAPER_METRICS, line=PAPER_LINE,
             with_model=True):
    """Check the outputs, make the dataset (``dataset()``), and score it with ``score`` on this
    process's share of the videos; returns the means on rank 0 (None elsewhere). Without
    ``with_model`` no model is loaded (None)."""
    check_outputs(log_dir=run.log_dir, out_json=run.out_json, results=run.results, resume=run.resume,
                  overwrite=run.overwrite)
    samples = dataset()
    if not len(samples):
        raise DatasetError(f'{config["dataset_location"]}: no videos to evaluate here')
    ranks = Ranks.start(run.device)
    try:
        name, model = start_benchmark(ranks, B=run.B, S=options.S, iters=options.iters, exp_name=exp_name,
                                      init_dir=run.init_dir, stride=run.stride, with_model=with_model)
        config = dict(config, S=options.S, iters=options.iters, image_size=options.image_size,
                      precision=options.precision, init_dir=str(run.init_dir))
        return run_benchmark(samples=samples, score=score, model=model, run_name=name, config=config, ranks=ranks,
                             log_dir=run.log_dir, out_json=run.out_json, results=run.results, resume=run.resume,
                             max_iters=run.max_iters, metric_names=metric_names, line=line, log_freq=run.log_freq,
                             n_pool=run.n_pool)
    finally:
        ranks.stop()


def tapvid_scores(query_points, gt_points, gt_occluded, pred_tracks, mode, pred_visible=None):
    """TAP-Vid metrics of one video (floats) with all points predicted visible and, given
    ``pred_visible`` (N,T bool, from confidence), the ``PREDVIS_METRICS`` with that."""

    def scores(pred_occluded):
        metrics = compute_tapvid_metrics(query_points[None], gt_occluded[None], gt_points[None],
                                         pred_occluded[None], pred_tracks[None], mode)
        return {key: float(value[0]) for key, value in metrics.items()}

    metrics = scores(np.zeros_like(gt_occluded))
    if pred_visible is not None:
        predicted = scores(~np.asarray(pred_visible, dtype=bool))
        metrics.update({name: predicted[key] for name, key in zip(PREDVIS_METRICS, OCCLUSION_METRICS)})
    return metrics


def transposed(visible):
    """N,T of a T,N visibility, or None."""
    return None if visible is None else visible.T


def score_tap_first(model, sample, sw, *, options):
    """The original protocol on a TAP-Vid video: paper + TAP-Vid metrics, and the paper's curves."""
    if sample['trajs'].shape[1] == 0:
        raise SkipVideo('no point is visible at frame 0')
    rgbs = sample['rgbs']
    H, W = rgbs.shape[-2:]
    metrics, curves, tracks = score_frame0(model, {**sample, 'H': H, 'W': W}, sw, frames=rgbs,
                                           vis_frames=rgbs[:options.S:4].permute(0, 2, 3, 1).numpy(),
                                           options=options)
    # the same tracks in the TAP-Vid convention: 256 x 256 pixels, queries at frame 0
    to_256 = np.array([256.0 / (W - 1), 256.0 / (H - 1)])
    visible0 = ~sample['occluded'][:, 0]
    gt_points = sample['points'][visible0] * 256.0  # N,T,2
    queries = np.stack([np.zeros(len(gt_points)), gt_points[:, 0, 1], gt_points[:, 0, 0]], axis=1)
    metrics.update(tapvid_scores(queries, gt_points, sample['occluded'][visible0],
                                 (tracks.tracks * to_256).transpose(1, 0, 2), 'first', transposed(tracks.visible)))
    return metrics, curves


def score_tapvid(model, sample, sw, *, options, mode):
    """A TAP-Vid protocol: 256x256 frames, the benchmark's queries; TAP-Vid metrics, and
    curves of the distances in those 256x256 pixels over the visible frames."""
    require_frames(len(sample['rgbs']))
    protocol = tapvid_protocol(sample, mode)
    if len(protocol['query_points']) == 0:
        raise SkipVideo('no visible point to query')
    queries = protocol['query_points'][:, [0, 2, 1]]  # [t, y, x] -> (t, x, y)
    tracks = track_points(model, protocol['rgbs'], queries, options)  # T,Q,2 and T,Q
    target = protocol['target_points'].transpose(1, 0, 2)  # T,Q,2
    curves = track_curves(np.linalg.norm(tracks.tracks - target, axis=-1), ~protocol['occluded'].T, queries[:, 0])
    return tapvid_scores(protocol['query_points'], protocol['target_points'], protocol['occluded'],
                         tracks.tracks.transpose(1, 0, 2), mode, transposed(tracks.visible)), curves


def evaluate_tap(*, dataset_location, dataset_name='davis', query_mode='first', options, run):
    """TAP-Vid with ``query_mode`` 'first' (the original protocol), 'tapvid_first' or 'tapvid_strided'."""
    check_choice('--query_mode', query_mode, QUERY_MODES)
    check_choice('--dataset_name', dataset_name, sorted(PICKLES))
    first = query_mode == 'first'
    score = (partial(score_tap_first, options=options) if first else
             partial(score_tapvid, options=options, mode=query_mode.split('_')[1]))
    config = dict(benchmark='tap', dataset_location=str(dataset_location), dataset_name=dataset_name,
                  query_mode=query_mode, confidence=options.confidence, consistency=options.consistency)
    metric_names = (PAPER_METRICS if first else []) + TAPVID_METRICS + (PREDVIS_METRICS if options.confidence else [])
    return evaluate(dataset=partial(TapVidDavis, dataset_location, dataset_name), score=score, config=config,
                    options=options, run=run, exp_name='tap01', metric_names=metric_names,
                    line=PAPER_LINE if first else TAPVID_LINE)


def evaluate_pod(*, dataset_location, dset='test', N=256, options, run, zero_motion=False):
    """PointOdyssey: N tracks per sequence that pass the original's filter, from frame 0;
    with ``zero_motion``, the same tracks left at their frame-0 positions (no model)."""
    skip_reason = 'no track passes the filter (visible at frame 0 and in 8 frames)'
    if zero_motion:
        score = partial(score_zero_motion, options=options, skip_reason=skip_reason)
    else:
        score = partial(score_disk_sample, frames_of=PointOdysseyDataset.frames, options=options,
                        skip_reason=skip_reason)
    config = dict(benchmark='pod', dataset_location=str(dataset_location), dset=dset, N=N)
    if zero_motion:  # a baseline's results file never resumes a model's
        config['zero_motion'] = True
    check_count('--N', N, minimum=1)
    return evaluate(dataset=partial(PointOdysseyDataset, dataset_location, dset=dset, N=N), score=score, config=config,
                    options=options, run=run, exp_name='pod01', with_model=not zero_motion)


def evaluate_cro(*, dataset_location, clip_len=1000, min_clip_len=128, options, run):
    """CroHD: clips of ``clip_len`` frames every clip_len/2, every head that passes the filter."""
    score = partial(score_disk_sample, frames_of=CrohdDataset.frames, options=options,
                    skip_reason='no head passes the filter (visible, moving, away from borders)')
    config = dict(benchmark='cro', dataset_location=str(dataset_location), clip_len=clip_len,
                  min_clip_len=min_clip_len)
    check_count('--min_clip_len', min_clip_len, minimum=2)
    check_count('--clip_len', clip_len, minimum=min_clip_len)
    return evaluate(dataset=partial(CrohdDataset, dataset_location, S=clip_len, S_min=min_clip_len), score=score,
                    config=config, options=options, run=run, exp_name='cro01')
