"""Track points through a video with PIPs++ and write files a person can open.

    sh get_reference_model.sh && python demo.py
    python demo.py --filename=my_video.mp4 --queries=points.csv --max_iters=0 --device=cuda
    python demo.py --grid_stride=8          # dense: every 8th pixel of frame 0

Writes <out_dir>/<name>.npz (trajs T,N,2 in the video's pixels, queries N,3, fps and the
settings, and visibs T,N and confidence T,N unless --confidence=False), the other --formats
chosen (csv, tapvid), <out_dir>/<name>.mp4 (the video with coloured trails, points predicted
not visible as hollow rings, H.264) and the original's tensorboard gifs under <log_dir>. The
original's arguments and defaults are kept. The arguments, the video, the queries and the
output folders are checked before any work; an output that would overwrite an input
(--out_dir holding the video) is refused.
"""

import os
import time
from itertools import islice

import numpy as np
import torch
from tensorboardX import SummaryWriter
from tqdm import tqdm

from tracking import INTERACTIVE, load_pips, track_points
from tracking.model import checkpoint_file
from tracking.options import OUT_OF_MEMORY
from tracking.outputs import check_not_inputs, output_paths, tracking_settings, write_outputs
from tracking.queries import QueryError, default_queries, describe_queries, read_queries, stride_grid_queries
from utils import cli
from utils.checks import check_count
from utils.errors import SettingsError
from utils.files import beside, check_writable, sweep_temporaries
from utils.runs import count_parameters, run_name
from utils.video import iter_video_frames, video_info
from utils.vis import Summ_writer, preprocess_color

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_VIDEO = './stock_videos/bunny.mp4'
DEFAULT_MODEL = './reference_model'


def demo_queries(queries, grid_stride, N, video_size, image_size, max_iters):
    """The N,3 queries in video pixels: a --queries file, a --grid_stride grid, or the default
    grid. video_size: (frames tracked, frames in the video, H, W)."""
    T, T_all, H, W = video_size
    if grid_stride and queries is not None:
        raise SettingsError('give --queries or --grid_stride, not both')
    if grid_stride:
        check_count('grid_stride', grid_stride, minimum=1)
        return stride_grid_queries(H, W, grid_stride)
    if queries is None:
        check_count('N', N, minimum=4)
        return default_queries(H, W, image_size, N)
    points = read_queries(queries, size=(T_all, H, W))
    if points[:, 0].max() >= T:
        raise QueryError(f'{queries}: a query is at frame {int(points[:, 0].max())} but --max_iters={max_iters} '
                         f'tracks the first {T} of the {T_all} frames; --max_iters=0 tracks them all')
    return points


def check_demo_arguments(timestride, max_iters, log_freq):
    check_count('timestride', timestride, minimum=1)
    check_count('max_iters', max_iters, minimum=0)
    check_count('log_freq', log_freq, minimum=1)


