"""Loading the model for tracking: one call that raises, which every entry point uses."""

import os

from nets.pips2 import Pips
from saverloader import CheckpointError, list_checkpoints, load
from utils.distributed import default_device
from utils.errors import SettingsError

GET_MODEL = 'run `sh get_reference_model.sh` first'


def checkpoint_file(init_dir):
    """The checkpoint ``load_pips(init_dir)`` loads, as a real path ('' for an empty
    ``init_dir``: untrained weights); CheckpointError saying what to do when there is none."""
    init_dir = str(init_dir) if init_dir else ''
    if not init_dir:
        return ''
    if os.path.isfile(init_dir):
        raise CheckpointError(f'{init_dir}: --init_dir is the folder that holds model-<step>.pth checkpoints, '
                              f'not a file; pass --init_dir={os.path.dirname(init_dir) or "."}')
    if not os.path.isdir(init_dir):
        raise CheckpointError(f'{init_dir}: no model here; {GET_MODEL} '
                              "(or pass --init_dir='' to run untrained weights)")
    found = list_checkpoints(init_dir)
    if not found:
        others = sorted(name for name in os.listdir(init_dir) if name.endswith(('.pth', '.pt')))
        hint = (f'it holds {", ".join(others[:3])}: a checkpoint must be named model-<step>.pth' if others
                else f'{GET_MODEL}, or point --init_dir at the folder that holds them')
        raise CheckpointError(f'{init_dir}: no model-<step>.pth checkpoint in this folder; {hint}')
    return os.path.realpath(found[max(found)])


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
    if checkpoint_file(init_dir):
        load(str(init_dir), model)
    else:
        print('warning: --init_dir is empty, running UNTRAINED weights: the tracks are meaningless')
    return model.to(default_device(device)).eval()
