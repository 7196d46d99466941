"""Checks of arguments and settings, made before any work starts.

Every entry point checks its values with these before it reads or writes anything, so a
zero, negative or fractional size, count or frequency, a misspelt flag or an unknown choice
is one line naming the value, never a traceback hours into a run. Each raises
``SettingsError`` with the value's name (as the caller gives it, e.g. ``--B``) and what it
must be.
"""

import math
import numbers

import numpy as np

from utils.errors import SettingsError


def is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_whole(value):
    """An integer, or a real number without a fractional part (512.0)."""
    return is_integer(value) or (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
                                 and float(value).is_integer())


def check_count(name, value, minimum=0, maximum=None):
    """``value`` as an int; SettingsError unless it is an integer from ``minimum`` (to ``maximum``)."""
    if not is_integer(value) or value < minimum or (maximum is not None and value > maximum):
        bounds = f'of at least {minimum}' if maximum is None else f'from {minimum} to {maximum}'
        raise SettingsError(f'{name} must be an integer {bounds}; got {value!r}')
    return int(value)


def check_positive(name, value):
    """``value`` as a float; SettingsError unless it is a finite number above 0."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise SettingsError(f'{name} must be a number above 0; got {value!r}')
    return float(value)


def check_flag(name, value):
    """``value`` as a bool; SettingsError unless it is True or False (a misspelt ``--flag=Flase``
    would otherwise read as true)."""
    if not isinstance(value, (bool, np.bool_)):
        raise SettingsError(f'{name} must be True or False; got {value!r}')
    return bool(value)


def check_choice(name, value, choices):
    """``value``; SettingsError unless it is one of ``choices``."""
    if value not in choices:
        raise SettingsError(f'{name} must be one of {", ".join(map(repr, choices))}; got {value!r}')
    return value


def check_size(name, value, minimum=1, multiple=1):
    """(H, W) as ints; SettingsError unless ``value`` holds two integers, each at least
    ``minimum`` and a multiple of ``multiple`` (``--crop_size=384,512``); 512.0 counts as 512."""
    rule = f'two integers H,W of at least {minimum}' + (f' and multiples of {multiple}' if multiple > 1 else '')
    try:
        H, W = value
    except (TypeError, ValueError):
        raise SettingsError(f'{name} must be {rule}; got {value!r}') from None
    if not all(is_whole(v) and v >= minimum and v % multiple == 0 for v in (H, W)):
        raise SettingsError(f'{name} must be {rule}; got {value!r}')
    return int(H), int(W)
