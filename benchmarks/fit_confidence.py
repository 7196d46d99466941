"""Fit the confidence rules (tracking/confidence.py) on procedural sequences with ground-truth occlusion.

    python benchmarks/fit_confidence.py --init_dir=./bench_learning/checkpoints/<run> --data_dir=./confidence_data

Makes (or reuses) --n_seqs procedural sequences of the fitting set (seed
evaluation.confidence.FIT_SEED) under <data_dir>/fit, tracks up to --N tracks of each
from their TAP-Vid queries with every signal on, and fits by logistic regression the
rule with the forward-backward distance (FULL_RULE) and the rule without it
(LIGHT_RULE), for "visible and within 8 px at 256x256" on the frames the TAP-Vid
metrics score; each threshold is the one with the best mean average Jaccard. Prints the
two rules as the lines to put in tracking/confidence.py, the ROC AUC of each signal
alone and of each rule, and writes them to --out_json if given.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from evaluation.confidence import (  # noqa: E402
    FIT_SEED,
    check_measure,
    fit_rule,
    measure_split,
    procedural_split,
    roc_auc,
    signal_aucs,
)
from tracking import INTERACTIVE, load_pips  # noqa: E402
from utils import cli  # noqa: E402


def main(init_dir='./reference_model', data_dir='./confidence_data', n_seqs=24, T=40, H=128, W=160, N=64,
         S=8, iters=6, image_size=None, query_mode='first', device=None, out_json=None):
    """Fit on --n_seqs sequences of T frames of H x W (--N tracks tracked per sequence, windows of --S
    frames, --iters iterations, at --image_size, None: the frames' own size)."""
    check_measure(N=N, query_mode=query_mode)
    seq_dirs = procedural_split(data_dir, 'fit', n_seqs=n_seqs, seed=FIT_SEED, T=T, H=H, W=W, N=max(N, 256))
    model = load_pips(init_dir, device)
    options = INTERACTIVE.replace(S=S, iters=iters, image_size=image_size, confidence=True, consistency=True)
    measured = measure_split(model, seq_dirs, options, N, query_mode)
    rules = {'FULL_RULE': fit_rule(measured, consistency=True), 'LIGHT_RULE': fit_rule(measured, consistency=False)}
    aucs = signal_aucs(measured)
    for name, rule in rules.items():
        aucs[name] = roc_auc(measured, lambda m, rule=rule: rule.confidence(m.signals))
    print('ROC AUC for "visible and within 8 px" on the fitting set: '
          + ', '.join(f'{name} {value:.3f}' for name, value in aucs.items()))
    for name, rule in rules.items():
        print(f'{name} = {rule!r}')
    if out_json:
        with open(out_json, 'w') as f:
            json.dump({'rules': {name: rule.__dict__ for name, rule in rules.items()}, 'auc': aucs,
                       'settings': dict(n_seqs=n_seqs, T=T, H=H, W=W, N=N, S=S, iters=iters, image_size=image_size,
                                        query_mode=query_mode, init_dir=str(init_dir))}, f, indent=1)
        print(f'wrote {out_json}')


if __name__ == '__main__':
    cli.run(main)
