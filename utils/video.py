"""Reading and writing videos (PyAV; no system ffmpeg needed).

Reads .mp4/.avi/.mov/... files and folders of images (.jpg/.jpeg/.png/.bmp) as H,W,3
uint8 RGB frames, one at a time, as a player shows them:

- a video's display matrix (the rotation or flip that phones record instead of turning
  the pixels) is applied, as ffmpeg and players do, so ``video_info`` gives the size
  shown and every frame is turned upright; a JPEG's EXIF orientation likewise;
- an image folder is read in natural order (``2.png`` before ``10.png``, as ffmpeg's
  ``%d.png`` names them); every image must have the first one's size.

The pixel aspect ratio is not applied (as ffmpeg does not when it extracts frames):
tracks are in the stored pixels. Writes H.264 (yuv420p) mp4 files that browsers play,
under a temporary name renamed into place, so a failed or killed write never leaves a
truncated file behind. Problems raise ``VideoError`` naming the file.
"""

import contextlib
import math
import os
import re
from fractions import Fraction

import av
import cv2
import numpy as np
from av.sidedata.sidedata import Type as SideDataType

from utils.errors import PipsError
from utils.files import remove, temporary_name

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg')
DIGITS = re.compile(r'(\d+)')


class VideoError(PipsError, ValueError):
    """A video (or image folder) is missing, unreadable, corrupt or empty."""


def natural_key(name):
    """Sort key that orders the numbers inside names by value: ``2.png`` before ``10.png``
    (ties, such as ``01.png`` and ``1.png``, by the name itself)."""
    return [int(part) if i % 2 else part for i, part in enumerate(DIGITS.split(name))], name


def _image_paths(folder):
    names = sorted((n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)), key=natural_key)
    if not names:
        raise VideoError(f'{folder}: no .jpg/.png images in this folder' + _videos_hint(folder))
    return [os.path.join(folder, n) for n in names]


def _videos_hint(folder):
    videos = sorted(n for n in os.listdir(folder) if os.path.splitext(n)[1].lower() in VIDEO_EXTENSIONS)
    if not videos:
        return ''
    return (f' (it holds {len(videos)} video file(s): give one of them, such as '
            f'{os.path.join(folder, videos[0])}, or track them all with track_videos.py --videos={folder})')


def _read_image(path):
    image = cv2.imread(path, cv2.IMREAD_COLOR)  # applies a JPEG's EXIF orientation
    if image is None:
        raise VideoError(f'{path}: cannot read this image')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _iter_images(folder):
    first_size = None
    for path in _image_paths(folder):
        image = _read_image(path)
        if first_size is None:
            first_size, first_path = image.shape[:2], path
        elif image.shape[:2] != first_size:
            raise VideoError(f'{path}: the image is {_wxh(image.shape[:2])} but {os.path.basename(first_path)}, '
                             f'the first of the folder, is {_wxh(first_size)}: every frame must have one size')
        yield image


def _wxh(size):
    return f'{size[1]}x{size[0]}'


def _open(path):
    if not os.path.exists(path):
        raise VideoError(f'{path}: no such file')
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError) as exc:
        raise VideoError(f'{path}: cannot open as a video ({exc})') from exc
    if not container.streams.video:
        container.close()
        raise VideoError(f'{path}: has no video stream')
    return container


def display_orientation(frame):
    """(flip, quarter_turns) of a decoded ``av.VideoFrame``: the frame as shown is
    ``np.rot90(pixels[:, ::-1] if flip else pixels, quarter_turns)``, read from its display
    matrix (rotations round to the nearest quarter turn); (False, 0) without one."""
    for side_data in frame.side_data:
        if side_data.type == SideDataType.DISPLAYMATRIX:
            a, b, _, c, d = np.frombuffer(bytes(side_data), dtype=np.int32)[:5].astype(np.float64)
            flip = a * d - b * c < 0
            if flip:  # the matrix is a rotation after a horizontal mirror
                a = -a
            return bool(flip), round(math.atan2(c, a) / (math.pi / 2)) % 4
    return False, 0


def orient(pixels, orientation):
    """H,W,3 stored pixels -> the frame as shown, for a ``display_orientation``."""
    flip, quarter_turns = orientation
    if flip:
        pixels = pixels[:, ::-1]
    return np.ascontiguousarray(np.rot90(pixels, quarter_turns)) if quarter_turns or flip else pixels


def _first_frame(container, path):
    try:
        return next(container.decode(video=0), None)
    except av.FFmpegError as exc:
        raise VideoError(f'{path}: corrupt video ({exc})') from exc


