"""Video I/O: H.264 round trips, image folders, streaming, clear errors."""

import os

import av
import cv2
import numpy as np
import pytest

from utils.video import VideoError, VideoWriter, iter_video_frames, read_video, video_info, write_mp4


def gradient_frames(T=10, H=64, W=96):
    ys, xs = np.mgrid[0:H, 0:W]
    return np.stack([np.stack([(xs * 2 + 10 * t) % 256, ys * 3 % 256, np.full_like(xs, 128)], -1)
                     for t in range(T)]).astype(np.uint8)


def test_h264_round_trip(tmp_path):
    frames = gradient_frames()
    path = write_mp4(str(tmp_path / 'clip.mp4'), frames, fps=12)
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == 'h264'
        assert stream.codec_context.pix_fmt == 'yuv420p'
    assert video_info(path) == (10, 64, 96, 12.0)
    back = read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - frames).mean() < 4  # lossy, but close
    assert os.listdir(tmp_path) == ['clip.mp4']  # no temporary file left


def test_odd_sizes_are_padded(tmp_path):
    path = write_mp4(str(tmp_path / 'odd.mp4'), gradient_frames(3, 33, 47))
    assert video_info(path)[1:3] == (34, 48)


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with VideoWriter(str(tmp_path / 'x.mp4')) as writer:
            writer.write(gradient_frames(1)[0])
            raise RuntimeError('interrupted')
    assert os.listdir(tmp_path) == []


def test_frames_stream_one_at_a_time(tmp_path):
    path = write_mp4(str(tmp_path / 'clip.mp4'), gradient_frames(6))
    frames = iter_video_frames(path)
    first = next(frames)
    assert first.shape == (64, 96, 3)
    assert len(list(frames)) == 5


def test_image_folder(tmp_path):
    for t, frame in enumerate(gradient_frames(4)):
        cv2.imwrite(str(tmp_path / f'{t:05d}.png'), frame[:, :, ::-1])
    assert video_info(str(tmp_path)) == (4, 64, 96, 24.0)
    np.testing.assert_array_equal(read_video(str(tmp_path)), gradient_frames(4))  # png is lossless, RGB order


@pytest.mark.parametrize('make, message', [
    (lambda d: str(d / 'missing.mp4'), 'no such file'),
    (lambda d: (d / 'bad.mp4').write_bytes(b'not a video') and str(d / 'bad.mp4'), 'cannot open'),
    (lambda d: str(d), 'no .jpg/.png images'),
])
def test_bad_videos_raise_with_the_path(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(VideoError, match=message) as info:
        video_info(path)
    assert str(path) in str(info.value)


def test_truncated_video_is_reported(tmp_path):
    path = write_mp4(str(tmp_path / 'clip.mp4'), gradient_frames(30, 128, 128))
    data = open(path, 'rb').read()
    cut = tmp_path / 'cut.mp4'
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(VideoError, match='cut.mp4'):
        list(iter_video_frames(str(cut)))
