"""Pictures of an evaluation: where and when tracking fails.

Per video, ``track_curves`` keeps four short lists (small enough for the per-video
results file, and all the plots need):
- ``alive[d]``: tracks still within 16 px (at 256x256, the paper's survival convention)
  on every valid frame from their query frame up to d frames after it;
- ``tracks[d]``: tracks that have a frame d frames after their query frame;
- ``err_sum[t]``, ``err_count[t]``: the summed error (px at 256x256) and the number of
  valid points on frame t.
Pooled over videos they give the survival curve (share of tracks alive against frames
since the query) and the mean error against the frame index. ``write_plots`` draws those
and the per-video scores as sorted bars, as PNG files and in tensorboard.
"""

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.files import atomic_path  # noqa: E402
from utils.metrics import SURVIVAL_THRESHOLD  # noqa: E402

MAX_LINES = 60  # videos drawn one by one (thin lines, named bars) up to this many
BAR_METRICS = (('d_avg', 'd_avg (%)', 1.0), ('average_pts_within_thresh', 'delta_avg (%)', 100.0),
               ('average_jaccard', 'AJ (%)', 100.0))
PLOT_NAMES = ('survival', 'per_video', 'error_by_frame')


def track_curves(dists, valids, query_frames):
    """The four per-video lists (see the module docstring).

    dists: T,N distances in px at 256x256; valids: T,N (> 0: the truth exists there);
    query_frames: N ints, each track's query frame.
    """
    dists, valids = np.asarray(dists, dtype=np.float64), np.asarray(valids) > 0
    T = dists.shape[0]
    query_frames = np.asarray(query_frames, dtype=np.int64)
    alive, tracks = np.zeros(T, np.int64), np.zeros(T, np.int64)
    for t in np.unique(query_frames):
        group = query_frames == t
        ok = ~((dists[t:, group] > SURVIVAL_THRESHOLD) & valids[t:, group])  # T-t,n
        alive[:T - t] += np.cumprod(ok, axis=0).sum(axis=1)
        tracks[:T - t] += group.sum()
    err_sum = np.where(valids, dists, 0).sum(axis=1)
    return {'alive': alive.tolist(), 'tracks': tracks.tolist(),
            'err_sum': [round(float(v), 3) for v in err_sum], 'err_count': valids.sum(axis=1).tolist()}


def summed(curves, key):
    """The per-frame sum of ``key`` over videos of different lengths."""
    total = np.zeros(max(len(c[key]) for c in curves))
    for c in curves:
        total[:len(c[key])] += c[key]
    return total


def pooled(curves, numerator, denominator):
    """sum(numerator) / sum(denominator) over the videos, per frame (NaN where 0)."""
    num, den = summed(curves, numerator), summed(curves, denominator)
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(den > 0, num / den, np.nan)


def ratio(c, numerator, denominator):
    return pooled([c], numerator, denominator)


def plot_pooled(ax, values, curves, denominator, color, label):
    """A pooled curve, solid where at least half of its largest support (tracks or points)
    contributes, dotted where fewer do (the tail of the longer videos only)."""
    support = summed(curves, denominator)
    thin = support < 0.5 * support.max()
    ax.plot(np.where(thin, np.nan, values), color=color, linewidth=2.5, label=label)
    if thin.any():
        tail = np.where(thin | np.roll(thin, -1), values, np.nan)  # joined to the solid part
        ax.plot(tail, color=color, linewidth=1.5, linestyle=':', label='(from fewer than half of them)')


def survival_figure(named_curves):
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    curves = [c for _, c in named_curves]
    if len(curves) <= MAX_LINES:
        for c in curves:
            ax.plot(100 * ratio(c, 'alive', 'tracks'), color='0.75', linewidth=0.8)
    share = 100 * pooled(curves, 'alive', 'tracks')
    plot_pooled(ax, share, curves, 'tracks', 'tab:blue', f'all tracks of the {len(curves)} videos')
    below = np.flatnonzero(share < 50)
    if len(below):
        ax.axvline(below[0], color='tab:red', linestyle='--', linewidth=1)
        ax.text(below[0], 52, f' half lost by frame {below[0]}', color='tab:red')
    ax.set(xlabel='frames since the query', ylabel=f'tracks within {SURVIVAL_THRESHOLD} px (%)', ylim=(0, 102),
           title=f'Survival: share of tracks never off by more than {SURVIVAL_THRESHOLD} px (at 256x256)')
    ax.grid(alpha=0.3)
    ax.legend(loc='best', title='grey: one video' if len(curves) <= MAX_LINES else None)
    return fig


