"""Write a procedural point-tracking dataset in the PointOdyssey layout (see datasets/synthetic.py).

    python make_synthetic_dataset.py --out_dir=./pod_synthetic --n_seqs=200   # in as many shells as you like

Sequence i goes to ``<out_dir>/<dset>/seq_<i:05d>/`` and depends only on (seed, i): a run
with a larger n_seqs extends a set, and runs in parallel shells share the work (each
sequence is written to a hidden temporary folder and renamed into place; finished ones
are skipped; leftovers of killed runs are removed). The result loads with
``datasets.pointodysseydataset.PointOdysseyClips`` (train.py's --dataset_location=<out_dir>)
and ``datasets.pointodysseydataset_fullseq.PointOdysseyTestSequences``.
"""

import collections
import os
import time

from tqdm import tqdm

from datasets import synthetic
from utils import cli


def main(out_dir='./pod_synthetic', dset='train', n_seqs=100, T=40, H=256, W=320, N=600, seed=0, motion_blur=False):
    """Make sequences 0..n_seqs-1 of T frames of H x W with N tracks each, drawn from
    ``seed``; --motion_blur blurs moving layers over the shutter time."""
    start = time.time()
    sequences = synthetic.make_sequences(out_dir, dset=dset, n_seqs=n_seqs, seed=seed, T=T, H=H, W=W, N=N,
                                         motion_blur=motion_blur)
    split_dir = os.path.join(str(out_dir), dset)
    try:
        outcomes = collections.Counter(outcome for _, outcome in tqdm(sequences, total=n_seqs, unit='seq'))
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f'the finished sequences are kept in {split_dir}, none half-written; run the same '
                                'command again to make the rest') from None
    elapsed = time.time() - start
    rate = f' ({elapsed / outcomes["written"]:.2f} s per sequence written)' if outcomes['written'] else ''
    print(f'{outcomes["written"]} written{rate}, {outcomes["present"]} already there, {outcomes["busy"]} being '
          f'written by other runs; {elapsed:.1f} s in all; in {split_dir}')


if __name__ == '__main__':
    cli.run(main)
