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


def main(repo):
    module = load_original(repo)
    root = tempfile.mkdtemp()
    write_reference_sequence(os.path.join(root, 'train', 'seq_000'))
    out = {}
    for case, (index, branch) in enumerate(CASES):
        N = survivors(module, root, index, branch)
        sample, gotit, corner = run_case(module, root, index, branch, N=N, req_full=False)
        assert gotit
        trajs = sample['trajs'].numpy()
        order = np.lexsort((trajs[0, :, 1], trajs[0, :, 0]))
        out[f'{case}_meta'] = np.array([index, branch == 'crop', corner[0], corner[1], N])
        out[f'{case}_trajs'] = trajs[:, order]
        out[f'{case}_visibs'] = sample['visibs'].numpy()[:, order].astype(np.uint8)
        out[f'{case}_valids'] = sample['valids'].numpy()[:, order].astype(np.uint8)
        out[f'{case}_masks'] = sample['masks'].numpy()[:, 0]
        out[f'{case}_edges'] = sample['edges'].numpy()[:, 0]
        out[f'{case}_rgb_sums'] = sample['rgbs'].numpy().astype(np.int64).sum(axis=(2, 3))  # S,3
        print(f'case {case}: clip {index}, {branch}, corner {corner}, {N} tracks')
    np.savez_compressed(OUT, **out)
    print('wrote', OUT)


if __name__ == '__main__':
    main(sys.argv[1])
