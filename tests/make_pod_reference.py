"""Write tests/data/pod_reference.npz: what the ORIGINAL PIPs++ training loader outputs on
the sequence of tests.fixtures.pointodyssey.write_reference_sequence (not run by pytest).

    python tests/make_pod_reference.py /path/to/a/checkout/of/aharley/pips2

The original's ``datasets/pointodysseydataset.py`` and ``utils/misc.py`` are loaded from
that checkout (its drawing modules are stubbed; albumentations 1.x-only arguments are
ignored with a warning). Without augmentations its loader is deterministic apart from the
branch (plain resize or plain crop, forced here), the crop corner (recorded) and the
farthest-point sampling order (a set is compared): with N equal to the number of tracks
that survive, it returns all of them. Per case the file holds the clip index, branch, crop
corner (x0, y0) and N, the surviving tracks sorted by their frame-0 position (trajs
S,N,2, visibs and valids S,N), the masks and edges S,H,W and per-frame channel sums of
the frames.

Augmented cases (``aug<k>_*``) run the original with its augmentations, the photometric
recipe replaced by a no-op (albumentations draws its own numbers), on seeds whose clip takes
the spatial path without time reversal or flips (the original's bugs there are fixed here),
after patching np.pad to pad 2-D masks (the original crashes on them). They also hold every
number the original drew from numpy (``draws``), in order, for the test to replay.
"""

import importlib.util
import os
import sys
import tempfile
import types

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.fixtures.pointodyssey import write_reference_sequence  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'pod_reference.npz')
S, CROP, RESIZE = 8, (96, 128), (160, 224)
CASES = [(0, 'resize'), (3, 'crop'), (5, 'resize'), (1, 'crop')]  # (clip index, branch)
AUG_CASES = 3


class Survivors(Exception):
    """Raised by the sampling stub to report how many tracks reached it."""


