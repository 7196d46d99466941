"""Small helpers shared by the scripts."""

import os
import sys

import torch
from prettytable import PrettyTable


def count_parameters(model, min_numel=100000):
    """Print a table of the trainable tensors over ``min_numel`` elements and the total.

    Returns the total number of trainable parameters.
    """
    table = PrettyTable(['Modules', 'Parameters'])
    total = 0
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.numel() > min_numel:
            table.add_row([name, param.numel()])
        total += param.numel()
    print(table)
    print('total params: %.2f M' % (total / 1e6))
    return total


def fail(message):
    """Stop a script on a user error: one line on stderr, exit status 1, no traceback."""
    print(f'error: {message}', file=sys.stderr)
    sys.exit(1)


def default_device(device=None):
    """--device, or CUDA when available, else the CPU."""
    return str(device) if device else ('cuda' if torch.cuda.is_available() else 'cpu')


def load_model(init_dir, device, stride=8):
    """A Pips model with the newest checkpoint of ``init_dir`` (strictly), in eval mode.

    An empty ``init_dir`` runs untrained weights on purpose, with a warning. A missing
    folder or a bad checkpoint stops the script with one line saying what to do.
    """
    from nets.pips2 import Pips
    from saverloader import CheckpointError, load

    model = Pips(stride=stride)
    if not init_dir:
        print('warning: --init_dir is empty, running UNTRAINED weights: the tracks are meaningless')
    elif not os.path.isdir(init_dir):
        fail(f'{init_dir}: no model here; run `sh get_reference_model.sh` first '
             "(or pass --init_dir='' to run untrained weights)")
    else:
        try:
            load(init_dir, model)
        except CheckpointError as exc:
            fail(str(exc))
    return model.to(device).eval()
