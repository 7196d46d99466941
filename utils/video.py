"""Reading and writing videos (PyAV; no system ffmpeg needed).

Reads .mp4/.avi/.mov/... files and folders of images (sorted .jpg/.jpeg/.png) as
H,W,3 uint8 RGB frames, one at a time. Writes H.264 (yuv420p) mp4 files that browsers
play, under a temporary name renamed into place, so a killed write never leaves a
truncated file behind. Problems raise ``VideoError`` naming the file.
"""

import os
from fractions import Fraction

import av
import cv2
import numpy as np

from utils.errors import PipsError
from utils.files import temporary_name

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp')


class VideoError(PipsError, ValueError):
    """A video (or image folder) is missing, unreadable, corrupt or empty."""


def _image_paths(folder):
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise VideoError(f'{folder}: no .jpg/.png images in this folder')
    return [os.path.join(folder, n) for n in names]


def _read_image(path):
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise VideoError(f'{path}: cannot read this image')
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


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


def video_info(path, default_fps=24.0):
    """(num_frames, height, width, fps) of a video file or an image folder.

    The frame count comes from the container, or from counting packets when the
    container does not say; an image folder gets ``default_fps``.
    """
    path = str(path)
    if os.path.isdir(path):
        paths = _image_paths(path)
        H, W = _read_image(paths[0]).shape[:2]
        return len(paths), H, W, default_fps
    container = _open(path)
    with container:
        stream = container.streams.video[0]
        H, W = stream.codec_context.height, stream.codec_context.width
        fps = float(stream.average_rate or stream.guessed_rate or default_fps)
        count = stream.frames
        if not count:
            try:
                count = sum(1 for packet in container.demux(stream) if packet.size)
            except av.FFmpegError as exc:
                raise VideoError(f'{path}: corrupt video ({exc})') from exc
    if count == 0 or H == 0 or W == 0:
        raise VideoError(f'{path}: the video is empty')
    return count, H, W, fps


def iter_video_frames(path):
    """Yield the frames of a video file or image folder as H,W,3 uint8 RGB, one at a time."""
    path = str(path)
    if os.path.isdir(path):
        for image_path in _image_paths(path):
            yield _read_image(image_path)
        return
    container = _open(path)
    count = 0
    with container:
        try:
            for frame in container.decode(video=0):
                count += 1
                yield frame.to_ndarray(format='rgb24')
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
        self.container = av.open(self.tmp_path, mode='w', format='mp4')
        self.stream = None
        self.count = 0

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
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')):
            self.container.mux(packet)
        self.count += 1

    def close(self, keep=True):
        """Finish the file and move it into place (or delete it when ``keep`` is False)."""
        if self.container is None:
            return
        try:
            if self.stream is not None:
                for packet in self.stream.encode():
                    self.container.mux(packet)
        finally:
            self.container.close()
            self.container = None
        if keep and self.count:
            os.replace(self.tmp_path, self.path)
        else:
            os.remove(self.tmp_path)
            if keep:
                raise ValueError(f'{self.path}: no frames were written')

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