def error_figure(named_curves):
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    curves = [c for _, c in named_curves]
    mean = pooled(curves, 'err_sum', 'err_count')
    if len(curves) <= MAX_LINES:
        for c in curves:
            ax.plot(ratio(c, 'err_sum', 'err_count'), color='0.75', linewidth=0.8)
    plot_pooled(ax, mean, curves, 'err_count', 'tab:orange', f'all points of the {len(curves)} videos')
    finite = mean[np.isfinite(mean)]
    if len(finite):
        ax.set_ylim(0, max(1.15 * finite.max(), 1.0))
    ax.set(xlabel='frame', ylabel='mean error (px at 256x256)', title='Error against frame index')
    ax.grid(alpha=0.3)
    ax.legend(loc='best', title='grey: one video' if len(curves) <= MAX_LINES else None)
    return fig


def per_video_figure(per_video):
    """Sorted bars of each per-video score present (d_avg; delta_avg and AJ for TAP-Vid)."""
    shown = [(key, label, scale) for key, label, scale in BAR_METRICS if any(key in v for v in per_video)]
    fig, axes = plt.subplots(len(shown), 1, figsize=(8, 1.2 + 2.6 * len(shown)), dpi=100, squeeze=False)
    for ax, (key, label, scale) in zip(axes[:, 0], shown):
        scored = sorted((v[key] * scale, v['name']) for v in per_video if v.get(key) is not None)  # null: undefined
        values = [value for value, _ in scored]
        ax.bar(range(len(values)), values, color=plt.get_cmap('RdYlGn')(np.array(values) / 100.0), width=0.85)
        mean = float(np.mean(values)) if values else float('nan')
        ax.axhline(mean, color='k', linestyle='--', linewidth=1)
        ax.text(len(values) - 0.5, mean, f'mean {mean:.1f}', va='bottom', ha='right',
                bbox=dict(facecolor='white', alpha=0.8, edgecolor='none'))
        ax.set(ylabel=label, ylim=(0, 100), xlim=(-0.6, max(len(values), 1) - 0.4))
        if len(values) <= MAX_LINES:
            ax.set_xticks(range(len(values)), [name for _, name in scored], rotation=60, ha='right', fontsize=8)
        else:
            ax.set(xticks=[], xlabel=f'{len(values)} videos, worst first')
            worst = '\n'.join(f'{name} {value:.1f}' for value, name in scored[:5])
            ax.text(0.01, 0.97, f'worst:\n{worst}', transform=ax.transAxes, va='top', fontsize=8,
                    bbox=dict(facecolor='white', alpha=0.8, edgecolor='0.8'))
        ax.grid(axis='y', alpha=0.3)
    axes[0, 0].set_title('Per-video scores, worst first')
    fig.tight_layout()
    return fig


def write_plots(per_video, named_curves, prefix, writer=None, step=0):
    """Draw the three plots to ``<prefix>_<plot>.png`` (and tensorboard ``plots/<plot>``
    when ``writer`` is given). per_video: [{'name', metric: value}]; named_curves:
    [(name, track_curves(...))]. Returns the PNG paths."""
    paths = []
    if not per_video:
        return paths
    for name, figure in zip(PLOT_NAMES, (survival_figure(named_curves), per_video_figure(per_video),
                                         error_figure(named_curves))):
        path = f'{prefix}_{name}.png'
        with atomic_path(path) as tmp_path:
            figure.savefig(tmp_path, format='png')
        paths.append(path)
        if writer is not None:
            writer.add_figure(f'plots/{name}', figure, global_step=step)
        plt.close(figure)
    return paths


def write_calibration_plot(path, curves, trust_distance):
    """The calibration of confidence as a PNG: per curve ``(label, bin centres, share
    trusted, count)`` (``evaluation.confidence.calibration``), the share of positions that
    are visible and within ``trust_distance`` px against the confidence they were given,
    and below it how many positions each bin holds."""
    fig, (ax, counts) = plt.subplots(2, 1, figsize=(6, 6.5), dpi=100, height_ratios=(3, 1), sharex=True)
    ax.plot([0, 1], [0, 1], color='0.6', linestyle='--', linewidth=1, label='perfectly calibrated')
    width = 1.0 / (len(curves[0][1]) * (len(curves) + 1))
    for k, (label, centres, share, count) in enumerate(curves):
        ax.plot(centres, share, marker='o', linewidth=2, label=label)
        counts.bar(centres + (k - (len(curves) - 1) / 2) * width, count, width=width, label=label)
    ax.set(ylabel=f'share visible and within {trust_distance:g} px', xlim=(0, 1), ylim=(0, 1),
           title='Calibration of confidence (held-out procedural sequences)')
    ax.grid(alpha=0.3)
    ax.legend(loc='upper left')
    counts.set(xlabel='confidence', ylabel='positions', yscale='log')
    counts.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
