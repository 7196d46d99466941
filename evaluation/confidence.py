"""Measuring confidence against ground-truth occlusion, and fitting its rule.

On sequences in the PointOdyssey layout (``datasets.synthetic`` makes them), each track
is queried TAP-Vid style (at its first visible frame, or at every 5th frame where it is
visible) and tracked with ``tracking.run.track_signals``. A position is *trusted* when
the point is visible there and the estimate is within ``TRUST_DISTANCE`` px of the truth
at 256 x 256. ``measure_sequence`` gives everything the scripts need per sequence;
``roc_auc``, ``tapvid_means`` and ``calibration`` summarise many; ``fit_rule`` fits the
logistic rule of ``tracking.confidence`` (benchmarks/fit_confidence.py and
benchmarks/bench_confidence.py are the scripts).
"""

import dataclasses
import os
import time

import numpy as np

from datasets.common import DatasetError, FrameSequence, annotation_path, read_annotations
from datasets.pointodysseydataset_fullseq import frame_paths
from datasets.synthetic import make_sequences, sequence_name
from tracking.confidence import SIGNALS, Rule, distance_256, features
from tracking.run import track_signals
from utils.checks import check_choice, check_count
from utils.metrics import compute_tapvid_metrics, evaluated_frames, tapvid_queries

TRUST_DISTANCE = 8.0  # px at 256 x 256: a visible point estimated further off is not to be trusted
FIT_SEED, HELDOUT_SEED = 1701, 1702  # procedural sets for fitting and for validation (training uses others)
QUERY_MODES = ('first', 'strided')  # TAP-Vid's query protocols (utils.metrics.tapvid_queries)
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)  # the visibility thresholds a fit tries
L2_PENALTY = 1e-5  # on the fitted weights (not the bias): keeps a fit finite when the classes separate


def auc_score(labels, scores):
    """ROC AUC of ``scores`` for bool ``labels``: the chance that a random positive scores
    above a random negative, ties counting half (the Mann-Whitney statistic over average ranks)."""
    labels, scores = np.asarray(labels, bool).ravel(), np.asarray(scores, np.float64).ravel()
    positives, negatives = labels.sum(), (~labels).sum()
    if not positives or not negatives:
        raise ValueError('ROC AUC needs positives and negatives')
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # 1-based, ties sharing their average rank
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def logistic_fit(x, y, l2=L2_PENALTY, steps=100):
    """(bias, K weights) of the logistic regression of bool y on M,K features x, by Newton's
    method on the mean log loss plus ``l2`` / 2 |weights|^2."""
    X = np.column_stack([np.ones(len(x)), np.asarray(x, np.float64)])
    y = np.asarray(y, np.float64)
    penalty = np.full(X.shape[1], l2)
    penalty[0] = 0.0
    coef = np.zeros(X.shape[1])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(X @ coef)))
        gradient = X.T @ (p - y) / len(y) + penalty * coef
        hessian = (X * (p * (1 - p))[:, None]).T @ X / len(y) + np.diag(penalty)
        update = np.linalg.solve(hessian, gradient)
        coef -= update
        if np.abs(update).max() < 1e-10:
            break
    return float(coef[0]), coef[1:]


@dataclasses.dataclass
class Measured:
    """One sequence tracked from its TAP-Vid queries (T frames, Q queries)."""

    name: str
    query_points: np.ndarray  # Q,3 [t, y, x] (TAP-Vid order), video pixels
    tracks: np.ndarray  # T,Q,2 estimates, video pixels
    signals: np.ndarray  # T,Q,3 (tracking.confidence.SIGNALS)
    confidence: np.ndarray  # T,Q from the rule the options chose
    truth: np.ndarray  # T,Q,2 video pixels
    occluded: np.ndarray  # T,Q bool
    error: np.ndarray  # T,Q px at 256 x 256
    scored: np.ndarray  # T,Q bool: the frames the TAP-Vid metrics score
    size: tuple  # (H, W)
    query_mode: str

    @property
    def trusted(self):
        """T,Q bool: visible and within TRUST_DISTANCE."""
        return ~self.occluded & (self.error < TRUST_DISTANCE)


def procedural_split(data_dir, dset, *, n_seqs, seed, T, H, W, N):
    """The folders of procedural sequences 0..n_seqs-1 of ``<data_dir>/<dset>``, made first
    where missing (``datasets.synthetic``; made ones are kept and reused)."""
    for _ in make_sequences(data_dir, dset=dset, n_seqs=n_seqs, seed=seed, T=T, H=H, W=W, N=N):
        pass
    split_dir = os.path.join(str(data_dir), dset)
    return [os.path.join(split_dir, sequence_name(index)) for index in range(n_seqs)]


def read_sequence(seq_dir, N):
    """(frames T,H,W,3 uint8, tracks T,n,2, occluded T,n) of up to N tracks, evenly spaced
    among those valid on every frame and visible on some frame."""
    anno = annotation_path(seq_dir)
    if anno is None:
        raise DatasetError(f'{seq_dir}: no anno.npz or annotations.npz')
    trajs, visibs, valids = read_annotations(anno)
    keep = np.flatnonzero(valids.all(axis=0) & visibs.any(axis=0))
    keep = keep[np.linspace(0, len(keep) - 1, min(N, len(keep))).astype(np.int64)] if len(keep) else keep
    frames = np.stack(list(FrameSequence(frame_paths(seq_dir))))
    return frames, trajs[:, keep], ~visibs[:, keep]


