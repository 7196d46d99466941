"""Precision (nets.precision): bf16 and fp16 inference against float32 on the golden weights;
which devices train in them (the CPU flags mocked)."""

import pytest
import torch

import nets.precision
from nets.pips2 import Pips
from nets.precision import inference_precision, training_autocast
from tests.golden import golden_state_dict, load_case


def golden_model():
    model = Pips().eval()
    model.load_state_dict(golden_state_dict())
    return model


def final_tracks(model, case, precision):
    with torch.no_grad(), inference_precision(precision, 'cpu'):
        preds = model(torch.from_numpy(case['trajs_e0']), torch.from_numpy(case['rgbs']).float(),
                      iters=int(case['iters']))[0]
    return preds[-1]


@pytest.mark.parametrize('precision', ['fp64', 'float32', None, 'BF16'])
def test_unknown_precision_names_the_allowed_ones(precision):
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16; got"):
        with inference_precision(precision, 'cpu'):
            pass


def test_fp32_changes_nothing():
    model = golden_model()
    case = load_case('small')
    with torch.no_grad():
        plain = model(torch.from_numpy(case['trajs_e0']), torch.from_numpy(case['rgbs']).float(), iters=2)[0][-1]
    assert torch.equal(final_tracks(model, dict(case, iters=2), 'fp32'), plain)


@pytest.mark.parametrize('precision, mean_px, max_px', [('bf16', 0.5, 1.5), ('fp16', 0.1, 0.5)])
def test_low_precision_tracks_close_to_fp32_golden(precision, mean_px, max_px):
    # measured on this case: bf16 0.18 px mean, 0.66 px max; fp16 0.03 px mean, 0.14 px max
    model = golden_model()
    case = load_case('batch')
    reference = final_tracks(model, case, 'fp32')
    tracks = final_tracks(model, case, precision)
    assert tracks.dtype == torch.float32
    distance = (tracks - reference).norm(dim=-1)  # B,S,N pixels
    assert distance.mean() < mean_px and distance.max() < max_px
    assert torch.equal(tracks[:, 0], reference[:, 0])  # frame 0 stays the query, exactly


def test_bf16_autocast_training_step_has_float32_gradients():
    torch.manual_seed(0)
    model = Pips()
    rgbs = torch.rand(1, 4, 3, 128, 128) * 255
    trajs = torch.rand(1, 1, 3, 2).repeat(1, 4, 1, 1) * 127
    with torch.autocast('cpu', dtype=torch.bfloat16):
        preds, _, _, loss = model(trajs, rgbs, iters=2, trajs_g=trajs + 1, valids=torch.ones(1, 4, 3))
    assert preds[-1].dtype == torch.float32 and loss.dtype == torch.float32
    loss.backward()
    for name, param in model.named_parameters():
        if name.startswith('norm.'):  # unused (kept for checkpoints)
            continue
        assert param.grad is not None and param.grad.dtype == torch.float32, name
        assert torch.isfinite(param.grad).all(), name
    assert model.fnet.conv1.weight.grad.abs().sum() > 0
    assert model.delta_block.dense.weight.grad.abs().sum() > 0



def cpuinfo_with_flags(tmp_path, flags):
    """A /proc/cpuinfo-like file of two processors with ``flags``."""
    block = f'processor\t: {{}}\nmodel name\t: Test CPU\nflags\t\t: fpu sse2 avx2 avx512f {flags}\n\n'
    path = tmp_path / 'cpuinfo'
    path.write_text(block.format(0) + block.format(1))
    return str(path)


@pytest.mark.parametrize('flag', ['avx512_bf16', 'amx_bf16'])
def test_bf16_training_autocast_on_a_cpu_with_bf16_matrix_units(tmp_path, monkeypatch, flag):
    monkeypatch.setattr(nets.precision, 'CPUINFO', cpuinfo_with_flags(tmp_path, f'amx_tile {flag}'))
    autocast, scaler = training_autocast('bf16', 'cpu')
    with autocast():
        assert torch.is_autocast_enabled('cpu') and torch.get_autocast_dtype('cpu') == torch.bfloat16
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    assert not scaler.is_enabled()  # bf16 keeps float32's range: no loss scaling


@pytest.mark.parametrize('flags', ['avx512_vnni amx_tile amx_int8', None])  # None: no /proc/cpuinfo
def test_bf16_training_refused_on_a_cpu_without_bf16_matrix_units(tmp_path, monkeypatch, flags):
    path = cpuinfo_with_flags(tmp_path, flags) if flags else str(tmp_path / 'no_such_file')
    monkeypatch.setattr(nets.precision, 'CPUINFO', path)
    with pytest.raises(ValueError, match=r'^amp=bf16 on the CPU needs bf16 matrix units \(amx_bf16 or avx512_bf16 '
                                         r'among the flags of .*\), which this CPU lacks; leave --amp empty'):
        training_autocast('bf16', 'cpu')
    assert training_autocast('', 'cpu')[1].is_enabled() is False  # float32 training is always there


def test_fp16_training_needs_cuda():
    with pytest.raises(ValueError, match=r'^amp=fp16 needs a CUDA device \(on the CPU, use bf16\)$'):
        training_autocast('fp16', 'cpu')
