"""Output folders are checked before any work: created, written, synced and left clean."""

import os

import pytest

from tests.fixtures.faults import file_size_limit
from utils.errors import SettingsError
from utils.files import check_writable


def test_a_writable_folder_is_created_and_left_empty(tmp_path):
    check_writable(tmp_path / 'a' / 'b', '--out_dir')
    assert os.listdir(tmp_path / 'a' / 'b') == []


def test_a_folder_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / 'file').write_text('x')
    with pytest.raises(SettingsError) as info:
        check_writable(tmp_path / 'file' / 'out', '--out_dir')
    assert str(info.value) == (f'{tmp_path}/file/out: cannot write here (Not a directory); --out_dir must be a '
                               'writable folder')


def test_a_full_disk_is_found_by_the_probe_and_nothing_is_left(tmp_path):
    with file_size_limit(1024), pytest.raises(SettingsError, match='cannot write here .File too large.; --log_dir'):
        check_writable(tmp_path, '--log_dir')
    assert os.listdir(tmp_path) == []


def test_too_little_free_space_for_the_outputs(tmp_path):
    with pytest.raises(SettingsError, match=r'MB free but the outputs need about 1000000000.0 MB \(--out_dir\)'):
        check_writable(tmp_path, '--out_dir', need_bytes=10 ** 15)
