"""The files a tracking run writes for a person to open: tracks as ``.npz``, an overlay video.

``<out_dir>/<name>.npz`` holds ``trajs`` T,N,2 float32 in the video's pixels,
``queries`` N,3 (t, x, y) and ``fps``; ``<out_dir>/<name>.mp4`` is the video with every
track drawn as a coloured trail (H.264, plays in a browser). Both are written under a
temporary name and renamed into place, so a killed run never leaves half a file.
"""

import os

import numpy as np

from utils.files import atomic_path
from utils.video import VideoWriter
from utils.vis import draw_tracks_stream


def output_paths(out_dir, name, overlay=True):
    """{'npz': path, 'mp4': path (with ``overlay``)} of a video called ``name``."""
    paths = {'npz': os.path.join(out_dir, f'{name}.npz')}
    if overlay:
        paths['mp4'] = os.path.join(out_dir, f'{name}.mp4')
    return paths


def write_npz(path, **arrays):
    """np.savez through a temporary name, renamed into place."""
    with atomic_path(path) as tmp_path, open(tmp_path, 'wb') as f:
        np.savez(f, **arrays)


def write_overlay(path, frames, trajs, fps):
    """The frames (an iterable of H,W,3 uint8 RGB) with the T,N,2 tracks drawn, as H.264."""
    with VideoWriter(path, fps=fps) as video_out:
        for frame in draw_tracks_stream(frames, trajs):
            video_out.write(frame)


def write_outputs(paths, *, trajs, queries, fps, frames=None):
    """Write the overlay (from ``frames``, when ``paths`` has 'mp4') and then the .npz, so
    that an existing .npz means the video is done."""
    if 'mp4' in paths:
        write_overlay(paths['mp4'], frames, trajs, fps)
    write_npz(paths['npz'], trajs=trajs, queries=np.asarray(queries, dtype=np.float32), fps=np.float32(fps))
