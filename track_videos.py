"""Track points through many videos: a folder, a glob or a .txt list, on one or many GPUs.

    python track_videos.py --videos=/data/clips --out_dir=./tracks
    python track_videos.py --videos='/data/**/*.mp4' --grid_stride=16 --overlay=True
    torchrun --nproc_per_node=8 track_videos.py --videos=list.txt --queries_dir=./queries

Each video is tracked whole (windows of --S frames) and written to <out_dir>/<name>.npz
(``trajs`` T,N,2 float32 in the video's pixels, ``queries`` N,3 (t, x, y), ``fps``),
atomically; with --overlay=True also <out_dir>/<name>.mp4, the video with the tracks drawn
(H.264). Videos whose outputs exist are skipped, so an interrupted batch goes on where it
stopped when run again. A video that cannot be read (or whose queries are bad) is reported
and the batch goes on; the summary at the end lists the failures and the exit status is 1
if there were any. Under torchrun the videos are split over the ranks, each tracked once.
"""

import glob
import os
import sys
import time

import numpy as np
import torch
from fire import Fire
from tqdm import tqdm

from utils.distributed import Ranks
from utils.misc import check_precision_arg, check_queries_fit, count_parameters, fail, load_model, read_queries
from utils.track import grid_queries, stride_grid_queries, track_points
from utils.video import IMAGE_EXTENSIONS, VideoError, VideoWriter, iter_video_frames, video_info
from utils.vis import draw_tracks_stream

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg')


def is_image_folder(path):
    return os.path.isdir(path) and any(name.lower().endswith(IMAGE_EXTENSIONS) for name in os.listdir(path))


def list_videos(videos):
    """The video paths named by ``videos``: a folder (its video files and image-folder
    subfolders, or itself if it holds images), a glob pattern, or a .txt list (one path a
    line, relative to the list's folder; blank lines and # comments skipped). Sorted,
    except a list keeps its order. Exits with one line when nothing is found."""
    videos = str(videos)
    if videos.endswith('.txt'):
        if not os.path.isfile(videos):
            fail(f'{videos}: no such list file')
        with open(videos) as f:
            lines = [line.strip() for line in f]
        folder = os.path.dirname(os.path.abspath(videos))
        paths = [os.path.join(folder, line) for line in lines if line and not line.startswith('#')]
    elif os.path.isdir(videos) and not is_image_folder(videos):
        entries = [os.path.join(videos, name) for name in sorted(os.listdir(videos))]
        paths = [p for p in entries if p.lower().endswith(VIDEO_EXTENSIONS) or is_image_folder(p)]
    elif os.path.exists(videos):
        paths = [videos]
    else:
        paths = sorted(glob.glob(videos, recursive=True))
    if not paths:
        fail(f'{videos}: no videos found (give a folder, a glob pattern or a .txt list)')
    return paths


def video_names(paths):
    """Output names (file or folder names without extension); exits if two collide."""
    names = [os.path.splitext(os.path.basename(os.path.normpath(p)))[0] for p in paths]
    seen = {}
    for name, path in zip(names, paths):
        if name in seen:
            fail(f'{seen[name]} and {path} would both be written as {name}.npz: rename one')
        seen[name] = path
    return names


def make_queries(path, name, video_size, *, N, grid_stride, queries_dir, image_size):
    """N,3 (t, x, y) queries in video pixels: <queries_dir>/<name>.csv, every grid_stride-th
    pixel of frame 0, or the demo's grid of N points (at model size, mapped to the video)."""
    T, H, W = video_size
    if queries_dir:
        queries_path = os.path.join(str(queries_dir), f'{name}.csv')
        if not os.path.isfile(queries_path):
            raise ValueError(f'{queries_path}: no queries file for {path}')
        queries = read_queries(queries_path)
        check_queries_fit(queries_path, queries, T, H, W)
        return queries
    if grid_stride:
        return stride_grid_queries(H, W, grid_stride)
    model_H, model_W = image_size
    return grid_queries(model_H, model_W, N) * [1, W / model_W, H / model_H]


def write_npz(path, **arrays):
    """np.savez under a temporary name, renamed into place."""
    tmp_path = os.path.join(os.path.dirname(path), f'.{os.path.basename(path)}.{os.getpid()}.tmp')
    with open(tmp_path, 'wb') as f:
        np.savez(f, **arrays)
    os.replace(tmp_path, path)


