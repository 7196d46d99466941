"""How far each tracked position can be trusted, without training: signals and the rule.

PIPs++ has no visibility head. The engine measures three signals per point and frame on
the features it already holds, and a logistic rule turns them into a confidence:

- **appearance**: the cosine similarity between the query's target feature (the vector
  PIPs++ samples at the query and carries from window to window) and the level-0 feature
  sampled at the estimate. 1 at the query's own frame.
- **peak**: the share of the correlation mass near the estimate: a softmax over the
  level-0 correlation window of the query's feature (7 x 7 cells around the estimate),
  summed over the cells within ``PEAK_RADIUS`` of it. The correlations are taken relative
  to the query feature's correlation with itself (1 where the feature matches exactly,
  whatever the scale of a model's features) and divided by ``PEAK_TEMPERATURE``. A sharp,
  centred match gives a share near 1; a flat or off-centre one, near
  (2 PEAK_RADIUS + 1)^2 / 49 or less.
- **consistency**: forward-backward consistency. Each segment of a track (forward from
  its query's frame to the last frame, backward to frame 0) is tracked again from its far
  end back to the query's frame (the *check*, refined ``check_iters`` times). The signal
  is the distance between the track and its check on each frame, the check shifted to
  meet the query at the query's frame, in pixels of the frame scaled to 256 x 256 (as the
  TAP-Vid metrics measure). So it is 0 at the query and where track and check move
  alike, and it grows from the frame where they part: a track that fails and then
  follows something else is checked back along that something, which meets the track
  after the failure and leaves it before. It needs the whole video, so online streams go
  without it.

confidence = sigmoid(bias + a * appearance + p * peak + c * log(1 + consistency)), with
the coefficients of ``FULL_RULE`` (all three signals) or ``LIGHT_RULE`` (appearance and
peak alone); a point is predicted visible where confidence >= the rule's threshold. A
query's own frame has confidence 1. The coefficients were fitted by logistic regression
on procedural sequences with ground-truth occlusion (``benchmarks/fit_confidence.py``):
the target is "visible and within 8 px at 256 x 256"; the threshold maximises the average
Jaccard of the training sequences. Every signal of a point depends on that point alone.
"""

from dataclasses import dataclass

import numpy as np
import torch

SIGNALS = ('appearance', 'peak', 'consistency')  # the columns of a T,N,3 signals array
APPEARANCE, PEAK, CONSISTENCY = range(3)
PEAK_RADIUS = 1  # cells (of the stride-8 map) around the estimate that count as "near"
PEAK_TEMPERATURE = 0.1  # relative correlations are divided by this before the softmax
CHECK_ITERS_SHARE = 4  # the forward-backward check refines with iters // this iterations (at least 1)


def features(signals, consistency=True):
    """...,K float64 features of ...,3 signals: appearance, peak and, with ``consistency``,
    log(1 + forward-backward distance)."""
    signals = np.asarray(signals, dtype=np.float64)
    columns = [signals[..., APPEARANCE], signals[..., PEAK]]
    if consistency:
        columns.append(np.log1p(signals[..., CONSISTENCY]))
    return np.stack(columns, axis=-1)


@dataclass(frozen=True)
class Rule:
    """A logistic rule: confidence = sigmoid(bias + weights . features), visible where
    confidence >= threshold (``features``; without a consistency weight, the rule leaves
    the forward-backward distance out)."""

    bias: float
    appearance: float
    peak: float
    consistency: float | None
    threshold: float

    def confidence(self, signals):
        """T,N float32 in [0, 1] of T,N,3 signals (NaN where a used signal is NaN)."""
        with_consistency = self.consistency is not None
        weights = [self.appearance, self.peak] + ([self.consistency] if with_consistency else [])
        logit = self.bias + features(signals, with_consistency) @ np.array(weights)
        with np.errstate(over='ignore'):
            return (1.0 / (1.0 + np.exp(-logit))).astype(np.float32)


FULL_RULE = Rule(bias=-7.99, appearance=8.097, peak=2.335, consistency=-0.558, threshold=0.15)
LIGHT_RULE = Rule(bias=-10.953, appearance=9.78, peak=2.61, consistency=None, threshold=0.1)


def rule_for(options):
    """The rule ``options`` track with (``FULL_RULE`` with the consistency check)."""
    return FULL_RULE if options.consistency else LIGHT_RULE


def check_iters(iters):
    """Refinement iterations of the forward-backward check for tracks refined ``iters`` times."""
    return max(1, iters // CHECK_ITERS_SHARE)


def window_signals(corr, tracks, target, stride):
    """B,S,N,2 (appearance, peak share) of a window's estimates.

    corr: the window's correlation (``nets.corr``). tracks: B,S,N,2 estimates in model
    pixels. target: B,S,N,C, the query's feature on every frame. stride: model pixels
    per feature cell.
    """
    B, S = tracks.shape[:2]
    coords = tracks / stride
    target = target.float()
    frames = torch.arange(S, device=tracks.device)
    sampled = corr.sample(frames, coords).float()  # B,S,N,C
    appearance = torch.nn.functional.cosine_similarity(sampled, target, dim=-1)
    side = 2 * corr.radius + 1
    window = corr.lookup(target[:, :, :, None], coords, levels=1)[:, :, :, 0].float()  # B,S,N,side^2
    own = ((target * target).sum(dim=-1, keepdim=True) / target.shape[-1] ** 0.5).clamp_min(1e-12)  # lookup scale
    mass = torch.softmax(window / own / PEAK_TEMPERATURE, dim=-1).view(*window.shape[:3], side, side)
    near = slice(corr.radius - PEAK_RADIUS, corr.radius + PEAK_RADIUS + 1)
    peak = mass[..., near, near].sum(dim=(-2, -1))
    return torch.stack([appearance, peak], dim=-1)


def distance_256(xy, reference, video_size):
    """Distances between ...,2 positions in a video of ``video_size`` (H, W), in pixels of
    the frame scaled to 256 x 256."""
    H, W = video_size
    scale = np.array([256.0 / W, 256.0 / H])
    return np.linalg.norm((np.asarray(xy, np.float64) - reference) * scale, axis=-1).astype(np.float32)
