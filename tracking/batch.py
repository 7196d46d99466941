"""Tracking many videos: listing them, naming their outputs, and tracking a share of them.

A batch is a folder (its video files and image-folder subfolders), a glob pattern or a
``.txt`` list; a folder or glob never takes the output folder's files. Everything that
can be checked is checked before any work. Each video is tracked whole and its outputs
written atomically (the .npz last, recording the settings, so an existing .npz with the
same settings means done); a video that fails (bad input, a full disk) is reported with
the reason and the batch goes on. Under torchrun the videos left to do are dealt out to
the ranks (``utils.distributed``).
"""

import glob
import os
import sys
import time
from typing import NamedTuple

import torch
from tqdm import tqdm

from tracking.model import checkpoint_file, load_pips
from tracking.options import OUT_OF_MEMORY
from tracking.outputs import (
    check_formats,
    check_not_inputs,
    output_paths,
    recorded_settings,
    settings_changes,
    tracking_settings,
    write_outputs,
)
from tracking.queries import default_queries, describe_queries, read_queries, stride_grid_queries
from tracking.run import track_points
from utils.checks import check_count
from utils.errors import PipsError, SettingsError
from utils.files import check_writable, sweep_temporaries
from utils.runs import count_parameters
from utils.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, iter_video_frames, video_info

QUERY_FILE_EXTENSIONS = ('.csv', '.npy')  # <queries_dir>/<name>.csv, or .npy


def is_image_folder(path):
    return os.path.isdir(path) and any(name.lower().endswith(IMAGE_EXTENSIONS) for name in os.listdir(path))


def is_inside(path, folder):
    """Whether ``path`` is ``folder`` or lies under it (real paths: links resolved)."""
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def list_videos(videos, out_dir=None):
    """The video paths named by ``videos``: a folder (its video files and image-folder
    subfolders, or itself if it holds images), a glob pattern, or a .txt list (one path a
    line, relative to the list's folder; blank lines and # comments skipped). Sorted,
    except a list keeps its order. A folder or a glob never takes what lies in ``out_dir``
    (the outputs: an earlier run's overlays). SettingsError when nothing is found."""
    videos = str(videos)
    found_in = None  # what a folder or glob found, before leaving out_dir out
    if videos.endswith('.txt'):
        if not os.path.isfile(videos):
            raise SettingsError(f'{videos}: no such list file')
        with open(videos) as f:
            lines = [line.strip() for line in f]
        folder = os.path.dirname(os.path.abspath(videos))
        paths = [os.path.join(folder, line) for line in lines if line and not line.startswith('#')]
    elif os.path.isdir(videos) and not is_image_folder(videos):
        entries = [os.path.join(videos, name) for name in sorted(os.listdir(videos))]
        found_in = [p for p in entries if p.lower().endswith(VIDEO_EXTENSIONS) or is_image_folder(p)]
    elif os.path.exists(videos):
        paths = [videos]
    else:
        found_in = sorted(glob.glob(videos, recursive=True))
    if found_in is not None:
        paths = [p for p in found_in if out_dir is None or not is_inside(p, out_dir)]
        if found_in and not paths:
            raise SettingsError(f'{videos}: the {len(found_in)} videos found lie in --out_dir={out_dir}, whose files '
                                'are outputs, never inputs: write the outputs to another folder')
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


def queries_file(queries_dir, name):
    """<queries_dir>/<name>.csv (or .npy, if that is there instead)."""
    candidates = [os.path.join(str(queries_dir), name + extension) for extension in QUERY_FILE_EXTENSIONS]
    return next((path for path in candidates if os.path.isfile(path)), candidates[0])


def batch_queries(path, queries_path, video_size, *, N, grid_stride, image_size):
    """N,3 (t, x, y) queries in video pixels: the file ``queries_path`` (checked to lie in
    the video), every grid_stride-th pixel of frame 0, or the default grid of N points."""
    T, H, W = video_size
    if queries_path:
        if not os.path.isfile(queries_path):
            raise SettingsError(f'{queries_path}: no queries file for {path} (--queries_dir holds <name>.csv '
                                'or <name>.npy per video)')
        return read_queries(queries_path, size=(T, H, W))
    if grid_stride:
        return stride_grid_queries(H, W, grid_stride)
    return default_queries(H, W, image_size, N)


def track_one(model, job, *, out_dir, overlay, formats, options, N, grid_stride):
    """Track one video and write its outputs. Returns the number of frames."""
    T, H, W, fps = video_info(job.path)
    options.model_size((H, W))
    queries = batch_queries(job.path, job.queries_path, (T, H, W), N=N, grid_stride=grid_stride,
                            image_size=options.image_size)
    tracks = track_points(model, iter_video_frames(job.path), queries, options, num_frames=T)
    write_outputs(output_paths(out_dir, job.name, overlay, formats), trajs=tracks.tracks, queries=queries, fps=fps,
                  settings=job.settings, frames=iter_video_frames(job.path), visible=tracks.visible,
                  confidence=tracks.confidence)
    return len(tracks.tracks)


