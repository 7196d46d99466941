"""Checkpoints: the original file format, strict loading, clear failures."""

import errno
import io
import os

import pytest
import torch

import saverloader
from nets.pips2 import Pips
from saverloader import CheckpointError


def small_inputs():
    torch.manual_seed(0)
    return torch.rand(1, 3, 2, 2) * 120, torch.rand(1, 3, 3, 128, 128) * 255


def make_model_and_optimizer():
    torch.manual_seed(1)
    model = Pips()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 1e-4, 100, pct_start=0.1,
                                                    cycle_momentum=False, anneal_strategy='linear')
    return model, optimizer, scheduler


def test_round_trip_is_bit_identical(tmp_path):
    model, optimizer, scheduler = make_model_and_optimizer()
    trajs, rgbs = small_inputs()
    model(trajs, rgbs, iters=1, trajs_g=trajs)[3].backward()
    optimizer.step()
    scheduler.step()
    path = saverloader.save(str(tmp_path), optimizer, model, 1234, scheduler=scheduler)
    assert os.path.basename(path) == 'model-000001234.pth'
    ckpt = torch.load(path, weights_only=True)
    assert set(ckpt) == {'model_state_dict', 'optimizer_state_dict', 'scheduler_state_dict'}

    fresh, fresh_opt, fresh_sched = make_model_and_optimizer()
    torch.manual_seed(7)
    fresh = Pips()
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-4)
    step = saverloader.load(str(tmp_path), fresh, optimizer=fresh_opt, scheduler=fresh_sched)
    assert step == 1234
    model.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(model(trajs, rgbs, iters=2)[0][-1], fresh(trajs, rgbs, iters=2)[0][-1])
    assert fresh_sched.state_dict()['last_epoch'] == scheduler.state_dict()['last_epoch']
    saved_state = optimizer.state_dict()['state']
    for key, value in fresh_opt.state_dict()['state'].items():
        assert torch.equal(value['exp_avg'], saved_state[key]['exp_avg'])


def test_module_prefix_accepted(tmp_path):
    model = Pips()
    state = {'module.' + k: v for k, v in model.state_dict().items()}
    torch.save({'model_state_dict': state}, tmp_path / 'model-000000005.pth')
    fresh = Pips()
    assert saverloader.load(str(tmp_path), fresh) == 5
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, model.state_dict()[k])


def test_saving_a_wrapped_model_writes_bare_keys(tmp_path):
    wrapped = torch.nn.DataParallel(Pips())
    path = saverloader.save(str(tmp_path), None, wrapped, 3)
    keys = torch.load(path, weights_only=True)['model_state_dict']
    assert not any(k.startswith('module.') for k in keys)


def test_highest_step_and_rotation(tmp_path):
    model = Pips()
    for step in (10, 30, 20, 40):
        saverloader.save(str(tmp_path), None, model, step, keep_latest=2)
    assert sorted(os.listdir(tmp_path)) == ['model-000000030.pth', 'model-000000040.pth']
    assert saverloader.load(str(tmp_path), Pips()) == 40
    assert saverloader.load(str(tmp_path), Pips(), step=30) == 30
    with pytest.raises(CheckpointError, match='no checkpoint for step 10'):
        saverloader.load(str(tmp_path), Pips(), step=10)


def test_missing_and_empty_directories_fail(tmp_path):
    with pytest.raises(CheckpointError, match='does not exist'):
        saverloader.load(str(tmp_path / 'nope'), Pips())
    with pytest.raises(CheckpointError, match='no model-<step>.pth'):
        saverloader.load(str(tmp_path), Pips())


class FullDiskFile(io.FileIO):
    """A file on a disk that fills up after ``room`` bytes: the write that does not fit
    writes what fits, then fails as the OS does (ENOSPC)."""

    room = 1 << 20

    def write(self, data):
        data = memoryview(data).cast('B')
        free = max(self.room - self.tell(), 0)
        if len(data) > free:
            super().write(data[:free])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(data)


def test_a_full_disk_leaves_no_partial_file_and_keeps_the_older_checkpoints(tmp_path, monkeypatch):
    older = saverloader.save(str(tmp_path), None, Pips(), 1)
    monkeypatch.setattr(saverloader, 'open', lambda path, mode: FullDiskFile(path, mode), raising=False)
    with pytest.raises(CheckpointError) as info:
        saverloader.save(str(tmp_path), None, Pips(), 2, keep_latest=1)
    path = tmp_path / 'model-000000002.pth'
    assert str(info.value) == (f'{path}: cannot write the checkpoint (No space left on device); nothing was '
                               'written and the older checkpoints are kept')
    assert os.listdir(tmp_path) == [os.path.basename(older)]  # neither the new file nor its temporary
    assert saverloader.load(str(tmp_path), Pips()) == 1


@pytest.mark.parametrize('damage', ['truncated', 'garbage', 'empty'])
def test_a_damaged_file_fails_with_one_short_line(tmp_path, damage):
    path = saverloader.save(str(tmp_path), None, Pips(), 1)
    data = open(path, 'rb').read()
    damaged = {'truncated': data[:len(data) // 2], 'garbage': b'not a checkpoint at all', 'empty': b''}[damage]
    with open(path, 'wb') as f:
        f.write(damaged)
    with pytest.raises(CheckpointError) as info:
        saverloader.load(str(tmp_path), Pips())
    assert str(info.value) == f'{path}: not a readable PyTorch checkpoint'


def test_mismatched_keys_and_shapes_fail_naming_them(tmp_path):
    state = Pips().state_dict()
    state.pop('fnet.conv1.bias')
    state['extra.weight'] = torch.zeros(1)
    state['delta_block.dense.weight'] = torch.zeros(3, 1024)
    torch.save({'model_state_dict': state}, tmp_path / 'model-000000001.pth')
    with pytest.raises(CheckpointError) as info:
        saverloader.load(str(tmp_path), Pips())
    message = str(info.value)
    assert 'model-000000001.pth' in message
    assert 'missing keys: fnet.conv1.bias' in message
    assert 'unexpected keys: extra.weight' in message
    assert 'delta_block.dense.weight (3, 1024) vs model (2, 1024)' in message


def test_ignore_load_keeps_model_values(tmp_path):
    source = Pips()
    torch.save({'model_state_dict': {k: v for k, v in source.state_dict().items() if 'dense' not in k}},
               tmp_path / 'model-000000002.pth')
    target = Pips()
    before = target.delta_block.dense.weight.clone()
    saverloader.load(str(tmp_path), target, ignore_load=['dense'])
    assert torch.equal(target.delta_block.dense.weight, before)
    assert torch.equal(target.fnet.conv1.weight, source.fnet.conv1.weight)


def test_missing_optimizer_state_fails(tmp_path):
    model = Pips()
    saverloader.save(str(tmp_path), None, model, 1)
    with pytest.raises(CheckpointError, match='has no optimizer_state_dict'):
        saverloader.load(str(tmp_path), Pips(), optimizer=torch.optim.SGD(model.parameters(), lr=1))
