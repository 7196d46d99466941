"""The argument checks every entry point makes before any work: values that cannot work are
one SettingsError naming them; good values come back normalised."""

import math

import numpy as np
import pytest

from utils.checks import check_choice, check_count, check_flag, check_positive, check_size
from utils.errors import SettingsError


@pytest.mark.parametrize('value', [0, -3, 2.5, 2.0, True, '4', None])
def test_counts_must_be_whole_numbers_from_the_minimum(value):
    with pytest.raises(SettingsError, match=rf"^--B must be an integer of at least 1; got {value!r}$"):
        check_count('--B', value, minimum=1)


def test_counts_within_bounds_come_back_as_int():
    assert check_count('--B', np.int64(3), minimum=1) == 3 and type(check_count('--B', np.int64(3), 1)) is int
    assert check_count('--max_iters', 0) == 0
    with pytest.raises(SettingsError, match='^H must be an integer from 128 to 4096; got 5000$'):
        check_count('H', 5000, 128, 4096)


@pytest.mark.parametrize('value', [0, -1e-4, math.nan, math.inf, 'fast', True])
def test_positive_numbers_are_finite_and_above_zero(value):
    with pytest.raises(SettingsError, match=r'^--lr must be a number above 0; got '):
        check_positive('--lr', value)


def test_positive_numbers_come_back_as_float():
    assert check_positive('--lr', 5e-4) == 5e-4 and check_positive('--stale_lock_s', 600) == 600.0


@pytest.mark.parametrize('value', ['Flase', 'True', 1, None])
def test_a_misspelt_flag_is_not_read_as_true(value):
    with pytest.raises(SettingsError, match=rf"^--use_augs must be True or False; got {value!r}$"):
        check_flag('--use_augs', value)


def test_choices_are_named():
    assert check_choice('--amp', 'bf16', ('', 'bf16', 'fp16')) == 'bf16'
    with pytest.raises(SettingsError, match=r"^--amp must be one of '', 'bf16', 'fp16'; got 'fp8'$"):
        check_choice('--amp', 'fp8', ('', 'bf16', 'fp16'))


@pytest.mark.parametrize('value', [384, (384,), (384, 512, 3), (384, 500), (384.5, 512), (0, 512), ('a', 'b'), None])
def test_sizes_are_two_whole_multiples(value):
    with pytest.raises(SettingsError, match=r'^--crop_size must be two integers H,W of at least 128 and multiples '
                                            r'of 32; got '):
        check_size('--crop_size', value, minimum=128, multiple=32)


def test_sizes_come_back_as_int_pairs():
    assert check_size('--crop_size', [384.0, np.int32(512)], minimum=128, multiple=32) == (384, 512)
    assert check_size('image_size', (130, 901), minimum=128) == (130, 901)