def track_share(model, jobs, ranks, **options):
    """Track this rank's jobs; returns [(name, failure reason)]. A video that fails (bad
    input, a setting that does not fit it, a full or failing disk) is reported and the
    others go on."""
    failures = []
    bar = tqdm(jobs, desc='videos' if ranks.world == 1 else f'videos of rank 0 (of {ranks.world})', unit='video',
               file=sys.stderr, disable=not ranks.is_main)
    for job in bar:
        start = time.time()
        try:
            with torch.no_grad():
                T = track_one(model, job, **options)
        except (PipsError, ValueError, OSError) as exc:
            reason = f'{exc.filename}: {exc.strerror}' if isinstance(exc, OSError) and exc.filename else str(exc)
            failures.append((job.name, reason))
            tqdm.write(f'failed {job.name}: {reason}')
            continue
        except torch.cuda.OutOfMemoryError:
            failures.append((job.name, OUT_OF_MEMORY))
            tqdm.write(f'failed {job.name}: out of GPU memory')
            torch.cuda.empty_cache()
            continue
        tqdm.write(f'tracked {job.name}: {T} frames in {time.time() - start:.1f} s')
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


class Job(NamedTuple):
    """One video of a batch."""

    path: str
    name: str  # of its outputs
    queries_path: str  # its queries file ('' for a grid)
    settings: dict  # what its outputs record (tracking_settings)


def plan_jobs(jobs, out_dir, overlay, formats):
    """(the jobs to do, a refusal or None). A video whose outputs exist with the same
    settings is done; one whose .npz records other settings makes the batch refuse, so
    that reruns never mix settings in one folder nor overwrite earlier results."""
    todo, changed = [], []
    for job in jobs:
        paths = output_paths(out_dir, job.name, overlay, formats)
        recorded = recorded_settings(paths['npz']) if os.path.exists(paths['npz']) else None
        changes = [] if recorded is None else settings_changes(recorded, job.settings)
        if changes:
            changed.append((job.name, changes))
        elif recorded is None or not all(os.path.exists(path) for path in paths.values()):
            todo.append(job)
    if not changed:
        return todo, None
    name, changes = changed[0]
    return todo, (f'{len(changed)} of the {len(jobs)} videos have outputs in {out_dir} made with other settings '
                  f'({name}.npz: {"; ".join(changes)}): to keep them, write to another --out_dir; to redo them, '
                  'delete their .npz files')


def check_batch_arguments(N, grid_stride, queries_dir):
    if queries_dir:
        if not os.path.isdir(str(queries_dir)):
            raise SettingsError(f'{queries_dir}: no such folder (--queries_dir)')
    elif grid_stride:
        check_count('grid_stride', grid_stride, minimum=1)
    else:
        check_count('N', N, minimum=4)


def run_batch(videos, out_dir, options, *, ranks, init_dir, overlay=False, N=1024, grid_stride=0, queries_dir=None,
              stride=8, formats=('npz',)):
    """Track every video of ``videos`` (a folder, glob or .txt list) into ``out_dir``, this
    rank's share of them; videos whose outputs exist (with the same settings) are skipped.

    Before any work: the arguments, the checkpoint, the videos and their names, that no
    output would overwrite an input, that ``out_dir`` can be written (its temporaries left
    by killed runs are swept) and that its earlier outputs were made with these settings
    (SettingsError otherwise). Raises BatchFailed after the summary when any video failed,
    and on a stop signal KeyboardInterrupt saying how to go on.
    """
    check_batch_arguments(N, grid_stride, queries_dir)
    formats = check_formats(formats)
    checkpoint = checkpoint_file(init_dir)
    paths = list_videos(videos, out_dir)
    jobs = []
    for path, name in zip(paths, video_names(paths)):
        queries_path = queries_file(queries_dir, name) if queries_dir else ''
        settings = tracking_settings(options, checkpoint=checkpoint,
                                     queries=describe_queries(queries_path, N, grid_stride))
        jobs.append(Job(path, name, queries_path, settings))
    check_not_inputs([p for job in jobs for p in output_paths(out_dir, job.name, overlay, formats).values()],
                     paths + [job.queries_path for job in jobs])
    check_writable(out_dir, '--out_dir')
    if ranks.is_main:
        sweep_temporaries(out_dir)
    # rank 0 decides what is left, so every rank splits the same list
    todo, refusal = ranks.broadcast(plan_jobs(jobs, out_dir, overlay, formats) if ranks.is_main else None)
    if refusal:
        raise SettingsError(refusal)
    if ranks.is_main:
        print(f'{len(jobs)} videos, {len(jobs) - len(todo)} already done in {out_dir}; tracking {len(todo)}'
              + (f' on {ranks.world} ranks' if ranks.world > 1 else ''))
    model = load_pips(init_dir, ranks.device, stride)
    if ranks.is_main:
        count_parameters(model)
    try:
        failures = track_share(model, ranks.share(todo), ranks, out_dir=out_dir, overlay=overlay, formats=formats,
                               options=options, N=N, grid_stride=grid_stride)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f'the finished videos are kept in {out_dir}, none half-written; run the same '
                                'command again to track the rest') from None
    gathered = ranks.gather(failures)
    failed = ranks.broadcast(summarise(gathered, len(jobs), len(jobs) - len(todo)) if ranks.is_main else None)
    if failed:
        raise BatchFailed(f'{failed} of {len(jobs)} videos failed (listed above)')
