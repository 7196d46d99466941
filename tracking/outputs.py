"""The files a tracking run writes for a person to open: tracks in the chosen formats, an overlay video.

``<out_dir>/<name>.npz`` holds ``trajs`` T,N,2 float32 in the video's pixels,
``queries`` N,3 (t, x, y), ``fps`` and ``settings`` (JSON: the settings that decided the
tracks, see ``tracking_settings``), and with confidence on ``visibs`` T,N bool (predicted
visible) and ``confidence`` T,N float32 in [0, 1]; it is always written, last, as the run's
record. ``--formats=npz,csv,tapvid`` (``FORMATS``) adds ``<name>.csv`` and
``<name>.tapvid.pkl`` (``tracking.formats``). ``<out_dir>/<name>.mp4`` is the video with
every track drawn as a coloured trail (H.264, plays in a browser), a point predicted not
visible as a hollow ring. Each is written under a temporary name and renamed into place,
so a failed or killed run never leaves half a file. Before any work, ``check_not_inputs``
refuses an output that is one of the inputs.
"""

import json
import os
import zipfile
from itertools import islice

import numpy as np

from tracking.formats import TAPVID_SUFFIX, JpegRecorder, write_csv, write_tapvid
from utils.errors import SettingsError
from utils.files import atomic_path
from utils.video import VideoWriter
from utils.vis import draw_tracks_stream

# the TrackOptions fields that change what a run writes: the tracks, and their visibility and confidence
SETTINGS_FIELDS = ('S', 'iters', 'image_size', 'beautify', 'last_window', 'precision', 'confidence', 'consistency')
FORMATS = ('npz', 'csv', 'tapvid')
SUFFIXES = {'npz': '.npz', 'csv': '.csv', 'tapvid': TAPVID_SUFFIX}


def check_formats(formats):
    """``formats`` as a tuple of names from ``FORMATS``: a comma-separated string ('npz,csv')
    or a sequence of names; SettingsError naming a bad one."""
    names = formats.split(',') if isinstance(formats, str) else list(formats)
    names = tuple(str(name).strip() for name in names)
    unknown = [name for name in names if name not in FORMATS]
    if unknown or not names:
        raise SettingsError(f'--formats takes names from {",".join(FORMATS)} separated by commas; got {formats!r}')
    return tuple(dict.fromkeys(names))


def output_paths(out_dir, name, overlay=True, formats=('npz',)):
    """{format: path} of a video called ``name``: 'npz' (always: the run's record), the other
    ``formats``, and 'mp4' (with ``overlay``)."""
    paths = {fmt: os.path.join(out_dir, name + SUFFIXES[fmt]) for fmt in ('npz', *check_formats(formats))}
    if overlay:
        paths['mp4'] = os.path.join(out_dir, f'{name}.mp4')
    return paths


def check_not_inputs(outputs, inputs):
    """Raise SettingsError, before any work, when one of the ``outputs`` paths is one of
    the ``inputs`` files (the same file however it is named: compared by device and inode)."""
    input_files = {}
    for path in inputs:
        try:
            info = os.stat(path)
        except (OSError, TypeError):
            continue
        input_files[(info.st_dev, info.st_ino)] = path
    for path in outputs:
        try:
            info = os.stat(path)
        except OSError:
            continue
        source = input_files.get((info.st_dev, info.st_ino))
        if source is not None:
            raise SettingsError(f'{path}: this output would overwrite the input {source}; write the outputs '
                                'elsewhere (--out_dir)')


def tracking_settings(options, **choices):
    """The settings that decide a run's outputs, as recorded in its .npz: the ``options``
    fields that change them and the run's ``choices`` (checkpoint, queries, ...), as
    JSON values (tuples become lists, as they read back)."""
    settings = {name: getattr(options, name) for name in SETTINGS_FIELDS}
    settings['consistency'] = options.confidence and options.consistency  # without confidence it changes nothing
    return json.loads(json.dumps({**settings, **choices}))


def recorded_settings(npz_path):
    """The settings recorded in an output .npz: a dict ({} for an .npz written without a
    record), or None when the file cannot be read."""
    try:
        with np.load(npz_path) as data:
            return json.loads(str(data['settings'])) if 'settings' in data.files else {}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def settings_changes(recorded, wanted):
    """['name: recorded -> wanted'] of the settings that differ."""
    if not recorded:
        return ['no settings recorded (written by an earlier version)']
    names = sorted(set(recorded) | set(wanted))
    return [f'{name}: {recorded.get(name, "not recorded")} -> {wanted.get(name, "not recorded")}'
            for name in names if recorded.get(name) != wanted.get(name)]


def write_npz(path, **arrays):
    """np.savez through a temporary name, renamed into place."""
    with atomic_path(path) as tmp_path, open(tmp_path, 'wb') as f:
        np.savez(f, **arrays)


def write_overlay(path, frames, trajs, fps, visibs=None):
    """The frames (an iterable of H,W,3 uint8 RGB) with the T,N,2 tracks drawn, as H.264;
    points not visible (``visibs`` T,N false) as hollow rings."""
    with VideoWriter(path, fps=fps) as video_out:
        for frame in draw_tracks_stream(frames, trajs, visibs):
            video_out.write(frame)


def write_outputs(paths, *, trajs, queries, fps, settings, frames=None, visible=None, confidence=None):
    """Write the overlay and the TAP-Vid file (from one pass over ``frames``, when ``paths``
    has 'mp4' or 'tapvid'), the CSV, and last the .npz, so that an existing .npz means the
    video is done. visible, confidence: T,N, or None when confidence is off."""
    if 'tapvid' in paths:
        frames = JpegRecorder(islice(frames, len(trajs)))
    if 'mp4' in paths:
        write_overlay(paths['mp4'], frames, trajs, fps, visible)
    if 'tapvid' in paths:
        write_tapvid(paths['tapvid'], trajs, frames.finish(), frames.size, visible=visible)
    if 'csv' in paths:
        write_csv(paths['csv'], trajs, visible, confidence)
    trust = {} if confidence is None else dict(visibs=visible, confidence=confidence)
    write_npz(paths['npz'], trajs=trajs, queries=np.asarray(queries, dtype=np.float32), fps=np.float32(fps),
              settings=np.array(json.dumps(settings, sort_keys=True)), **trust)
