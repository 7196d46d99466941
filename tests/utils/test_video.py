"""Video I/O: H.264 round trips, image folders in natural order, frames as players show them
(display matrices, EXIF orientation), streaming, clear errors, nothing left by a failed write."""

import os
import subprocess

import av
import cv2
import imageio_ffmpeg
import numpy as np
import PIL.Image
import PIL.ImageOps
import pytest

from tests.fixtures.faults import file_size_limit
from utils.video import VideoError, VideoWriter, iter_video_frames, natural_key, read_video, video_info, write_mp4


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


def numbered_frames(T, H=32, W=48):
    """T,H,W,3 uint8 frames whose every pixel holds the frame's number (for order checks)."""
    return np.stack([np.full((H, W, 3), 10 * t, np.uint8) for t in range(T)])


def test_image_folder_is_read_in_natural_order(tmp_path):
    frames = numbered_frames(12)
    for t, frame in enumerate(frames):  # 1.png ... 12.png, as `ffmpeg -i clip.mp4 %d.png` names them
        cv2.imwrite(str(tmp_path / f'{t + 1}.png'), frame)
    assert video_info(str(tmp_path))[0] == 12
    np.testing.assert_array_equal(read_video(str(tmp_path))[:, 0, 0, 0], frames[:, 0, 0, 0])


def test_natural_key_orders_numbers_by_value():
    names = ['frame10.png', 'frame2.png', 'frame1.png', 'b1.png', 'frame02.png']
    assert sorted(names, key=natural_key) == ['b1.png', 'frame1.png', 'frame02.png', 'frame2.png', 'frame10.png']


def test_an_image_of_another_size_in_a_folder_is_named(tmp_path):
    for t, frame in enumerate(numbered_frames(3)):
        cv2.imwrite(str(tmp_path / f'{t}.png'), frame)
    cv2.imwrite(str(tmp_path / '3.png'), numbered_frames(1, H=40)[0])
    with pytest.raises(VideoError) as info:
        read_video(str(tmp_path))
    assert str(info.value) == (f'{tmp_path}/3.png: the image is 48x40 but 0.png, the first of the folder, is '
                               '48x32: every frame must have one size')


def test_a_folder_of_videos_says_how_to_track_them(tmp_path):
    write_mp4(str(tmp_path / 'a.mp4'), gradient_frames(2))
    with pytest.raises(VideoError, match=f'give one of them, such as {tmp_path}/a.mp4, or track them all with '
                                         'track_videos.py'):
        video_info(str(tmp_path))


def write_oriented(path, frames, degrees, hflip):
    with av.open(path, 'w') as container:
        stream = container.add_stream('libx264', rate=10)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = 'yuv444p'  # no chroma subsampling: near-exact colours
        stream.options = {'crf': '0'}
        stream.set_display_rotation(degrees, hflip=hflip)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def ffmpeg_frames(path, H, W):
    """The frames as ffmpeg itself shows them (it applies the display matrix)."""
    out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), '-loglevel', 'error', '-i', path, '-f', 'rawvideo',
                          '-pix_fmt', 'rgb24', '-'], capture_output=True, check=True).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, H, W, 3)


@pytest.mark.parametrize('degrees, hflip', [(90, False), (-90, False), (180, False), (90, True), (0, True)])
def test_videos_are_read_as_players_show_them(tmp_path, degrees, hflip):
    frames = gradient_frames(3, 64, 96)
    frames[:, :8, :16] = 255  # a corner to see the turn
    path = str(tmp_path / 'phone.mp4')
    write_oriented(path, frames, degrees, hflip)
    T, H, W, _ = video_info(path)
    assert (H, W) == ((96, 64) if degrees % 180 else (64, 96))
    shown = ffmpeg_frames(path, H, W)
    back = read_video(path)
    assert back.shape == (T, H, W, 3) == shown.shape
    np.testing.assert_array_equal(back, shown)
    assert back[0, :8, :16].mean() < 200  # the white corner moved


def test_jpeg_exif_orientation_is_applied(tmp_path):
    image = gradient_frames(1, 64, 96)[0]
    exif = PIL.Image.Exif()
    exif[0x0112] = 6  # the orientation tag: turn 90 degrees clockwise to show
    PIL.Image.fromarray(image).save(tmp_path / '0.jpg', exif=exif, quality=100)
    shown = np.asarray(PIL.ImageOps.exif_transpose(PIL.Image.open(tmp_path / '0.jpg')))
    assert video_info(str(tmp_path))[1:3] == (96, 64)
    np.testing.assert_array_equal(read_video(str(tmp_path))[0], shown)


def test_a_full_disk_leaves_no_temporary_and_names_the_file(tmp_path):
    with file_size_limit(4096), pytest.raises(OSError) as info:
        write_mp4(str(tmp_path / 'x.mp4'), gradient_frames(30, 128, 128))
    assert info.value.filename == str(tmp_path / 'x.mp4')
    assert os.listdir(tmp_path) == []
