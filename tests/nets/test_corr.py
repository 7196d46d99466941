"""Correlation lookups: the first levels alone are the leading columns of all levels."""

import pytest
import torch

from nets.corr import FullVolumeCorr, WindowedCorr


@pytest.mark.parametrize('corr_class', [WindowedCorr, FullVolumeCorr])
def test_a_lookup_of_the_first_levels_is_the_leading_columns_of_all_levels(corr_class):
    torch.manual_seed(0)
    fmaps = torch.randn(1, 2, 16, 24, 32)  # B,S,C,H,W
    corr = corr_class(fmaps)
    targets = torch.randn(1, 2, 5, 2, 16)  # B,S,N,K,C
    coords = torch.rand(1, 2, 5, 2) * torch.tensor([31.0, 23.0])
    every = corr.lookup(targets, coords)  # B,S,N,K,4*49
    for levels in (1, 2):
        torch.testing.assert_close(corr.lookup(targets, coords, levels=levels), every[..., :levels * 49],
                                   rtol=0, atol=0)
