"""Tracking many videos: listing them, naming their outputs, and tracking a share of them.

A batch is a folder (its video files and image-folder subfolders), a glob pattern or a
``.txt`` list. Each video is tracked whole and its outputs written atomically (the
.npz last, so an existing .npz means done); a video that fails is reported with the
reason and the batch goes on. Under torchrun the videos left to do are dealt out to
the ranks (``utils.distributed``).
"""

import glob
import os
import sys
import time

import torch
from tqdm import tqdm

from tracking.model import load_pips
from tracking.outputs import output_paths, write_outputs
from tracking.queries import check_queries_fit, default_queries, read_queries, stride_grid_queries
from tracking.run import track_points
from utils.errors import PipsError, SettingsError
from utils.runs import count_parameters
from utils.video import IMAGE_EXTENSIONS, iter_video_frames, video_info

VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg')


def is_image_folder(path):
    return os.path.isdir(path) and any(name.lower().endswith(IMAGE_EXTENSIONS) for name in os.listdir(path))


def list_videos(videos):
    """The video paths named by ``videos``: a folder (its video files and image-folder
    subfolders, or itself if it holds images), a glob pattern, or a .txt list (one path a
    line, relative to the list's folder; blank lines and # comments skipped). Sorted,
    except a list keeps its order. SettingsError when nothing is found."""
    videos = str(videos)
    if videos.endswith('.txt'):
        if not os.path.isfile(videos):
            raise SettingsError(f'{videos}: no such list file')
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
        raise SettingsError(f'{videos}: no videos found (give a folder, a glob pattern or a .txt list)')
    return paths


def video_names(paths):
    """Output names (file or folder names without extension); SettingsError if two collide."""
    names = [os.path.splitext(os.path.basename(os.path.normpath(p)))[0] for p in paths]
    seen = {}
    for name, path in zip(names, paths):
        if name in seen:
            raise SettingsError(f'{seen[name]} and {path} would both be written as {name}.npz: rename one')
        seen[name] = path
    return names


def batch_queries(path, name, video_size, *, N, grid_stride, queries_dir, image_size):
    """N,3 (t, x, y) queries in video pixels: <queries_dir>/<name>.csv, every grid_stride-th
    pixel of frame 0, or the default grid of N points."""
    T, H, W = video_size
    if queries_dir:
        queries_path = os.path.join(str(queries_dir), f'{name}.csv')
        if not os.path.isfile(queries_path):
            raise SettingsError(f'{queries_path}: no queries file for {path}')
        queries = read_queries(queries_path)
        check_queries_fit(queries, T, H, W, where=queries_path)
        return queries
    if grid_stride:
        return stride_grid_queries(H, W, grid_stride)
    return default_queries(H, W, image_size, N)


def track_one(model, path, name, *, out_dir, overlay, options, query_options):
    """Track one video and write its outputs. Returns the number of frames."""
    T, H, W, fps = video_info(path)
    queries = batch_queries(path, name, (T, H, W), image_size=options.image_size, **query_options)
    trajs = track_points(model, iter_video_frames(path), queries, options, num_frames=T)
    write_outputs(output_paths(out_dir, name, overlay), trajs=trajs, queries=queries, fps=fps,
                  frames=iter_video_frames(path))
    return len(trajs)


def is_done(out_dir, name, overlay):
    return all(os.path.exists(p) for p in output_paths(out_dir, name, overlay).values())


def track_share(model, jobs, ranks, **options):
    """Track this rank's (path, name) jobs; returns [(name, failure reason)]."""
    failures = []
    bar = tqdm(jobs, desc='videos' if ranks.world == 1 else f'videos of rank 0 (of {ranks.world})', unit='video',
               file=sys.stderr, disable=not ranks.is_main)
    for path, name in bar:
        start = time.time()
        try:
            with torch.no_grad():
                T = track_one(model, path, name, **options)
        except (PipsError, ValueError) as exc:
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


class BatchFailed(PipsError):
    """Some videos of a batch failed (each was reported; the others were tracked)."""


def run_batch(videos, out_dir, options, *, ranks, init_dir, overlay=False, N=1024, grid_stride=0, queries_dir=None,
              stride=8):
    """Track every video of ``videos`` (a folder, glob or .txt list) into ``out_dir``, this
    rank's share of them; videos whose outputs exist are skipped. Raises BatchFailed after
    the summary when any video failed."""
    if queries_dir and not os.path.isdir(str(queries_dir)):
        raise SettingsError(f'{queries_dir}: no such folder (--queries_dir)')
    paths = list_videos(videos)
    names = video_names(paths)
    os.makedirs(out_dir, exist_ok=True)
    # rank 0 decides what is left, so every rank splits the same list
    todo = ranks.broadcast([(p, n) for p, n in zip(paths, names) if not is_done(out_dir, n, overlay)])
    if ranks.is_main:
        print(f'{len(paths)} videos, {len(paths) - len(todo)} already done in {out_dir}; tracking {len(todo)}'
              + (f' on {ranks.world} ranks' if ranks.world > 1 else ''))
    model = load_pips(init_dir, ranks.device, stride)
    if ranks.is_main:
        count_parameters(model)
    failures = track_share(model, ranks.share(todo), ranks, out_dir=out_dir, overlay=overlay, options=options,
                           query_options=dict(N=N, grid_stride=grid_stride, queries_dir=queries_dir))
    gathered = ranks.gather(failures)
    failed = ranks.broadcast(summarise(gathered, len(paths), len(paths) - len(todo)) if ranks.is_main else None)
    if failed:
        raise BatchFailed(f'{failed} of {len(paths)} videos failed (listed above)')