def measure_sequence(model, seq_dir, options, N, query_mode='first'):
    """Track up to N tracks of one sequence from their TAP-Vid queries ('first' or
    'strided'); returns a ``Measured`` (None when no track is visible)."""
    frames, truth_all, occluded_all = read_sequence(seq_dir, N)
    query_points, index = tapvid_queries(truth_all.transpose(1, 0, 2), occluded_all.T, query_mode)
    if len(index) == 0:
        return None
    tracks, signals = track_signals(model, frames, query_points[:, [0, 2, 1]], options)
    truth, occluded = truth_all[:, index], occluded_all[:, index]
    size = frames.shape[1:3]
    scored = evaluated_frames(query_points[None], len(frames), query_mode)[0].T
    return Measured(name=os.path.basename(seq_dir), query_points=query_points, tracks=tracks.tracks, signals=signals,
                    confidence=tracks.confidence, truth=truth, occluded=occluded,
                    error=distance_256(tracks.tracks, truth, size), scored=scored, size=size, query_mode=query_mode)


def check_measure(*, N, query_mode):
    """SettingsError unless ``N`` (tracks per sequence) and ``query_mode`` can be measured."""
    check_count('--N', N, minimum=1)
    check_choice('--query_mode', query_mode, QUERY_MODES)


def measure_split(model, seq_dirs, options, N, query_mode='first'):
    """The ``Measured`` of each sequence that has a visible track, printing a line each;
    DatasetError when none has one."""
    measured = []
    for seq_dir in seq_dirs:
        start = time.time()
        m = measure_sequence(model, seq_dir, options, N, query_mode)
        if m is not None:
            measured.append(m)
            print(f'{m.name}: {m.tracks.shape[1]} queries, {m.trusted[m.scored].mean() * 100:.1f}% of the scored '
                  f'positions trusted ({time.time() - start:.1f} s)')
    if not measured:
        raise DatasetError(f'{os.path.dirname(seq_dirs[0]) if seq_dirs else "no sequences"}: no sequence has a '
                           'visible track to measure')
    return measured


def pooled(measured, values):
    """The scored entries of ``values(m)`` (T,Q[,K]) of every sequence, concatenated."""
    return np.concatenate([values(m)[m.scored] for m in measured])


def roc_auc(measured, score):
    """ROC AUC of ``score(m)`` (T,Q, higher = more trusted) for trusted against the rest
    ("occluded, or more than TRUST_DISTANCE px off"), over the scored entries."""
    return auc_score(pooled(measured, lambda m: m.trusted), pooled(measured, score))


def signal_aucs(measured):
    """{signal: ROC AUC of that signal alone}, the forward-backward distance negated (a
    larger distance means less trust)."""
    direction = {'appearance': 1.0, 'peak': 1.0, 'consistency': -1.0}
    return {name: roc_auc(measured, lambda m, k=k, sign=direction[name]: sign * m.signals[..., k])
            for k, name in enumerate(SIGNALS)}


def tapvid_means(measured, visible=None):
    """Means over sequences of the TAP-Vid metrics; ``visible(m)`` gives the T,Q predicted
    visibility (None: every point visible, as the published protocol)."""
    per_video = []
    for m in measured:
        to_256 = np.array([256.0 / m.size[1], 256.0 / m.size[0]])
        pred_visible = np.ones_like(m.occluded) if visible is None else visible(m)
        metrics = compute_tapvid_metrics(m.query_points[None], m.occluded.T[None],
                                         (m.truth * to_256).transpose(1, 0, 2)[None], ~pred_visible.T[None],
                                         (m.tracks * to_256).transpose(1, 0, 2)[None], m.query_mode)
        per_video.append({key: float(value[0]) for key, value in metrics.items()})
    return {key: float(np.nanmean([v[key] for v in per_video])) for key in per_video[0]}


def calibration(measured, score, bins=10):
    """(bin centres, share trusted, count) of ``score`` in ``bins`` equal bins of [0, 1]."""
    values, trusted = pooled(measured, score), pooled(measured, lambda m: m.trusted)
    which = np.minimum((values * bins).astype(np.int64), bins - 1)
    count = np.bincount(which, minlength=bins)
    share = np.bincount(which, weights=trusted, minlength=bins) / np.maximum(count, 1)
    return (np.arange(bins) + 0.5) / bins, np.where(count > 0, share, np.nan), count


def fit_rule(measured, consistency):
    """The logistic ``Rule`` of the signals (with or without the forward-backward distance)
    for "trusted", and the threshold of THRESHOLDS with the best mean average Jaccard."""
    x = pooled(measured, lambda m: features(m.signals, consistency))
    y = pooled(measured, lambda m: m.trusted)
    bias, weights = logistic_fit(x, y)
    weights = [round(float(w), 3) for w in weights]
    rule = Rule(bias=round(bias, 3), appearance=weights[0], peak=weights[1],
                consistency=weights[2] if consistency else None, threshold=0.5)
    jaccards = [tapvid_means(measured, lambda m, t=t: rule.confidence(m.signals) >= t)['average_jaccard']
                for t in THRESHOLDS]
    return dataclasses.replace(rule, threshold=float(THRESHOLDS[int(np.argmax(jaccards))]))
