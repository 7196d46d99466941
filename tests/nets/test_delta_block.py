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
def test_gemm_path_is_as_accurate_as_the_conv1d_path_golden_float32(name, monkeypatch):
    # Float32 rounding differs between AVX2, AVX-512 and AMX kernels and grows through the
    # iterations (each reads features at the rounded estimates), so both float32 paths are
    # measured against the float64 oracle, and the GEMM path's error is bounded by a multiple
    # of the Conv1d path's own error on this CPU. Measured on an AMD EPYC (AVX-512), max over
    # iterations: small 3.2e-4 px (GEMM) vs 1.7e-4 px (Conv1d), batch 7.9e-5 vs 8.5e-5 px;
    # ratio at most 1.9, bound 4. First iteration: 2.4e-5 px at most, bound 1e-4.
    case = load_case(name)
    gemm, conv1d = gemm_and_conv1d_tracks(case, torch.float32, monkeypatch)
    monkeypatch.undo()
    oracle = gemm_and_conv1d_tracks(case, torch.float64, monkeypatch)[0]
    gemm_error = (gemm.double() - oracle).abs().amax(dim=(1, 2, 3, 4))  # per iteration
    conv1d_error = (conv1d.double() - oracle).abs().amax(dim=(1, 2, 3, 4))
    assert gemm_error[0] < 1e-4
    assert gemm_error.max() <= 4 * conv1d_error.max()
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