def track_video(model, path, name, *, out_dir, overlay, S, iters, image_size, precision, query_options):
    """Track one video and write its outputs (the overlay first, the .npz last, so the
    .npz means done). Returns the number of frames."""
    T, H, W, fps = video_info(path)
    queries = make_queries(path, name, (T, H, W), image_size=image_size, **query_options)
    trajs = track_points(model, iter_video_frames(path), queries, S=S, iters=iters, image_size=image_size,
                         beautify=True, num_frames=T, precision=precision)
    if overlay:
        with VideoWriter(os.path.join(out_dir, f'{name}.mp4'), fps=fps) as video_out:
            for frame in draw_tracks_stream(iter_video_frames(path), trajs):
                video_out.write(frame)
    write_npz(os.path.join(out_dir, f'{name}.npz'), trajs=trajs, queries=queries.astype(np.float32),
              fps=np.float32(fps))
    return len(trajs)


def is_done(out_dir, name, overlay):
    return (os.path.exists(os.path.join(out_dir, f'{name}.npz'))
            and (not overlay or os.path.exists(os.path.join(out_dir, f'{name}.mp4'))))


def run_share(model, jobs, ranks, **options):
    """Track this rank's (path, name) jobs; returns [(name, failure reason)]."""
    failures = []
    bar = tqdm(jobs, desc='videos' if ranks.world == 1 else f'videos of rank 0 (of {ranks.world})', unit='video',
               file=sys.stderr, disable=not ranks.is_main)
    for path, name in bar:
        start = time.time()
        try:
            with torch.no_grad():
                T = track_video(model, path, name, **options)
        except (VideoError, ValueError) as exc:
            failures.append((name, str(exc)))
            tqdm.write(f'failed {name}: {exc}')
            continue
        except torch.cuda.OutOfMemoryError:
            failures.append((name, 'out of GPU memory (try a smaller --image_size, --S or fewer queries)'))
            tqdm.write(f'failed {name}: out of GPU memory')
            torch.cuda.empty_cache()
            continue
        tqdm.write(f'tracked {name}: {T} frames in {time.time() - start:.1f} s')
    return failures


def summarise(gathered, total, skipped):
    """Rank 0: print the summary of all ranks; returns the number of failures."""
    failures = sorted(f for part in gathered for f in part)
    print(f'{total} videos: {total - skipped - len(failures)} tracked, {skipped} already done, '
          f'{len(failures)} failed')
    for name, reason in failures:
        print(f'  failed {name}: {reason}')
    return len(failures)


def main(videos='./stock_videos', out_dir='./tracks', S=48, iters=16, image_size=(512, 896), N=1024,
         grid_stride=0, queries_dir=None, overlay=False, init_dir='./reference_model', device=None, stride=8,
         precision='fp32'):
    """Track every video of --videos (a folder, a glob pattern or a .txt list) into
    --out_dir. Queries: a grid of N points on frame 0 (default), --grid_stride=k (every
    k-th pixel of frame 0), or --queries_dir holding <name>.csv per video (t,x,y rows in
    the video's pixels, a header line allowed). --overlay=True also writes <name>.mp4.
    Options as demo.py: --S, --iters, --image_size, --init_dir, --device, --precision."""
    check_precision_arg(precision)
    ranks = Ranks.start(device)
    try:
        image_size = tuple(int(v) for v in image_size)
        if queries_dir and not os.path.isdir(str(queries_dir)):
            fail(f'{queries_dir}: no such folder (--queries_dir)')
        paths = list_videos(videos)
        names = video_names(paths)
        os.makedirs(out_dir, exist_ok=True)
        # rank 0 decides what is left, so every rank splits the same list
        todo = ranks.broadcast([(p, n) for p, n in zip(paths, names) if not is_done(out_dir, n, overlay)])
        if ranks.is_main:
            print(f'{len(paths)} videos, {len(paths) - len(todo)} already done in {out_dir}; tracking {len(todo)}'
                  + (f' on {ranks.world} ranks' if ranks.world > 1 else ''))
        model = load_model(init_dir, ranks.device, stride)
        if ranks.is_main:
            count_parameters(model)
        failures = run_share(model, ranks.share(todo), ranks, out_dir=out_dir, overlay=overlay, S=S, iters=iters,
                             image_size=image_size, precision=precision,
                             query_options=dict(N=N, grid_stride=grid_stride, queries_dir=queries_dir))
        gathered = ranks.gather(failures)
        failed = ranks.broadcast(summarise(gathered, len(paths), len(paths) - len(todo)) if ranks.is_main else None)
    finally:
        ranks.stop()
    if failed:
        sys.exit(1)


if __name__ == '__main__':
    Fire(main)
