"""What every run prints and is named by: the run name and the model's parameter count."""

import datetime

from prettytable import PrettyTable


def run_name(*parts):
    """The original's run names: the descriptive ``parts`` joined by '_', then the start
    time (HHMMSS), e.g. ``run_name('1_128_i16', 'tap01')`` -> '1_128_i16_tap01_153012'."""
    return '_'.join([*(str(p) for p in parts), datetime.datetime.now().strftime('%H%M%S')])


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
