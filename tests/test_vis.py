"""Drawing and tensorboard summaries, read back with tensorboard's EventAccumulator."""

import numpy as np
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboardX import SummaryWriter

from utils.vis import Summ_writer, draw_tracks_stream, preprocess_color


def test_trails_are_drawn_at_the_tracks():
    frames = [np.zeros((60, 80, 3), np.uint8) for _ in range(5)]
    trajs = np.stack([np.array([[10.0 + 5 * t, 20.0], [60.0, 40.0 - 3 * t]]) for t in range(5)])
    out = list(draw_tracks_stream(frames, trajs))
    assert len(out) == 5 and out[0].shape == (60, 80, 3) and out[0].dtype == np.uint8
    for t, image in enumerate(out):
        for x, y in trajs[t].astype(int):
            assert image[y, x].sum() > 100  # the dot at the current position is coloured
    assert out[4][20, 20].sum() > 0  # the trail behind point 0
    assert out[0][50, 5].sum() == 0  # far from every track stays black
    assert not np.array_equal(out[0][20, 10], out[0][40, 60])  # points get different colours


def test_stream_stops_at_the_end_of_the_tracks():
    frames = (np.zeros((20, 20, 3), np.uint8) for _ in range(10))
    assert len(list(draw_tracks_stream(frames, np.zeros((4, 1, 2))))) == 4


def test_summaries_read_back(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    sw = Summ_writer(writer, global_step=4, log_freq=2, fps=4, scalar_freq=1, just_gif=True)
    assert sw.save_this
    sw.summ_scalar('_/d_avg', 12.5)
    sw.summ_scalar('_/skipped_nan', float('nan'))
    rgbs = preprocess_color(torch.randint(0, 255, (1, 3, 3, 32, 48)).float())
    trajs = torch.rand(1, 3, 5, 2) * 30
    rgb0 = sw.summ_traj2ds_on_rgb('', trajs, rgbs[:, 0], cmap='winter', only_return=True, frame_id=1.5)
    assert rgb0.shape == (1, 3, 32, 48) and rgb0.dtype == torch.uint8
    sw.summ_rgbs('3_test/animated', [preprocess_color(rgb0), rgbs[:, 1]])
    sw.summ_traj2ds_on_rgbs('outputs/trajs_on_rgbs', trajs, rgbs, cmap='hot')
    sw.summ_traj2ds_on_rgbs2('2_outputs/rgbs2', trajs, torch.ones(1, 3, 5), rgbs, frame_ids=[0, 1, 2])
    sw.summ_pts_on_rgbs('0_inputs/pts', trajs, rgbs)
    writer.close()
    events = EventAccumulator(str(tmp_path), size_guidance={'images': 0, 'scalars': 0})
    events.Reload()
    assert events.Scalars('_/d_avg')[0].value == 12.5
    assert '_/skipped_nan' not in events.Tags()['scalars']
    images = events.Tags()['images']
    for tag in ['3_test/animated', 'outputs/trajs_on_rgbs', '2_outputs/rgbs2', '0_inputs/pts']:
        assert tag in images
        assert events.Images(tag)[0].encoded_image_string[:3] == b'GIF'
