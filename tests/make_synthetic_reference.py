"""Write tests/data/synthetic_reference.npz: what the ORIGINAL PIPs++ loaders output on small
sets from datasets/synthetic.py (not run by pytest).

    python tests/make_synthetic_reference.py /path/to/a/checkout/of/aharley/pips2

Training loader (the original's ``datasets/pointodysseydataset.py``, loaded as
tests/make_pod_reference.py loads it, run the same way: no augmentations, the branch forced,
the crop corner recorded, N set to the number of tracks that survive so that all of them
come back): the set TRAIN, clips CASES. Per case the file holds ``<case>_meta`` (clip
index, crop branch, corner x0, y0, N) and the tracks sorted by frame-0 position, masks,
edges and frame sums as ``tests.make_pod_reference.store`` writes them.

Test loader (the original's ``datasets/pointodysseydataset_fullseq.py``): the set TEST, one
sequence of 540x960 (the size the original assumes), whose anno.npz gets, for the original
only, the older ``visibilities`` array (0 occluded, 1 visible, 2 invalid) that it reads.
Stored: ``test_trajs`` T,n,2, ``test_visibs`` and ``test_valids`` T,n (uint8), in the
original's order.

The sets' settings are stored as ``train_settings`` and ``test_settings`` (seed, n_seqs, T,
H, W, N) so the test regenerates the same data.
"""

import importlib.util
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from datasets import synthetic  # noqa: E402
from tests.make_pod_reference import load_original, plain_cases  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'synthetic_reference.npz')
TRAIN = dict(seed=5, n_seqs=2, T=16, H=128, W=160, N=300)
CASES = [(0, 'resize'), (3, 'crop'), (7, 'resize'), (11, 'crop')]  # (clip index, branch); 6 clips per sequence
TEST = dict(seed=6, n_seqs=1, T=10, H=540, W=960, N=300)
TEST_N = 96  # tracks the test loaders pick


def write_set(root, dset, settings):
    """Generate a set with the library, as the test does."""
    for name, outcome in synthetic.make_sequences(root, dset=dset, **settings):
        print(f'{dset}/{name}: {outcome}')


def add_legacy_visibilities(seq_dir):
    """Add the 0/1/2 ``visibilities`` array the original test loader reads to anno.npz."""
    path = os.path.join(seq_dir, 'anno.npz')
    with np.load(path) as anno:
        arrays = dict(anno)
    arrays['visibilities'] = np.where(arrays['valids'], arrays['visibs'].astype(np.uint8), 2)
    np.savez(path, **arrays)


def run_test_loader(repo, root):
    """The original test loader's sample for the one TEST sequence (utils stubbed by load_original)."""
    path = os.path.join(repo, 'datasets', 'pointodysseydataset_fullseq.py')
    spec = importlib.util.spec_from_file_location('original_pod_fullseq', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PointOdysseyDataset(dataset_location=root, dset='test', N=TEST_N)[0]


def main(repo):
    module = load_original(repo)
    root = tempfile.mkdtemp()
    write_set(root, 'train', TRAIN)
    write_set(root, 'test', TEST)
    out = {'train_settings': np.array([TRAIN[k] for k in ('seed', 'n_seqs', 'T', 'H', 'W', 'N')]),
           'test_settings': np.array([TEST[k] for k in ('seed', 'n_seqs', 'T', 'H', 'W', 'N')])}
    plain_cases(module, root, CASES, out)
    add_legacy_visibilities(os.path.join(root, 'test', synthetic.sequence_name(0)))
    sample = run_test_loader(repo, root)
    out['test_trajs'] = sample['trajs'].numpy()
    out['test_visibs'] = sample['visibs'].numpy().astype(np.uint8)
    out['test_valids'] = sample['valids'].numpy().astype(np.uint8)
    print(f'test loader: {out["test_trajs"].shape[1]} tracks')
    np.savez_compressed(OUT, **out)
    print('wrote', OUT, os.path.getsize(OUT), 'bytes')


if __name__ == '__main__':
    main(sys.argv[1])
