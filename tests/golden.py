"""Golden weights and data of the original PIPs++ (see tests/data and ../shared/golden)."""

import json
import os

import numpy as np
import torch

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')
MASK64 = (1 << 64) - 1


def splitmix_uniform(k, n):
    """n numbers in [0, 1) from the golden splitmix64 stream number k (float64)."""
    i = np.arange(1, n + 1, dtype=np.uint64)
    with np.errstate(over='ignore'):
        z = np.uint64((k * 0xD1B54A32D192ED03) & MASK64) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53


def golden_state_dict():
    """The deterministic weights the golden outputs were produced with."""
    with open(os.path.join(DATA, 'state_dict_shapes.json')) as f:
        shapes = json.load(f)
    state = {}
    for k, key in enumerate(sorted(shapes)):
        shape = shapes[key]
        n = int(np.prod(shape))
        v = 2 * splitmix_uniform(k, n) - 1
        fan_in = n / shape[0]
        if key.endswith('weight') and len(shape) == 2:
            w = v * 0.05 * np.sqrt(3 / fan_in)
        elif key.endswith('weight') and len(shape) > 2:
            w = v * np.sqrt(3 / fan_in)
        elif key.endswith('weight'):
            w = 1 + 0.1 * v
        else:
            w = 0.01 * v
        state[key] = torch.from_numpy(w.reshape(shape).astype(np.float32))
    return state


def load_case(name):
    """One golden forward pass (small or batch) as a dict of numpy arrays."""
    return dict(np.load(os.path.join(DATA, f'{name}.npz')))


def save_golden_checkpoint(folder):
    """Write the golden weights as a step-1 checkpoint in ``folder`` (an --init_dir); returns it."""
    import saverloader
    from nets.pips2 import Pips

    model = Pips()
    model.load_state_dict(golden_state_dict())
    saverloader.save(str(folder), None, model, 1)
    return str(folder)
