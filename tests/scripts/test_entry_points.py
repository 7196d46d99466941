"""Every interactive entry point tracks alike: Tracker, demo.py and track_videos.py give the
same tracks for the same video, queries and settings, and the same default grid."""

import numpy as np
import pytest

from tests.fixtures.videos import moving_video
from tracking import INTERACTIVE, Tracker, load_pips
from tracking.queries import default_queries
from utils.video import write_mp4

SETTINGS = dict(S=6, iters=1, image_size=(128, 160))
FLAGS = ['--S=6', '--iters=1', '--image_size=128,160']
T, H, W = 8, 128, 144


@pytest.fixture(scope='module')
def clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp('clip')
    write_mp4(folder / 'videos' / 'clip.mp4', moving_video(T, H, W), fps=10)
    return folder


def script_tracks(run_script, tmp_path, clip, checkpoint, queries_csv=None, flags=()):
    """(demo.py's npz, track_videos.py's npz) of the clip, with the scripts' ``flags``."""
    demo_args = [f'--filename={clip}/videos/clip.mp4', '--max_iters=0', f'--out_dir={tmp_path}/demo',
                 f'--log_dir={tmp_path}/logs']
    batch_args = [f'--videos={clip}/videos', f'--out_dir={tmp_path}/batch']
    if queries_csv:
        demo_args.append(f'--queries={queries_csv}')
        batch_args.append(f'--queries_dir={queries_csv.parent}')
    for script, args in (('demo.py', demo_args), ('track_videos.py', batch_args)):
        out = run_script(script, *args, *FLAGS, *flags, f'--init_dir={checkpoint}')
        assert out.returncode == 0, out.stderr
    return np.load(tmp_path / 'demo' / 'clip.npz'), np.load(tmp_path / 'batch' / 'clip.npz')


def test_same_queries_give_the_same_tracks_everywhere(clip, tmp_path, golden_checkpoint, run_script, one_thread):
    queries = np.array([[0, 20.5, 30.0], [0, 100.0, 90.25], [5, 60.0, 64.0], [7, 130.0, 110.0]])
    (tmp_path / 'q').mkdir()
    np.savetxt(tmp_path / 'q' / 'clip.csv', queries, delimiter=',', header='t,x,y', comments='')
    tracker = Tracker(load_pips(golden_checkpoint, 'cpu'), **SETTINGS)
    api = tracker(str(clip / 'videos' / 'clip.mp4'), queries).tracks
    demo, batch = script_tracks(run_script, tmp_path, clip, golden_checkpoint, tmp_path / 'q' / 'clip.csv')
    assert api.shape == (T, 4, 2)
    np.testing.assert_array_equal(demo['trajs'], api)
    np.testing.assert_array_equal(batch['trajs'], api)


def test_the_default_grid_is_the_same_everywhere(clip, tmp_path, golden_checkpoint, run_script, one_thread):
    tracker = Tracker(load_pips(golden_checkpoint, 'cpu'), **SETTINGS)
    api = tracker(str(clip / 'videos' / 'clip.mp4')).tracks
    demo, batch = script_tracks(run_script, tmp_path, clip, golden_checkpoint)
    grid = default_queries(H, W, SETTINGS['image_size'])
    assert len(grid) == 1024 and tracker.options == INTERACTIVE.replace(**SETTINGS)
    np.testing.assert_array_equal(demo['queries'], grid.astype(np.float32))
    np.testing.assert_array_equal(batch['queries'], grid.astype(np.float32))
    np.testing.assert_array_equal(demo['trajs'], api)
    np.testing.assert_array_equal(batch['trajs'], api)


def test_visibility_and_confidence_are_the_same_everywhere_and_can_be_left_out(clip, tmp_path, golden_checkpoint,
                                                                               run_script, one_thread):
    queries = np.array([[0, 20.5, 30.0], [4, 100.0, 90.25], [7, 130.0, 110.0]])
    (tmp_path / 'q').mkdir()
    np.savetxt(tmp_path / 'q' / 'clip.csv', queries, delimiter=',', header='t,x,y', comments='')
    api = Tracker(load_pips(golden_checkpoint, 'cpu'), **SETTINGS)(str(clip / 'videos' / 'clip.mp4'), queries)
    demo, batch = script_tracks(run_script, tmp_path / 'on', clip, golden_checkpoint, tmp_path / 'q' / 'clip.csv')
    assert api.confidence.shape == (T, 3)
    for npz in (demo, batch):
        np.testing.assert_array_equal(npz['visibs'], api.visible)
        np.testing.assert_array_equal(npz['confidence'], api.confidence)
    demo, batch = script_tracks(run_script, tmp_path / 'off', clip, golden_checkpoint, tmp_path / 'q' / 'clip.csv',
                                flags=['--confidence=False'])
    for npz in (demo, batch):
        assert 'visibs' not in npz and 'confidence' not in npz
        np.testing.assert_array_equal(npz['trajs'], api.tracks)
