"""The model against the original's golden outputs, and its input checks."""

import numpy as np
import pytest
import torch

from nets.pips2 import Pips
from tests.golden import DATA, golden_state_dict, load_case
from utils.runs import count_parameters

DEVICES = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
torch.backends.cudnn.allow_tf32 = False  # the golden numbers and the agreement checks are exact float32
torch.backends.cuda.matmul.allow_tf32 = False


def run_case(model, case, device):
    def tensor(key):
        return torch.from_numpy(case[key]).to(device)

    rgbs = tensor('rgbs').float()
    iters = int(case['iters'])
    with torch.no_grad():
        preds, preds_anim, feats, _ = model(tensor('trajs_e0'), rgbs, iters=iters,
                                            beautify=bool(case['beautify']))
        _, _, _, loss = model(tensor('loss_init'), rgbs, iters=iters, trajs_g=tensor('loss_trajs_g'),
                              valids=tensor('loss_valids'))
    return ([p.cpu() for p in preds], [p.cpu() for p in preds_anim], [f.cpu() for f in feats],
            loss.cpu())


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('name', ['small', 'batch'])
def test_matches_original_golden_outputs(name, device):
    model = Pips().eval()
    model.load_state_dict(golden_state_dict(), strict=True)
    model.to(device)
    case = load_case(name)
    preds, preds_anim, feats, loss = run_case(model, case, device)
    iters = int(case['iters'])
    assert len(preds) == iters + 1 and len(preds_anim) == iters + 2
    np.testing.assert_allclose(preds[-1].numpy(), case['preds'][-1], atol=2e-3, rtol=0)
    np.testing.assert_allclose(torch.stack(preds).numpy(), case['preds'], atol=2e-3, rtol=0)
    np.testing.assert_allclose(torch.stack(preds_anim).numpy(), case['preds_anim'], atol=2e-3, rtol=0)
    for got, key in zip(feats, ['feats1', 'feats2', 'feats4']):
        np.testing.assert_allclose(got.numpy(), case[key], atol=1e-3, rtol=0)
    assert abs(float(loss) - float(case['loss'])) <= 1e-4 * abs(float(case['loss']))


def test_state_dict_matches_original_names_and_size(capsys):
    import json
    import os
    with open(os.path.join(DATA, 'state_dict_shapes.json')) as f:
        shapes = json.load(f)
    state = Pips().state_dict()
    assert list(state) == list(shapes)
    assert {k: list(v.shape) for k, v in state.items()} == shapes
    assert count_parameters(Pips()) == 17565410
    assert 'total params: 17.57 M' in capsys.readouterr().out


def random_scene(dtype, B=2, S=6, N=20, H=128, W=192):
    rgbs = torch.rand(B, S, 3, H, W, dtype=dtype) * 255
    # points inside, near the borders and outside the frame exercise the zero padding
    trajs = torch.rand(B, 1, N, 2, dtype=dtype) * torch.tensor([W + 60.0, H + 60.0], dtype=dtype) - 30
    return rgbs, trajs + torch.cumsum(torch.randn(B, S, N, 2, dtype=dtype) * 3, dim=1)


def assert_lookups_agree(state, dtype, tol, device='cpu'):
    windowed = Pips(corr_impl='windowed').eval().to(dtype)
    full = Pips(corr_impl='full').eval().to(dtype)
    windowed.load_state_dict(state)
    full.load_state_dict(state)
    windowed.to(device)
    full.to(device)
    rgbs, trajs = (t.to(device) for t in random_scene(dtype))
    with torch.no_grad():
        out_w = windowed(trajs, rgbs, iters=3)
        out_f = full(trajs, rgbs, iters=3)
    assert out_w[0][-1].dtype == dtype
    for a, b in zip(out_w[0] + list(out_w[2]), out_f[0] + list(out_f[2])):
        assert (a - b).abs().max() < tol


def test_windowed_and_full_volume_agree_float64():
    # in float64 the two lookups compute the same function up to rounding
    torch.manual_seed(3)
    assert_lookups_agree(Pips().state_dict(), torch.float64, 1e-4)


@pytest.mark.parametrize('device', DEVICES)
def test_windowed_and_full_volume_agree_float32_golden_weights(device):
    torch.manual_seed(4)
    assert_lookups_agree(golden_state_dict(), torch.float32, 1e-3, device)


def test_feat_init_replaces_targets_and_grads_flow():
    torch.manual_seed(0)
    model = Pips()
    rgbs = torch.rand(1, 4, 3, 128, 128) * 255
    trajs = torch.full((1, 4, 3, 2), 64.0)
    _, _, feats, _ = model(trajs, rgbs, iters=1)
    zeros = tuple(torch.zeros_like(f) for f in feats)
    a = model(trajs, rgbs, iters=1)[0][-1]
    b = model(trajs, rgbs, iters=1, feat_init=zeros)[0][-1]
    assert not torch.allclose(a, b)
    loss = model(trajs, rgbs, iters=2, trajs_g=trajs + 1, valids=torch.ones(1, 4, 3))[3]
    loss.backward()
    assert model.fnet.conv1.weight.grad.abs().sum() > 0
    assert model.delta_block.dense.weight.grad.abs().sum() > 0


def test_frame_zero_stays_at_query_and_outputs_finite_at_min_size():
    torch.manual_seed(1)
    model = Pips().eval()
    rgbs = torch.rand(1, 5, 3, 128, 128) * 255
    trajs = torch.rand(1, 1, 7, 2).repeat(1, 5, 1, 1) * 127
    with torch.no_grad():
        preds, preds_anim, _, loss = model(trajs, rgbs, iters=2)
    assert loss is None
    assert torch.isfinite(preds[-1]).all()
    assert torch.equal(preds[-1][:, 0], trajs[:, 0])
    assert torch.equal(preds_anim[0], trajs)


@pytest.mark.parametrize('trajs_shape, rgbs_shape, message', [
    ((1, 4, 5), (1, 4, 3, 128, 128), 'trajs_e0 must have shape B,S,N,2'),
    ((1, 4, 5, 2), (1, 4, 128, 128), 'rgbs must have shape B,S,3,H,W'),
    ((1, 4, 5, 2), (2, 4, 3, 128, 128), 'but trajs_e0 has B,S'),
    ((1, 4, 5, 2), (1, 3, 3, 128, 128), 'but trajs_e0 has B,S'),
    ((1, 1, 5, 2), (1, 1, 3, 128, 128), 'at least 2 frames'),
    ((1, 4, 0, 2), (1, 4, 3, 128, 128), 'at least one point'),
    ((1, 4, 5, 2), (1, 4, 3, 120, 256), 'at least 128x128'),
])
def test_bad_inputs_raise_clear_errors(trajs_shape, rgbs_shape, message):
    model = Pips()
    with pytest.raises(ValueError, match=message):
        model(torch.zeros(trajs_shape), torch.zeros(rgbs_shape))


def test_non_finite_coordinates_rejected():
    trajs = torch.zeros(1, 3, 2, 2)
    trajs[0, 1, 0, 0] = float('nan')
    with pytest.raises(ValueError, match='NaN or infinite'):
        Pips()(trajs, torch.zeros(1, 3, 3, 128, 128))


def test_bad_feat_init_rejected():
    with pytest.raises(ValueError, match='feat_init'):
        Pips()(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 3, 128, 128),
               feat_init=(torch.zeros(1, 3, 5, 128),) * 3)
