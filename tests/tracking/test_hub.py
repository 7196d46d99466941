"""torch.hub.load(..., 'pips2', source='local') (hubconf.py) and the cached reference
checkpoint behind it (tracking/reference.py): untrained, cached, downloaded, offline."""

import functools
import http.server
import io
import os
import re
import shutil
import tarfile
import threading

import numpy as np
import pytest
import torch

from saverloader import CheckpointError
from tests.fixtures.scripts import ROOT
from tests.fixtures.videos import moving_video
from tests.golden import golden_state_dict
from tracking import INTERACTIVE, Tracker
from tracking.reference import CACHE_FOLDER, REFERENCE_CHECKPOINT, REFERENCE_URL, cached_reference_model

SMALL = dict(S=8, iters=1, image_size=(128, 160))


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """torch hub's folder moved to an empty temporary one for the test."""
    monkeypatch.setattr(torch.hub, '_hub_dir', str(tmp_path / 'hub'))
    return tmp_path / 'hub'


def hub_load(**kwargs):
    return torch.hub.load(ROOT, 'pips2', source='local', device='cpu', **kwargs)


def test_untrained_tracker_from_the_hub_tracks_a_video(hub_dir, one_thread):
    tracker = hub_load(pretrained=False, **SMALL)
    assert isinstance(tracker, Tracker) and tracker.options == INTERACTIVE.replace(**SMALL)
    video = moving_video(9)
    tracks = tracker(video, [[0, 40.0, 30.0], [4, 60.0, 50.0]]).tracks
    assert tracks.shape == (9, 2, 2) and np.isfinite(tracks).all()
    np.testing.assert_array_equal(tracks[4, 1], [60.0, 50.0])
    assert not hub_dir.exists()  # nothing fetched or cached


def test_pretrained_tracker_loads_the_cached_checkpoint(hub_dir, golden_checkpoint):
    cache = hub_dir / 'checkpoints' / CACHE_FOLDER
    cache.mkdir(parents=True)
    checkpoint, = [name for name in os.listdir(golden_checkpoint) if name.endswith('.pth')]
    shutil.copy(os.path.join(golden_checkpoint, checkpoint), cache / REFERENCE_CHECKPOINT)
    tracker = hub_load(pretrained=True)
    assert tracker.options == INTERACTIVE
    for name, value in golden_state_dict().items():
        assert torch.equal(tracker.model.state_dict()[name], value), name


def test_offline_pretrained_load_fails_with_one_clear_error_and_leaves_nothing(hub_dir, monkeypatch):
    for variable in ('https_proxy', 'HTTPS_PROXY'):  # a closed local port stands for no network
        monkeypatch.setenv(variable, 'http://127.0.0.1:9')
    monkeypatch.delenv('no_proxy', raising=False)
    monkeypatch.delenv('NO_PROXY', raising=False)
    with pytest.raises(CheckpointError) as error:
        hub_load(pretrained=True)
    cache = hub_dir / 'checkpoints' / CACHE_FOLDER
    assert str(error.value).startswith('cannot download the reference model from https://www.dropbox.com/')
    assert f'run `sh get_reference_model.sh` where there is one and copy reference_model/{REFERENCE_CHECKPOINT} ' \
           f'into {cache}/' in str(error.value)
    assert os.listdir(cache) == []


def reference_archive(state_dict, member='reference_model/' + REFERENCE_CHECKPOINT):
    """A .tar.gz like the original's, holding a checkpoint of ``state_dict`` as ``member``."""
    checkpoint = io.BytesIO()
    torch.save({'model_state_dict': state_dict}, checkpoint)
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode='w:gz') as tar:
        info = tarfile.TarInfo(member)
        info.size = len(checkpoint.getvalue())
        tar.addfile(info, io.BytesIO(checkpoint.getvalue()))
    return archive.getvalue()


@pytest.fixture
def serve(tmp_path):
    """``serve(name, data)``: the URL of ``data`` on a web server on this machine's loopback;
    counts the requests in ``serve.requests``."""
    folder = tmp_path / 'www'
    folder.mkdir()
    requests = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), functools.partial(Handler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def put(name, data):
        (folder / name).write_bytes(data)
        return f'http://127.0.0.1:{server.server_address[1]}/{name}'

    put.requests = requests
    yield put
    server.shutdown()
    thread.join()


def test_reference_checkpoint_is_downloaded_once_and_kept(tmp_path, serve):
    url = serve('reference_model.tar.gz', reference_archive(golden_state_dict()))
    cache = tmp_path / 'cache'
    assert cached_reference_model(cache, url=url, progress=False) == str(cache)
    assert cached_reference_model(cache, url=url, progress=False) == str(cache)
    assert len(serve.requests) == 1 and os.listdir(cache) == [REFERENCE_CHECKPOINT]
    tracker = Tracker.from_checkpoint(str(cache), device='cpu')
    assert torch.equal(tracker.model.state_dict()['fnet.conv1.weight'], golden_state_dict()['fnet.conv1.weight'])


@pytest.mark.parametrize('data, message', [
    (b'not an archive', 'not a valid .tar.gz archive'),
    (reference_archive({}, member='reference_model/other.pth'), 'the downloaded archive holds no model-000200000'),
])
def test_bad_downloads_are_one_clear_error_and_leave_nothing(tmp_path, serve, data, message):
    url = serve('reference_model.tar.gz', data)
    cache = tmp_path / 'cache'
    with pytest.raises(CheckpointError, match=message):
        cached_reference_model(cache, url=url, progress=False)
    assert os.listdir(cache) == []


def test_the_hub_and_the_download_script_fetch_the_same_archive():
    with open(os.path.join(ROOT, 'get_reference_model.sh')) as f:
        assert re.search(r"^URL='(.*)'$", f.read(), re.M).group(1) == REFERENCE_URL
