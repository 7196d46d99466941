"""The GEMM delta block against its nn.Conv1d formulation (nets.pips2.reference_delta_block)."""

import numpy as np
import pytest
import torch

import nets.pips2
from nets.pips2 import DeltaBlock, Pips, reference_delta_block
from tests.golden import golden_state_dict, load_case


def golden_delta_block():
    prefix = 'delta_block.'
    block = DeltaBlock()
    block.load_state_dict({k[len(prefix):]: v for k, v in golden_state_dict().items() if k.startswith(prefix)})
    return block


def run_tracks(model, case, dtype=torch.float32):
    rgbs = torch.from_numpy(case['rgbs']).to(dtype)
    with torch.no_grad():
        preds = model(torch.from_numpy(case['trajs_e0']).to(dtype), rgbs, iters=int(case['iters']),
                      beautify=bool(case['beautify']))[0]
    return torch.stack(preds)


def gemm_and_conv1d_tracks(case, dtype, monkeypatch):
    model = Pips().eval()
    model.load_state_dict(golden_state_dict())
    model.to(dtype)
    gemm = run_tracks(model, case, dtype)
    monkeypatch.setattr(model.delta_block, 'forward', lambda f, g: reference_delta_block(model.delta_block, f, g))
    return gemm, run_tracks(model, case, dtype)


@pytest.mark.parametrize('name', ['small', 'batch'])
def test_gemm_path_tracks_as_the_conv1d_path_golden_float32(name, monkeypatch):
    case = load_case(name)
    gemm, conv1d = gemm_and_conv1d_tracks(case, torch.float32, monkeypatch)
    # one delta-block pass on the same inputs: within 1e-4 px. Later iterations read features
    # at the (rounded) estimates, so float32 rounding differences grow a little with iterations.
    assert (gemm[0] - conv1d[0]).abs().max() < 1e-4
    assert (gemm - conv1d).abs().max() < 4e-4
    np.testing.assert_allclose(gemm.numpy(), case['preds'], atol=2e-3, rtol=0)


def test_gemm_path_tracks_as_the_conv1d_path_float64(monkeypatch):
    gemm, conv1d = gemm_and_conv1d_tracks(load_case('small'), torch.float64, monkeypatch)
    assert (gemm - conv1d).abs().max() < 1e-9  # the same function up to rounding, every iteration


def delta_block_gradients(block, fn, dtype, seed=0):
    """Outputs and gradients (inputs, then parameters) of a weighted sum of fn's updates."""
    generator = torch.Generator().manual_seed(seed)
    fcorrs = torch.randn(2, 8, 10, 588, generator=generator, dtype=dtype).requires_grad_()
    flows = (3 * torch.randn(2, 8, 10, 2, generator=generator, dtype=dtype)).requires_grad_()
    weights = torch.randn(2, 8, 10, 2, generator=generator, dtype=dtype)
    out = fn(fcorrs, flows)
    return out, torch.autograd.grad((out * weights).sum(), [fcorrs, flows, *block.parameters()])


def test_gemm_path_gradients_match_the_conv1d_path_float64(monkeypatch):
    block = golden_delta_block().double()
    monkeypatch.setitem(nets.pips2.DELTA_CHUNK, 'cpu', 4)  # 2 tracks per chunk: 5 chunks
    out, grads = delta_block_gradients(block, block, torch.float64)
    monkeypatch.setitem(nets.pips2.DELTA_CHUNK, 'cpu', 1024)
    out_ref, grads_ref = delta_block_gradients(block, lambda f, g: reference_delta_block(block, f, g),
                                               torch.float64)
    assert (out - out_ref).abs().max() < 1e-12
    scale = max(g.abs().max() for g in grads_ref)
    names = ['fcorrs', 'flows'] + [name for name, _ in block.named_parameters()]
    for name, got, want in zip(names, grads, grads_ref):
        assert (got - want).abs().max() <= 1e-10 * scale, name


def test_gemm_path_gradients_close_to_the_conv1d_path_float32():
    torch.manual_seed(5)
    block = DeltaBlock()  # PyTorch's default initialisation
    grads = delta_block_gradients(block, block, torch.float32)[1]
    grads_ref = delta_block_gradients(block, lambda f, g: reference_delta_block(block, f, g), torch.float32)[1]
    names = ['fcorrs', 'flows'] + [name for name, _ in block.named_parameters()]
    for name, got, want in zip(names, grads, grads_ref):
        if name.endswith('conv1.conv.bias'):  # an instance norm follows: the exact gradient is zero
            assert got.norm() < 1e-4 * grads_ref[0].norm(), name
        else:
            assert (got - want).norm() <= 3e-3 * want.norm(), name


def test_delta_block_rows_are_independent_tracks():
    # a track's update depends on its own sequence only, whatever the chunking and batch
    torch.manual_seed(1)
    block = golden_delta_block()
    fcorrs, flows = torch.randn(2, 6, 5, 588), torch.randn(2, 6, 5, 2)
    with torch.no_grad():
        full = block(fcorrs, flows)
        one = block(fcorrs[1:, :, 3:4], flows[1:, :, 3:4])
    assert full.shape == (2, 6, 5, 2) and full.dtype == torch.float32
    assert (full[1:, :, 3:4] - one).abs().max() < 1e-5
