"""Drawing (shapes, colours where the tracks are), the tensorboard summaries read back with
tensorboard's EventAccumulator, and get_reference_model.sh failing cleanly offline."""

import os
import shutil
import subprocess

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboardX import SummaryWriter

from tests.fixtures.scripts import ROOT
from utils.vis import (
    Summ_writer,
    back2color,
    colormap_rgb,
    draw_tracks,
    draw_tracks_stream,
    point_colors,
    preprocess_color,
)


def moving_point_clip(T=6, H=60, W=100):
    """Black frames and one point moving right by 8 px a frame along y = 30, plus a static one."""
    frames = np.zeros((T, H, W, 3), np.uint8)
    trajs = np.zeros((T, 2, 2), np.float32)
    trajs[:, 0] = np.stack([10 + 8 * np.arange(T), np.full(T, 30)], axis=1)
    trajs[:, 1] = [80, 10]
    return frames, trajs


def test_draw_tracks_shapes_and_input_untouched():
    frames, trajs = moving_point_clip()
    out = draw_tracks(frames, trajs)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert frames.max() == 0  # drawn on copies


def test_dot_and_fading_trail_in_the_point_colour():
    frames, trajs = moving_point_clip()
    out = draw_tracks(frames, trajs, tail=4)
    color = point_colors(trajs[0], 60, 100)[0].astype(float)
    last = out[-1].astype(float)
    np.testing.assert_array_equal(last[30, 50], color)  # the dot at the current position
    newer, older = last[30, 38], last[30, 22]  # trail behind it, recent and old
    for pixel in (newer, older):
        assert pixel.sum() > 0
        assert np.dot(pixel, color) / np.linalg.norm(pixel) / np.linalg.norm(color) > 0.98  # same hue
    assert newer.sum() > older.sum()  # fading with age
    assert last[30, 5].sum() == 0  # beyond the tail of 4 frames
    assert last[50, 50].sum() == 0  # away from every track


def test_occluded_is_hollow_and_invalid_is_not_drawn():
    frames, trajs = moving_point_clip()
    visibs = np.ones((6, 2))
    visibs[-1, 0] = 0
    valids = np.ones((6, 2))
    valids[:, 1] = 0
    last = draw_tracks(frames, trajs, visibs=visibs, valids=valids)[-1]
    color_sum = int(point_colors(trajs[0], 60, 100)[0].astype(int).sum())
    assert last[27, 50].sum() > 0.8 * color_sum  # a ring 3 px around the occluded point at (50, 30)
    assert last[30, 51].sum() < 10  # hollow inside (ahead of its trail)
    assert draw_tracks(frames, trajs)[-1][30, 51].sum() == color_sum  # where a visible dot is filled
    assert last[:20, 60:].sum() == 0  # the invalid point is not drawn


def test_non_finite_positions_are_skipped():
    frames, trajs = moving_point_clip()
    trajs[4, 0] = np.nan
    trajs[5, 0] = np.inf
    out = draw_tracks(frames, trajs)
    assert out[4, 25:35, 40:].sum() == 0 and out[5, 25:35, 40:].sum() == 0  # no dot, no trail to it
    assert out[5, 30, 26].sum() > 0  # the trail up to frame 3 stays


def test_neighbours_get_related_colours():
    colors = point_colors(np.array([[100, 100], [104, 100], [600, 100], [100, 350]]), 360, 640).astype(int)
    near, far_x, far_y = (np.abs(colors[0] - colors[i]).sum() for i in (1, 2, 3))
    assert near < 20 and far_x > 150 and far_y > 60


def test_stream_reads_frames_lazily_and_stops_after_the_tracks():
    read = []

    def frames():
        for t in range(10):
            read.append(t)
            yield np.zeros((20, 30, 3), np.uint8)

    stream = draw_tracks_stream(frames(), np.full((4, 3, 2), 5.0))
    next(stream)
    assert read == [0]
    assert len(list(stream)) == 3 and read == [0, 1, 2, 3]


def test_color_conversions_round_trip():
    images = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).repeat(1, 3, 1, 1)
    prep = preprocess_color(images)
    assert prep.dtype == torch.float32 and prep.min() == -0.5 and prep.max() == 0.5
    assert torch.equal(back2color(prep), images)
    assert preprocess_color(images.numpy()).dtype == np.float32


def read_events(folder):
    events = EventAccumulator(str(folder), size_guidance={'images': 0, 'scalars': 0})
    events.Reload()
    return events


