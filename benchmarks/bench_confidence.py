"""How well confidence tells trusted positions apart, on held-out procedural sequences.

    python benchmarks/bench_confidence.py --init_dir=./bench_learning/checkpoints/<run> --data_dir=./confidence_data

Makes (or reuses) --n_seqs procedural sequences of the held-out set (seed
evaluation.confidence.HELDOUT_SEED, never used for fitting or training) under
<data_dir>/heldout, tracks up to --N tracks of each from their TAP-Vid queries and
prints, on the frames the TAP-Vid metrics score:
- the ROC AUC of confidence (both rules of tracking/confidence.py) and of each signal
  alone, for "visible and within 8 px at 256x256" against "occluded, or further off";
- occlusion accuracy and average Jaccard with the predicted visibility, against every
  point predicted visible (the published protocol), and <delta^x_avg (the same for both);
- the share of positions predicted visible, and the seconds spent.
It draws the calibration (--plot, a PNG) and writes the figures to --out_json if given.
The same measure on TAP-Vid DAVIS with the reference model is test_on_tap.py's
*_predvis metrics (docs/confidence.md gives the command).
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from evaluation.confidence import (  # noqa: E402
    HELDOUT_SEED,
    TRUST_DISTANCE,
    calibration,
    check_measure,
    measure_split,
    procedural_split,
    roc_auc,
    signal_aucs,
    tapvid_means,
)
from evaluation.plots import write_calibration_plot  # noqa: E402
from tracking import INTERACTIVE, load_pips  # noqa: E402
from tracking.confidence import FULL_RULE, LIGHT_RULE  # noqa: E402
from utils import cli  # noqa: E402

RULES = {'with forward-backward (FULL_RULE)': FULL_RULE, 'appearance + peak (LIGHT_RULE)': LIGHT_RULE}


def visibility_rows(measured):
    """[(label, TAP-Vid means, share predicted visible)]: all visible, then each rule."""
    rows = [('all predicted visible (published)', tapvid_means(measured), 1.0)]
    for label, rule in RULES.items():
        def visible(m, rule=rule):
            return rule.confidence(m.signals) >= rule.threshold
        share = sum(visible(m)[m.scored].sum() for m in measured) / sum(m.scored.sum() for m in measured)
        rows.append((label, tapvid_means(measured, visible), float(share)))
    return rows


def main(init_dir='./reference_model', data_dir='./confidence_data', n_seqs=16, T=40, H=128, W=160, N=64,
         S=8, iters=6, image_size=None, query_mode='first', device=None, plot='./docs/confidence_calibration.png',
         out_json=None):
    """Measure on --n_seqs held-out sequences of T frames of H x W (--N tracks each, windows of --S
    frames, --iters iterations, at --image_size; None: the frames' own size)."""
    check_measure(N=N, query_mode=query_mode)
    seq_dirs = procedural_split(data_dir, 'heldout', n_seqs=n_seqs, seed=HELDOUT_SEED, T=T, H=H, W=W,
                                N=max(N, 256))
    model = load_pips(init_dir, device)
    options = INTERACTIVE.replace(S=S, iters=iters, image_size=image_size, confidence=True, consistency=True)
    start = time.time()
    measured = measure_split(model, seq_dirs, options, N, query_mode)
    seconds = time.time() - start
    aucs = {label: roc_auc(measured, lambda m, rule=rule: rule.confidence(m.signals)) for label, rule in RULES.items()}
    aucs.update(signal_aucs(measured))
    positions = sum(int(m.scored.sum()) for m in measured)
    trusted = sum(int(m.trusted[m.scored].sum()) for m in measured)
    print(f'{len(measured)} held-out sequences, {positions} scored positions, {trusted / positions * 100:.1f}% '
          f'trusted (visible and within {TRUST_DISTANCE:g} px at 256x256); tracked in {seconds:.0f} s')
    print('ROC AUC for trusted against the rest: ' + ', '.join(f'{k} {v:.3f}' for k, v in aucs.items()))
    rows = visibility_rows(measured)
    for label, means, share in rows:
        print(f'{label}: OA {means["occlusion_accuracy"] * 100:.1f}, AJ {means["average_jaccard"] * 100:.1f}, '
              f'<delta_avg {means["average_pts_within_thresh"] * 100:.1f}, {share * 100:.1f}% predicted visible')
    curves = [(label, *calibration(measured, lambda m, rule=rule: rule.confidence(m.signals)))
              for label, rule in RULES.items()]
    if plot:
        write_calibration_plot(plot, curves, TRUST_DISTANCE)
        print(f'wrote {plot}')
    if out_json:
        with open(out_json, 'w') as f:
            json.dump({'auc': aucs, 'visibility': [dict(label=label, share_visible=share, **means)
                                                   for label, means, share in rows],
                       'settings': dict(n_seqs=n_seqs, T=T, H=H, W=W, N=N, S=S, iters=iters, image_size=image_size,
                                        query_mode=query_mode, init_dir=str(init_dir))}, f, indent=1)
        print(f'wrote {out_json}')


if __name__ == '__main__':
    cli.run(main)
