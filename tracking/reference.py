"""The official PIPs++ reference checkpoint, fetched once and kept in torch hub's cache.

``cached_reference_model()`` returns a folder holding ``model-000200000.pth`` (an
``--init_dir``): ``<torch hub dir>/checkpoints/pips2_reference_model``. The first call
downloads the original's archive (the link ``get_reference_model.sh`` uses too) and
keeps only the checkpoint, written under a temporary name and renamed into place, so
an interrupted download leaves nothing behind. Without network it raises one
``CheckpointError`` saying how to put the file there by hand.
"""

import os
import tarfile
import tempfile
import urllib.error

import torch

from saverloader import CheckpointError
from utils.files import atomic_path

REFERENCE_URL = ('https://www.dropbox.com/scl/fi/czdlt2zc2ji2b7zd0pvoe/reference_model.tar.gz'
                 '?rlkey=56ebq4g5dk01kyq8kuismev14&dl=1')
REFERENCE_CHECKPOINT = 'model-000200000.pth'
CACHE_FOLDER = 'pips2_reference_model'


def reference_cache_dir():
    """Where the reference checkpoint is cached: under torch hub's folder (``TORCH_HOME``)."""
    return os.path.join(torch.hub.get_dir(), 'checkpoints', CACHE_FOLDER)


def cached_reference_model(cache_dir=None, url=REFERENCE_URL, progress=True):
    """A folder holding the reference ``model-000200000.pth``, downloaded from ``url`` on the
    first call. CheckpointError when it cannot be fetched or the archive holds no checkpoint."""
    cache_dir = str(cache_dir or reference_cache_dir())
    checkpoint = os.path.join(cache_dir, REFERENCE_CHECKPOINT)
    if os.path.isfile(checkpoint):
        return cache_dir
    os.makedirs(cache_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix='.download-') as work:
        archive = os.path.join(work, 'reference_model.tar.gz')
        try:
            torch.hub.download_url_to_file(url, archive, progress=progress)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, 'reason', None) or exc
            raise CheckpointError(
                f'cannot download the reference model from {url.split("?")[0]} ({reason}). Without network, '
                f'run `sh get_reference_model.sh` where there is one and copy '
                f'reference_model/{REFERENCE_CHECKPOINT} into {cache_dir}/') from None
        with atomic_path(checkpoint) as tmp_path:
            extract_checkpoint(archive, tmp_path)
    return cache_dir


def extract_checkpoint(archive, path):
    """Write the archive's ``model-000200000.pth`` to ``path``; CheckpointError otherwise."""
    try:
        with tarfile.open(archive, 'r:gz') as tar:
            member = next((m for m in tar if m.isfile() and os.path.basename(m.name) == REFERENCE_CHECKPOINT), None)
            if member is None:
                raise CheckpointError(f'the downloaded archive holds no {REFERENCE_CHECKPOINT}')
            with tar.extractfile(member) as source, open(path, 'wb') as target:
                while chunk := source.read(1 << 20):
                    target.write(chunk)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise CheckpointError(f'the downloaded reference model is not a valid .tar.gz archive ({exc})') from None