def test_summaries_write_gifs_and_scalars(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    sw = Summ_writer(writer, global_step=4, log_freq=2, fps=4, scalar_freq=100, just_gif=True)
    assert sw.save_this
    torch.manual_seed(0)
    rgbs = preprocess_color(torch.randint(0, 255, (1, 4, 3, 32, 48)))
    trajs = torch.rand(1, 4, 5, 2) * torch.tensor([47.0, 31.0])
    valids = torch.ones(1, 4, 5)
    sw.summ_scalar('_/d_avg', torch.tensor(12.5))
    sw.summ_scalar('_/nan', float('nan'))
    gt_rgb = sw.summ_traj2ds_on_rgb('', trajs, rgbs[:, 0], valids=valids, cmap='winter', only_return=True)
    assert gt_rgb.shape == (1, 3, 32, 48) and gt_rgb.dtype == torch.uint8
    frames = [sw.summ_traj2ds_on_rgb('', trajs + i, preprocess_color(gt_rgb), valids=valids, cmap='spring',
                                     only_return=True, frame_id=torch.tensor(1.5)) for i in range(3)]
    sw.summ_rgbs('3_test/animated_trajs_on_rgb', frames)
    sw.summ_traj2ds_on_rgb('2_outputs/trajs_e_on_rgb0', trajs, preprocess_color(gt_rgb), cmap='spring',
                           linewidth=2, frame_id=3)
    sw.summ_traj2ds_on_rgbs('outputs/trajs_on_rgbs', trajs, rgbs, cmap='hot', show_dots=False)
    sw.summ_traj2ds_on_rgbs2('2_outputs/trajs_e_on_rgbs2', trajs, valids, rgbs, valids=valids,
                             frame_ids=[0, 4, 8, 12])
    outs = sw.summ_pts_on_rgbs('', trajs, rgbs, valids=valids, cmap='winter', linewidth=3, only_return=True)
    assert outs.shape == (1, 4, 3, 32, 48) and outs.dtype == torch.uint8
    sw.summ_pts_on_rgbs('0_inputs/kps_gv_on_rgbs', trajs, preprocess_color(outs), valids=valids, cmap='spring')
    sw.summ_feats('1_model/0_fmaps', torch.randn(1, 4, 16, 4, 6).unbind(1))
    writer.close()

    events = read_events(tmp_path)
    assert [e.value for e in events.Scalars('_/d_avg')] == [12.5]
    assert events.Tags()['scalars'] == ['_/d_avg']
    gifs = ['3_test/animated_trajs_on_rgb', 'outputs/trajs_on_rgbs', '2_outputs/trajs_e_on_rgbs2',
            '0_inputs/kps_gv_on_rgbs', '1_model/0_fmaps']
    for tag in gifs:
        image = events.Images(tag)[0]
        assert image.step == 4 and image.encoded_image_string[:3] == b'GIF', tag
    still = events.Images('2_outputs/trajs_e_on_rgb0')[0]
    assert still.encoded_image_string[:4] == b'\x89PNG' and (still.width, still.height) == (48, 32)


def test_drawings_use_the_colormaps():
    sw = Summ_writer(None, global_step=1, log_freq=10)
    assert not sw.save_this
    assert sw.summ_traj2ds_on_rgb('x', torch.zeros(1, 3, 1, 2), torch.zeros(1, 3, 8, 8)) is None  # not this step
    rgb = torch.full((1, 3, 40, 60), -0.5)  # black
    trajs = torch.tensor([[10.0, 20.0], [30.0, 20.0], [50.0, 20.0]]).reshape(1, 3, 1, 2)
    drawn = sw.summ_traj2ds_on_rgb('', trajs, rgb, cmap='winter', only_return=True)[0].permute(1, 2, 0).numpy()
    start, end = colormap_rgb('winter', [0.0, 1.0]).astype(int)  # blue, green
    early, late = drawn[20, 20].astype(int), drawn[20, 40].astype(int)
    assert np.abs(early - start).sum() < 40 and np.abs(late - end).sum() < 40  # colour follows time
    labelled = sw.summ_traj2ds_on_rgb('', trajs, rgb, only_return=True, frame_id=0.25)
    assert labelled[0, :, 10:20, 5:30].max() > 200  # white text in the corner
    pts = sw.summ_pts_on_rgbs('', trajs, rgb[:, None].repeat(1, 3, 1, 1, 1), cmap='spring', linewidth=2,
                              only_return=True)
    np.testing.assert_array_equal(pts[0, 1, :, 20, 30].numpy(), colormap_rgb('spring', 0.0))


def test_scalar_frequency_and_tiled_sequences(tmp_path):
    writer = SummaryWriter(str(tmp_path))
    for step in range(1, 7):
        Summ_writer(writer, global_step=step, log_freq=4, scalar_freq=3).summ_scalar('loss', step)
    tiled = Summ_writer(writer, global_step=4, log_freq=4, just_gif=False).summ_rgbs(
        '', [torch.zeros(1, 3, 8, 10, dtype=torch.uint8)] * 3, only_return=True)
    writer.close()
    assert [e.step for e in read_events(tmp_path).Scalars('loss')] == [3, 4, 6]
    assert tiled.shape == (1, 3, 3, 8 * 4, 10)  # each gif frame above all frames stacked


def fake_path(folder, tools):
    """A folder for PATH holding silent stubs of the download tools given (exiting 6, as
    curl does without DNS) and links to the few real tools the script needs before it
    downloads."""
    bin_dir = folder / 'bin'
    bin_dir.mkdir()
    for tool in tools:
        (bin_dir / tool).write_text('#!/bin/sh\nexit 6\n')
        (bin_dir / tool).chmod(0o755)
    for tool in ('sh', 'dirname', 'mkdir', 'rm'):
        os.symlink(shutil.which(tool), bin_dir / tool)
    return str(bin_dir)


@pytest.mark.parametrize('tools, message', [
    (['curl', 'wget'], 'could not download the reference model (curl exit code 6: no network?)'),
    (['wget'], 'could not download the reference model (wget exit code 6: no network?)'),
    ([], 'neither curl nor wget is installed'),
])
def test_get_reference_model_offline_fails_cleanly(tmp_path, tools, message):
    work = tmp_path / 'work'
    work.mkdir()
    shutil.copy(os.path.join(ROOT, 'get_reference_model.sh'), work)
    out = subprocess.run(['sh', 'get_reference_model.sh'], cwd=work, env={'PATH': fake_path(tmp_path, tools)},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.count('\n') == 1 and message in out.stderr and 'nothing was changed' in out.stderr
    assert os.listdir(work) == ['get_reference_model.sh']