def load_original(repo):
    """The original's dataset module, with its utils package stubbed around utils/misc.py."""
    utils = types.ModuleType('utils')
    spec = importlib.util.spec_from_file_location('utils.misc', os.path.join(repo, 'utils', 'misc.py'))
    utils.misc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils.misc)
    utils.basic, utils.improc = types.ModuleType('utils.basic'), types.ModuleType('utils.improc')
    sys.modules.update({'utils': utils, 'utils.misc': utils.misc, 'utils.basic': utils.basic,
                        'utils.improc': utils.improc})
    spec = importlib.util.spec_from_file_location('original_pod', os.path.join(repo, 'datasets',
                                                                                'pointodysseydataset.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_case(module, root, index, branch, N, req_full):
    """The original's (sample, crop corner or None) for one clip, branch forced."""
    dataset = module.PointOdysseyDataset(dataset_location=root, dset='train', use_augs=False, S=S, N=N,
                                         strides=[1, 2], resize_size=RESIZE, crop_size=CROP, req_full=req_full)
    draws = []
    randint = np.random.randint

    def recorded_randint(*args, **kwargs):
        draws.append(randint(*args, **kwargs))
        return draws[-1]

    np.random.seed(index)
    saved = np.random.rand, np.random.randint
    np.random.rand = lambda: 0.25 if branch == 'crop' else 0.75
    np.random.randint = recorded_randint
    try:
        sample, gotit = dataset.getitem_helper(index)
    finally:
        np.random.rand, np.random.randint = saved
    return sample, gotit, (int(draws[1]), int(draws[0])) if branch == 'crop' else (-1, -1)


def survivors(module, root, index, branch):
    """How many tracks the original keeps for this clip (its sampler is stopped there)."""
    def count(xym, npoint):
        raise Survivors(len(xym))
    sampler = module.utils.misc.farthest_point_sample_py
    module.utils.misc.farthest_point_sample_py = count
    try:
        run_case(module, root, index, branch, N=2, req_full=True)
    except Survivors as found:
        return found.args[0]
    finally:
        module.utils.misc.farthest_point_sample_py = sampler
    raise AssertionError(f'clip {index} was refused')


class Recorder:
    """Records every number drawn by np.random.rand / randint / uniform, and whether the
    spatial path and the time reversal (its only np.flip) ran."""

    def __init__(self, dataset):
        self.draws, self.spatial, self.reversed = [], False, False
        spatial = dataset.add_spatial_augs

        def spatial_path(*args):
            self.spatial = True
            return spatial(*args)
        dataset.add_spatial_augs = spatial_path

    def patch(self):
        originals = np.random.rand, np.random.randint, np.random.uniform, np.flip, np.pad

        def record(draw):
            def recorded(*args, **kwargs):
                self.draws.append(draw(*args, **kwargs))
                return self.draws[-1]
            return recorded

        def flip(*args, **kwargs):
            self.reversed = True
            return originals[3](*args, **kwargs)

        def pad(array, widths, *args, **kwargs):  # the original pads 2-D masks with 3 widths
            return originals[4](array, widths[:array.ndim], *args, **kwargs)
        np.random.rand, np.random.randint, np.random.uniform = (record(d) for d in originals[:3])
        np.flip, np.pad = flip, pad
        return originals

    @staticmethod
    def unpatch(originals):
        np.random.rand, np.random.randint, np.random.uniform, np.flip, np.pad = originals


def run_augmented(module, root, index, seed, N, req_full, recorders):
    """(sample, gotit) of the original with augmentations, photometric ones off; its
    Recorder is appended to ``recorders``."""
    import albumentations as A
    dataset = module.PointOdysseyDataset(dataset_location=root, dset='train', use_augs=True, S=S, N=N,
                                         strides=[1, 2], resize_size=RESIZE, crop_size=CROP, req_full=req_full)
    dataset.color_augmenter = A.ReplayCompose([])
    recorder = Recorder(dataset)
    recorders.append(recorder)
    np.random.seed(seed)
    originals = recorder.patch()
    try:
        sample, gotit = dataset.getitem_helper(index)
    finally:
        recorder.unpatch(originals)
    return sample, gotit


def augmented_cases(module, root):
    """[(index, seed, N, sample, draws)] of AUG_CASES clips on the spatial path without
    reversal or flips (the last two rand draws before sampling are the flips)."""
    cases = []
    for seed in range(200):
        index = seed % 6
        sampler = module.utils.misc.farthest_point_sample_py
        module.utils.misc.farthest_point_sample_py = lambda xym, npoint: (_ for _ in ()).throw(Survivors(len(xym)))
        recorders = []
        try:
            run_augmented(module, root, index, seed, N=2, req_full=True, recorders=recorders)
            continue  # refused before sampling
        except Survivors as found:
            N = found.args[0]
        finally:
            module.utils.misc.farthest_point_sample_py = sampler
        flips = [d for d in recorders[0].draws if isinstance(d, float)][-2:]
        if not recorders[0].spatial or recorders[0].reversed or min(flips) < 0.5:
            continue
        sample, gotit = run_augmented(module, root, index, seed, N=N, req_full=False, recorders=recorders)
        assert gotit and recorders[1].draws[:len(recorders[0].draws)] == recorders[0].draws
        cases.append((index, seed, N, sample, recorders[1].draws))
        if len(cases) == AUG_CASES:
            return cases
    raise AssertionError('too few augmented cases')


def store(out, key, sample):
    """The sample's tracks (sorted by frame-0 position), masks, edges and frame sums."""
    trajs = sample['trajs'].numpy()
    order = np.lexsort((trajs[0, :, 1], trajs[0, :, 0]))
    out[f'{key}_trajs'] = trajs[:, order]
    out[f'{key}_visibs'] = sample['visibs'].numpy()[:, order].astype(np.uint8)
    out[f'{key}_valids'] = sample['valids'].numpy()[:, order].astype(np.uint8)
    out[f'{key}_masks'] = sample['masks'].numpy()[:, 0]
    out[f'{key}_edges'] = sample['edges'].numpy()[:, 0]
    out[f'{key}_rgb_sums'] = sample['rgbs'].numpy().astype(np.int64).sum(axis=(2, 3))  # S,3


def plain_cases(module, root, cases, out):
    """Run the original on each (clip index, 'crop' | 'resize') of ``cases`` with all the
    tracks that survive, storing what it cut and returned under ``<case>_...`` in ``out``."""
    for case, (index, branch) in enumerate(cases):
        N = survivors(module, root, index, branch)
        sample, gotit, corner = run_case(module, root, index, branch, N=N, req_full=False)
        assert gotit
        out[f'{case}_meta'] = np.array([index, branch == 'crop', corner[0], corner[1], N])
        store(out, case, sample)
        print(f'case {case}: clip {index}, {branch}, corner {corner}, {N} tracks')


def main(repo):
    module = load_original(repo)
    root = tempfile.mkdtemp()
    write_reference_sequence(os.path.join(root, 'train', 'seq_000'))
    out = {}
    plain_cases(module, root, CASES, out)
    for case, (index, seed, N, sample, draws) in enumerate(augmented_cases(module, root)):
        out[f'aug{case}_meta'] = np.array([index, N])
        out[f'aug{case}_draws'] = np.array(draws, np.float64)
        store(out, f'aug{case}', sample)
        print(f'augmented case {case}: clip {index}, seed {seed}, {len(draws)} draws, {N} tracks')
    np.savez_compressed(OUT, **out)
    print('wrote', OUT)


if __name__ == '__main__':
    main(sys.argv[1])
