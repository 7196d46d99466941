"""Loading the model for tracking: one call that raises, which every entry point uses."""

import os

from nets.pips2 import Pips
from saverloader import CheckpointError, load
from utils.distributed import default_device
from utils.errors import SettingsError


def load_pips(init_dir, device=None, stride=8):
    """A Pips model with the newest checkpoint of ``init_dir`` (loaded strictly), in eval
    mode on ``device`` (None: CUDA when available, else the CPU).

    An empty ``init_dir`` runs untrained weights on purpose, with a warning. A missing
    folder or a checkpoint that cannot be read or does not fit raises ``CheckpointError``
    saying what to do.
    """
    if stride != 8:
        raise SettingsError(f'--stride must be 8 (the model and its checkpoints use 8); got {stride}')
    model = Pips(stride=stride)
    init_dir = str(init_dir) if init_dir else ''
    if not init_dir:
        print('warning: --init_dir is empty, running UNTRAINED weights: the tracks are meaningless')
    elif os.path.isfile(init_dir):
        raise CheckpointError(f'{init_dir}: --init_dir is the folder that holds model-<step>.pth checkpoints, '
                              f'not a file; pass --init_dir={os.path.dirname(init_dir) or "."}')
    elif not os.path.isdir(init_dir):
        raise CheckpointError(f'{init_dir}: no model here; run `sh get_reference_model.sh` first '
                              "(or pass --init_dir='' to run untrained weights)")
    else:
        load(init_dir, model)
    return model.to(default_device(device)).eval()