def video_info(path, default_fps=24.0):
    """(num_frames, height, width, fps) of a video file or an image folder, the size as
    shown (after the display matrix).

    The frame count comes from the container, or from counting packets when the
    container does not say; an image folder gets ``default_fps``.
    """
    path = str(path)
    if os.path.isdir(path):
        paths = _image_paths(path)
        H, W = _read_image(paths[0]).shape[:2]
        return len(paths), H, W, default_fps
    with _open(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or default_fps)
        count = stream.frames
        if not count:
            try:
                count = sum(1 for packet in container.demux(stream) if packet.size)
            except av.FFmpegError as exc:
                raise VideoError(f'{path}: corrupt video ({exc})') from exc
    with _open(path) as container:
        first = _first_frame(container, path) if count else None
    if first is None or first.height == 0 or first.width == 0:
        raise VideoError(f'{path}: the video is empty')
    H, W = first.height, first.width
    if display_orientation(first)[1] % 2:
        H, W = W, H
    return count, H, W, fps


def iter_video_frames(path):
    """Yield the frames of a video file or image folder as H,W,3 uint8 RGB, one at a time,
    as shown (see the module's notes); VideoError naming the file when one cannot be read
    or the frame size changes."""
    path = str(path)
    if os.path.isdir(path):
        yield from _iter_images(path)
        return
    count = 0
    with _open(path) as container:
        try:
            for frame in container.decode(video=0):
                if count == 0:
                    orientation, size = display_orientation(frame), (frame.height, frame.width)
                elif (frame.height, frame.width) != size:
                    raise VideoError(f'{path}: frame {count} is {frame.width}x{frame.height} but the video '
                                     f'started at {_wxh(size)}: every frame must have one size')
                count += 1
                yield orient(frame.to_ndarray(format='rgb24'), orientation)
        except av.FFmpegError as exc:
            raise VideoError(f'{path}: corrupt video after {count} frames ({exc})') from exc
    if count == 0:
        raise VideoError(f'{path}: the video has no decodable frames')


def read_video(path):
    """The whole video as T,H,W,3 uint8 RGB."""
    return np.stack(list(iter_video_frames(path)))


class VideoWriter:
    """Write H,W,3 uint8 RGB frames one at a time to an H.264 mp4 (yuv420p, ``crf``).

    Use as a context manager. Odd sizes are padded by one edge pixel (yuv420p needs even
    sizes). The file appears at ``path`` only when the writer closes without an error.
    """

    def __init__(self, path, fps=24.0, crf=20):
        self.path = str(path)
        self.fps = Fraction(fps).limit_denominator(1001)
        self.crf = crf
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        self.tmp_path = temporary_name(self.path)
        self.stream = None
        self.count = 0
        with self._naming_the_path():
            self.container = av.open(self.tmp_path, mode='w', format='mp4')

    @contextlib.contextmanager
    def _naming_the_path(self):
        """OSErrors (a read-only folder, a full disk) name ``path``, not the temporary."""
        try:
            yield
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc), self.path) from exc

    def write(self, frame):
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f'frames must be H,W,3 uint8 RGB; got {frame.shape} {frame.dtype}')
        if frame.shape[0] % 2 or frame.shape[1] % 2:
            frame = np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)), mode='edge')
        if self.stream is None:
            self.stream = self.container.add_stream('libx264', rate=self.fps)
            self.stream.height, self.stream.width = frame.shape[:2]
            self.stream.pix_fmt = 'yuv420p'
            self.stream.options = {'crf': str(self.crf)}
        elif (self.stream.height, self.stream.width) != frame.shape[:2]:
            raise ValueError(f'frame size {frame.shape[:2]} differs from the first frame '
                             f'{(self.stream.height, self.stream.width)}')
        with self._naming_the_path():
            for packet in self.stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')):
                self.container.mux(packet)
        self.count += 1

    def close(self, keep=True):
        """Finish the file and move it into place (or delete it when ``keep`` is False); the
        temporary never outlives this call."""
        if self.container is None:
            return
        container, self.container = self.container, None
        try:
            if keep:
                self._finish(container)
            else:
                with contextlib.suppress(Exception):  # the error that stopped the writing is the one to report
                    container.close()
        finally:
            remove(self.tmp_path)

    def _finish(self, container):
        with self._naming_the_path():
            try:
                if self.stream is not None:
                    for packet in self.stream.encode():
                        container.mux(packet)
            finally:
                container.close()
        if not self.count:
            raise VideoError(f'{self.path}: no frames were written')
        os.replace(self.tmp_path, self.path)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(keep=exc_type is None)


def write_mp4(path, frames, fps=24.0, crf=20):
    """Write frames (T,H,W,3 uint8 RGB, or an iterable of H,W,3) to an H.264 mp4."""
    with VideoWriter(path, fps=fps, crf=crf) as writer:
        for frame in frames:
            writer.write(frame)
    return path