def gif_logger(writer, model_name, n_windows, log_freq):
    """An ``on_window`` callback: the original demo's per-window timing lines and gifs."""
    state = {'step': 0, 'time': time.time()}

    def on_window(start, end, rgbs, preds_anim):
        state['step'] += 1
        elapsed = time.time() - state['time']
        tqdm.write('inference time: %.2f seconds (%.1f fps)' % (elapsed, (end - start) / elapsed))
        tqdm.write('%s; step %06d/%d; itime %.2f' % (model_name, state['step'], n_windows, elapsed))
        sw = Summ_writer(writer=writer, global_step=state['step'], log_freq=log_freq, fps=16,
                         scalar_freq=max(log_freq // 2, 1), just_gif=True)
        if sw.save_this:
            sw.summ_traj2ds_on_rgbs('outputs/trajs_on_rgbs', preds_anim[-1][0:1], preprocess_color(rgbs[0:1]),
                                    cmap='hot', linewidth=1, show_dots=False)
        state['time'] = time.time()

    return on_window


def main(filename=DEFAULT_VIDEO, S=48, N=1024, stride=8, timestride=1, iters=16, image_size=(512, 896),
         max_iters=4, shuffle=False, log_freq=1, log_dir='./logs_demo', init_dir=DEFAULT_MODEL,
         device=None, out_dir='./demo_outputs', queries=None, grid_stride=None, precision='fp32', formats='npz',
         confidence=True, consistency=True):
    """Track a grid of N points (or --queries, a .csv/.npy of t,x,y rows in video pixels at any
    frame, or --grid_stride=k: every k-th pixel of frame 0) through the first --max_iters*S frames
    (0: the whole video), every --timestride-th frame, at --image_size. --shuffle is accepted for
    compatibility and unused. --precision=bf16|fp16 runs the matrix products in low precision
    (fastest on GPUs; fp32 gives the published numbers). --formats=npz,csv,tapvid: the track
    files to write (tracking/formats.py; the .npz is always written). --confidence=False leaves
    out visibility and confidence; --consistency=False their forward-backward check
    (docs/confidence.md)."""
    options = INTERACTIVE.replace(S=S, iters=iters, image_size=image_size, precision=precision,
                                  confidence=confidence, consistency=consistency)
    check_demo_arguments(timestride, max_iters, log_freq)
    filename = beside(str(filename), DEFAULT_VIDEO, HERE)
    init_dir = beside(init_dir, DEFAULT_MODEL, HERE)
    checkpoint = checkpoint_file(init_dir)
    T_video, H, W, fps = video_info(filename)
    options.model_size((H, W))
    T_all = -(-T_video // timestride)
    T = min(T_all, max_iters * S) if max_iters else T_all
    name = os.path.splitext(os.path.basename(filename.rstrip('/')))[0]
    print('filename', filename)
    print(f'video: {T_video} frames of {W}x{H} at {fps:.2f} fps; tracking {T} frames')
    points = demo_queries(queries, grid_stride, N, (T, T_all, H, W), options.image_size, max_iters)
    paths = output_paths(out_dir, name, formats=formats)
    check_not_inputs(paths.values(), [filename, queries, checkpoint])
    check_writable(out_dir, '--out_dir', need_bytes=T * len(points) * 2 * 4)
    check_writable(log_dir, '--log_dir')
    sweep_temporaries(out_dir)
    settings = tracking_settings(options, checkpoint=checkpoint, timestride=timestride, frames=T,
                                 queries=describe_queries(queries, N, grid_stride))

    model_name = run_name('%s_%d_%d_de00' % (name, S, len(points)))
    print('model_name', model_name)
    model = load_pips(init_dir, device, stride)
    count_parameters(model)
    writer = SummaryWriter(os.path.join(log_dir, model_name, 't'), max_queue=10, flush_secs=60)

    def frames():
        return islice(iter_video_frames(filename), 0, T * timestride, timestride)

    n_windows = sum(-(-(T - 1 - t) // (S - 1)) for t in np.unique(points[:, 0]).astype(int))  # forward windows
    start_time = time.time()
    try:
        tracks = track_points(model, frames(), points, options, num_frames=T, progress=True,
                              on_window=gif_logger(writer, model_name, n_windows, log_freq))
    except torch.cuda.OutOfMemoryError as exc:
        raise SettingsError(OUT_OF_MEMORY) from exc
    total = time.time() - start_time
    writer.close()
    print('tracked %d points through %d frames in %.1f s: %.2f frames/s, %.0f point-frames/s' % (
        len(points), T, total, T / total, len(points) * T / total))
    write_outputs(paths, trajs=tracks.tracks, queries=points, fps=fps / timestride, settings=settings,
                  frames=frames(), visible=tracks.visible, confidence=tracks.confidence)
    print(f'wrote {", ".join(paths.values())}; tensorboard gifs under {log_dir}/{model_name}')


if __name__ == '__main__':
    cli.run(main)
