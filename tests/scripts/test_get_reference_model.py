"""get_reference_model.sh fails cleanly without network and installs a good archive."""

import io
import os
import shutil
import subprocess
import tarfile

from tests.fixtures.scripts import ROOT


def fake_tools(folder, curl_script):
    """A PATH with a fake curl and the real tools the script needs."""
    bin_dir = folder / 'bin'
    bin_dir.mkdir()
    (bin_dir / 'curl').write_text('#!/bin/sh\n' + curl_script)
    (bin_dir / 'curl').chmod(0o755)
    for tool in ('sh', 'mktemp', 'rm', 'mkdir', 'tar', 'gzip', 'find', 'head', 'dirname', 'mv', 'cat'):
        os.symlink(shutil.which(tool), bin_dir / tool)
    return str(bin_dir)


def run_script(cwd, path):
    shutil.copy(os.path.join(ROOT, 'get_reference_model.sh'), cwd)
    return subprocess.run(['sh', 'get_reference_model.sh'], cwd=cwd, env={'PATH': path},
                          capture_output=True, text=True, timeout=60)


def test_no_network_fails_and_leaves_nothing(tmp_path):
    path = fake_tools(tmp_path, 'echo "curl: (6) Could not resolve host" >&2; exit 6\n')
    work = tmp_path / 'work'
    work.mkdir()
    out = run_script(work, path)
    assert out.returncode == 1
    assert 'could not download' in out.stderr
    assert sorted(os.listdir(work)) == ['get_reference_model.sh']


def test_good_archive_is_installed(tmp_path):
    archive = tmp_path / 'ref.tar.gz'
    with tarfile.open(archive, 'w:gz') as tar:
        data = b'checkpoint bytes'
        info = tarfile.TarInfo('reference_model/model-000200000.pth')
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    # fake curl: copy the archive to the -o target
    path = fake_tools(tmp_path, f'while [ "$1" != "-o" ]; do shift; done; cat {archive} > "$2"\n')
    work = tmp_path / 'work'
    work.mkdir()
    out = run_script(work, path)
    assert out.returncode == 0, out.stderr
    assert (work / 'reference_model' / 'model-000200000.pth').read_bytes() == b'checkpoint bytes'
    assert sorted(os.listdir(work)) == ['get_reference_model.sh', 'reference_model']
