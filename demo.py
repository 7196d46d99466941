"""Track points through a video with PIPs++ and write files a person can open.

    sh get_reference_model.sh && python demo.py
    python demo.py --filename=my_video.mp4 --queries=points.csv --max_iters=0 --device=cuda
    python demo.py --grid_stride=8          # dense: every 8th pixel of frame 0

Writes <out_dir>/<name>.npz (trajs T,N,2 in the video's pixels, queries N,3, fps),
<out_dir>/<name>.mp4 (the video with coloured trails, H.264) and the original's
tensorboard gifs under <log_dir>. The original's arguments and defaults are kept.
"""

import datetime
import os
import time
from itertools import islice

import numpy as np
import torch
from fire import Fire
from tensorboardX import SummaryWriter
from tqdm import tqdm

from nets.precision import PRECISIONS
from utils.misc import check_queries_fit, count_parameters, default_device, fail, load_model, read_queries
from utils.track import grid_queries, stride_grid_queries, track_points
from utils.video import VideoError, VideoWriter, iter_video_frames, video_info
from utils.vis import Summ_writer, draw_tracks_stream, preprocess_color

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_VIDEO = './stock_videos/bunny.mp4'
DEFAULT_MODEL = './reference_model'


def beside_script(path, default):
    """The default ``path`` found next to this script when run from another folder."""
    if path == default and not os.path.exists(path):
        return os.path.join(HERE, path)
    return path


def main(filename=DEFAULT_VIDEO, S=48, N=1024, stride=8, timestride=1, iters=16, image_size=(512, 896),
         max_iters=4, shuffle=False, log_freq=1, log_dir='./logs_demo', init_dir=DEFAULT_MODEL,
         device=None, out_dir='./demo_outputs', queries=None, grid_stride=None, precision='fp32'):
    """Track a grid of N points (or --queries, a .csv/.npy of t,x,y rows in video pixels at any
    frame, or --grid_stride=k: every k-th pixel of frame 0) through the first --max_iters*S frames
    (0: the whole video), every --timestride-th frame, at --image_size. --shuffle is accepted for
    compatibility and unused. --precision=bf16|fp16 runs the matrix products in low precision
    (fastest on GPUs; fp32 gives the published numbers)."""
    device = default_device(device)
    if precision not in PRECISIONS:
        fail(f'--precision must be one of {", ".join(PRECISIONS)}; got {precision!r}')
    filename = beside_script(str(filename), DEFAULT_VIDEO)
    init_dir = beside_script(init_dir, DEFAULT_MODEL)
    try:
        T_video, H, W, fps = video_info(filename)
    except VideoError as exc:
        fail(str(exc))
    if stride != 8:
        fail(f'--stride must be 8 (the model and its checkpoints use 8); got {stride}')
    T = -(-T_video // timestride)
    if max_iters:
        T = min(T, max_iters * S)
    if T < 1:
        fail(f'{filename}: the video has no frames')
    name = os.path.splitext(os.path.basename(filename.rstrip('/')))[0]
    print('filename', filename)
    print(f'video: {T_video} frames of {W}x{H} at {fps:.2f} fps; tracking {T} frames')

    query_source = queries
    if grid_stride and queries is not None:
        fail('give --queries or --grid_stride, not both')
    if grid_stride:
        try:
            queries = stride_grid_queries(H, W, grid_stride)
        except ValueError as exc:
            fail(f'--grid_stride: {exc}')
    elif queries is None:
        model_H, model_W = image_size
        queries = grid_queries(model_H, model_W, N) * [1, W / model_W, H / model_H]
    else:
        try:
            queries = read_queries(query_source)
            check_queries_fit(str(query_source), queries, T, H, W)
        except ValueError as exc:
            fail(str(exc))

    model_name = '%s_%d_%d_de00_%s' % (name, S, len(queries), datetime.datetime.now().strftime('%H%M%S'))
    print('model_name', model_name)
    model = load_model(init_dir, device)
    count_parameters(model)
    writer = SummaryWriter(os.path.join(log_dir, model_name, 't'), max_queue=10, flush_secs=60)

    def frames():
        return islice(iter_video_frames(filename), 0, None, timestride)

    state = {'step': 0, 'time': time.time()}
    n_windows = sum(-(-(T - 1 - t) // (S - 1)) for t in np.unique(queries[:, 0]).astype(int))  # forward windows

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

    start_time = time.time()
    try:
        with torch.no_grad():
            trajs = track_points(model, islice(frames(), T), queries, S=S, iters=iters, image_size=image_size,
                                 beautify=True, num_frames=T, progress=True, on_window=on_window,
                                 last_window='short', precision=precision)
    except VideoError as exc:
        fail(str(exc))
    total = time.time() - start_time
    writer.close()
    print('tracked %d points through %d frames in %.1f s: %.2f frames/s, %.0f point-frames/s' % (
        len(queries), T, total, T / total, len(queries) * T / total))

    os.makedirs(out_dir, exist_ok=True)
    npz_path = os.path.join(out_dir, f'{name}.npz')
    np.savez(npz_path, trajs=trajs, queries=queries.astype(np.float32), fps=np.float32(fps / timestride))
    mp4_path = os.path.join(out_dir, f'{name}.mp4')
    with VideoWriter(mp4_path, fps=fps / timestride) as video_out:
        for frame in draw_tracks_stream(islice(frames(), T), trajs):
            video_out.write(frame)
    print(f'wrote {npz_path} and {mp4_path}; tensorboard gifs under {log_dir}/{model_name}')


if __name__ == '__main__':
    Fire(main)
