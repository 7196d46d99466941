"""Loading the model says what to do when there is nothing to load."""

import os

import pytest
import torch

from saverloader import CheckpointError
from tracking.model import checkpoint_file


@pytest.mark.parametrize('make, advice', [
    (lambda d: d / 'missing', "no model here; run `sh get_reference_model.sh` first (or pass --init_dir=''"),
    (lambda d: d, 'no model-<step>.pth checkpoint in this folder; run `sh get_reference_model.sh` first, or point '
                  '--init_dir at the folder that holds them'),
    (lambda d: torch.save({}, d / 'model.pth') or d, 'no model-<step>.pth checkpoint in this folder; it holds '
                                                     'model.pth: a checkpoint must be named model-<step>.pth'),
    (lambda d: torch.save({}, d / 'model-000000005.pth') or d / 'model-000000005.pth',
     '--init_dir is the folder that holds model-<step>.pth checkpoints, not a file; pass --init_dir='),
])
def test_an_init_dir_without_a_checkpoint_says_what_to_do(tmp_path, make, advice):
    init_dir = make(tmp_path)
    with pytest.raises(CheckpointError) as info:
        checkpoint_file(init_dir)
    assert str(info.value).startswith(f'{init_dir}: {advice}')


def test_the_newest_checkpoint_is_the_one_named(tmp_path):
    for step in (5, 12, 9):
        torch.save({}, tmp_path / f'model-{step:09d}.pth')
    assert checkpoint_file(tmp_path) == os.path.realpath(tmp_path / 'model-000000012.pth')
    assert checkpoint_file('') == ''
