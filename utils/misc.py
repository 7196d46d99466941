"""Small helpers shared by the scripts."""

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
