"""Procedural sequences in the PointOdyssey layout, with exact tracks.

A sequence is a stack of layers: a background that always covers the frame and a few
objects of varied shapes (ellipses, polygons, blobs, rings, a horse, letters, rectangles)
in front of it. Each layer is a texture (a crop of a public-domain or CC0 photograph that
ships inside the scikit-image wheel, a procedural pattern, or a photograph modulated by a
pattern) moved by a smooth random affine map per frame: translation with a swaying
acceleration, rotation, zoom and shear. The background pans, rolls, zooms and shakes like a
hand-held camera; objects drift across it, entering and leaving the frame. Each layer has a
depth per frame (nearer when it grows), and nearer layers are drawn over farther ones.
Brightness changes over time, globally and per layer; motion blur is optional.

Tracks are exact by construction: a track is a fixed texture point of one layer, and its
position at frame t is that layer's map at t applied to the point. It is visible when it
lies in the frame (0 <= x <= W-1, 0 <= y <= H-1) and the id mask at its pixel (the position
rounded to the nearest integer, pixel centres at integers as in OpenCV) shows its own
layer, that is when no nearer layer covers it. Tracks start at random pixels of random
frames (FRAME0_SHARE of them at frame 0) on whatever layer is on top there, at least
EDGE_MARGIN texels inside that layer's shape; every track is valid at every frame.

On disk, ``<out_dir>/<dset>/seq_<index:05d>/`` holds ``rgbs/rgb_%05d.jpg``,
``masks/mask_%05d.png`` (8-bit layer ids: 1 the background, 2.. the objects),
``depths/depth_%05d.png`` (16-bit, millimetres), ``anno.npz`` (PointOdyssey v1.2:
``trajs_2d`` T,N,2 float32 pixels, ``visibs`` and ``valids`` T,N bool, ``trajs_3d`` T,N,3
metres in the camera frame, ``intrinsics`` T,3,3, ``extrinsics`` T,4,4 identity) and
``synthetic.json`` (the settings that made it). Sequence ``index`` of a set is drawn from a
generator seeded by (seed, index) alone, so a larger ``n_seqs`` extends a set and parallel
runs write identical files. Runs may share an output folder: each sequence is written into
a hidden temporary folder and renamed into place, finished sequences are kept, and the
temporary folders of dead processes on this host are removed.
"""

import functools
import json
import os
import re
import time
from dataclasses import dataclass

import cv2
import numpy as np
import skimage.data

from datasets.common import DatasetError
from utils.checks import check_count, check_flag
from utils.errors import SettingsError
from utils.files import TMP_MARK, atomic_path, check_writable, sweep_temporaries, temporary_name, writer_is_dead

# Difficulty knobs. Speeds and sizes in px are for frames whose shorter side is
# REFERENCE_SIDE and scale with it.
REFERENCE_SIDE = 256
OBJECT_COUNT = (4, 9)  # objects per sequence, both ends included
OBJECT_SIZE = (0.2, 0.6)  # object extent over the shorter frame side
OBJECT_SPEED = (0.5, 4.0)  # px per frame
FAST_OBJECT_PROB = 0.15  # an object moves at FAST_OBJECT_SPEED instead
FAST_OBJECT_SPEED = (6.0, 12.0)  # px per frame
ACCELERATION = 0.2  # px per frame^2, the most each of an object's two sways adds
SWAY_PERIOD = (16, 64)  # frames
OBJECT_SPIN = 1.5  # degrees per frame, at most
OBJECT_ZOOM_RATE = 0.01  # change of log-scale per frame, at most
ZOOM_PERIOD = (30, 120)  # frames
OBJECT_SHEAR = 0.2
BACKGROUND_SPEED = (0.5, 3.0)  # px per frame: a pan that turns back over PAN_PERIOD
PAN_PERIOD = (120, 400)  # frames
SHAKE = 0.4  # px, amplitude of the hand-held shake
SHAKE_PERIOD = (6, 16)  # frames
BACKGROUND_ROLL_RATE = 0.2  # degrees per frame, at most
BACKGROUND_ZOOM_RATE = 0.004  # change of log-scale per frame, at most
BRIGHTNESS = 0.2  # the most the whole frame brightens or darkens (a fraction)
LAYER_BRIGHTNESS = 0.15  # the most each layer does on top of that
BRIGHTNESS_PERIOD = (20, 120)  # frames
MOTION_BLUR_EXPOSURE = 0.6  # the shutter is open this fraction of a frame interval
MAX_BLUR_SAMPLES = 9  # sub-frame renders averaged per layer for motion blur
FRAME0_SHARE = 0.5  # tracks started at frame 0; the rest at random frames
BACKGROUND_TRACK_KEEP = 0.5  # a track drawn on the background is kept with this chance (more on objects)
EDGE_MARGIN = 3  # texels between a track's start and its layer's outline
PHOTO_SHARE = 0.5  # textures cut from a photograph; the rest are procedural
PATTERN_ON_PHOTO_PROB = 0.25  # a photograph texture is modulated by a pattern
BACKGROUND_DEPTH = (15000, 30000)  # mm
OBJECT_DEPTH = (1500, 9000)  # mm
FOCAL = 1.0  # focal length over frame width (intrinsics)
JPEG_QUALITY = 95

# Argument bounds.
MIN_SIDE = 128
MAX_SIDE = 4096
MAX_SEQUENCES = 100000  # names have five digits
MAX_FRAMES = 10000
MAX_TRACK_ENTRIES = 10_000_000  # T * N
SET_NAME = re.compile(r'[A-Za-z0-9][A-Za-z0-9_.-]*')

# Photographs bundled in the scikit-image wheel and dedicated to the public domain or CC0
# (their skimage.data docstrings say so); the images with other or unstated terms are left out.
PHOTOS = ('astronaut', 'brick', 'camera', 'cell', 'chelsea', 'clock', 'coffee', 'grass', 'gravel',
          'hubble_deep_field', 'retina', 'rocket', 'text')
PHOTO_MAX_SIDE = 512  # px, larger photographs are shrunk once when loaded

SETTINGS_FILE = 'synthetic.json'
GENERATOR = 'datasets/synthetic.py 1'


def sequence_name(index):
    return 'seq_%05d' % index


# ---------------------------------------------------------------------------------------
# Arguments and the output folder


def check_settings(out_dir, dset, n_seqs, seed, T, H, W, N, motion_blur):
    """Raise SettingsError naming the first bad argument."""
    if not isinstance(out_dir, (str, os.PathLike)) or not str(out_dir):
        raise SettingsError(f'out_dir must be a folder path; got {out_dir!r}')
    if not isinstance(dset, str) or not SET_NAME.fullmatch(dset):
        raise SettingsError(f'dset must be a plain folder name (letters, digits, _ . -); got {dset!r}')
    check_count('n_seqs', n_seqs, 1, MAX_SEQUENCES)
    check_count('seed', seed, 0, 2 ** 63 - 1)
    check_count('T', T, 2, MAX_FRAMES)
    check_count('H', H, MIN_SIDE, MAX_SIDE)
    check_count('W', W, MIN_SIDE, MAX_SIDE)
    check_count('N', N, 1, MAX_TRACK_ENTRIES)
    if T * N > MAX_TRACK_ENTRIES:
        raise SettingsError(f'T * N must be at most {MAX_TRACK_ENTRIES}; got {T} * {N}')
    check_flag('motion_blur', motion_blur)


def prepare_split(out_dir, dset):
    """Create ``<out_dir>/<dset>``, check it takes files and sweep leftovers; returns its
    path. SettingsError if it cannot be written."""
    split_dir = os.path.join(str(out_dir), dset)
    check_writable(split_dir, '--out_dir')
    sweep_temporaries(split_dir)
    return split_dir


# ---------------------------------------------------------------------------------------
# Motion


def wave(amplitude, period, phase, times):
    """amplitude * sin(2 pi t / period + phase) at ``times`` (M; amplitude may be a vector,
    then M,D)."""
    return np.multiply.outer(np.sin(2 * np.pi * times / period + phase), amplitude)


def random_wave(rng, rate, period_range):
    """(amplitude, period, phase) of a wave whose rate of change stays under ``rate``."""
    period = rng.uniform(*period_range)
    return rng.uniform(0, rate) * period / (2 * np.pi), period, rng.uniform(0, 2 * np.pi)


def brightness_wave(rng, amplitude):
    """(amplitude, period, phase) of a brightness wave of at most ``amplitude``."""
    return rng.uniform(0, amplitude), rng.uniform(*BRIGHTNESS_PERIOD), rng.uniform(0, 2 * np.pi)


def random_direction(rng):
    angle = rng.uniform(0, 2 * np.pi)
    return np.array([np.cos(angle), np.sin(angle)])


@dataclass
class Path:
    """A layer's smooth motion: texture point q goes to frame point
    scale(t) * rotation(angle(t)) @ [[1, shear], [0, 1]] @ (q - anchor) + position(t), with
    position(t) = start + velocity * t + the sum of the sways (waves of 2-D amplitude),
    angle(t) = angle0 + spin * t + the roll wave, log scale(t) = the zoom wave."""

    anchor: np.ndarray  # 2, texture x,y
    start: np.ndarray  # 2, frame x,y
    velocity: np.ndarray  # 2, px per frame
    sways: list  # of (amplitude 2, period, phase)
    angle0: float
    spin: float  # rad per frame
    roll: tuple  # (amplitude rad, period, phase)
    zoom: tuple  # (amplitude in log-scale, period, phase)
    shear: float

    def positions(self, times):
        """M,2 frame positions of the anchor at ``times`` (M, fractional frames allowed)."""
        position = self.start + np.multiply.outer(times, self.velocity)
        for amplitude, period, phase in self.sways:
            position = position + wave(amplitude, period, phase, times)
        return position

    def scales(self, times):
        return np.exp(wave(self.zoom[0], *self.zoom[1:], times))

    def matrices(self, times):
        """M,2,3 affine maps from texture to frame coordinates at ``times``."""
        times = np.asarray(times, np.float64)
        angle = self.angle0 + self.spin * times + wave(self.roll[0], *self.roll[1:], times)
        cos, sin = np.cos(angle), np.sin(angle)
        rotation = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # M,2,2
        linear = self.scales(times)[:, None, None] * rotation @ np.array([[1.0, self.shear], [0.0, 1.0]])
        offset = self.positions(times) - linear @ self.anchor  # M,2
        return np.concatenate([linear, offset[:, :, None]], axis=2)


def object_path(rng, T, H, W, unit, anchor):
    """An object's path: it crosses a random point of the frame (or near it) at mid-sequence."""
    fast = rng.random() < FAST_OBJECT_PROB
    speed = rng.uniform(*(FAST_OBJECT_SPEED if fast else OBJECT_SPEED)) * unit
    velocity = speed * random_direction(rng)
    middle = rng.uniform([-0.1 * W, -0.1 * H], [1.1 * W, 1.1 * H])
    sways = []
    for _ in range(2):
        period = rng.uniform(*SWAY_PERIOD)
        size = rng.uniform(0, ACCELERATION * unit) * (period / (2 * np.pi)) ** 2
        sways.append((size * random_direction(rng), period, rng.uniform(0, 2 * np.pi)))
    spin = np.radians(rng.uniform(-OBJECT_SPIN, OBJECT_SPIN))
    return Path(anchor=anchor, start=middle - velocity * (T - 1) / 2, velocity=velocity, sways=sways,
                angle0=rng.uniform(0, 2 * np.pi), spin=spin, roll=(0.0, 1.0, 0.0),
                zoom=random_wave(rng, OBJECT_ZOOM_RATE, ZOOM_PERIOD),
                shear=rng.uniform(-OBJECT_SHEAR, OBJECT_SHEAR))


def background_path(rng, H, W, unit):
    """The background's path, anchored at texture (0, 0) (set the anchor once its size is
    known): a pan that turns back slowly, a shake, a slow roll and zoom, centred on the frame."""
    pan_speed, pan_period = rng.uniform(*BACKGROUND_SPEED) * unit, rng.uniform(*PAN_PERIOD)
    pan = (pan_speed * pan_period / (2 * np.pi) * random_direction(rng), pan_period, rng.uniform(0, 2 * np.pi))
    shake = (SHAKE * unit * random_direction(rng), rng.uniform(*SHAKE_PERIOD), rng.uniform(0, 2 * np.pi))
    return Path(anchor=np.zeros(2), start=np.array([(W - 1) / 2, (H - 1) / 2]), velocity=np.zeros(2),
                sways=[pan, shake], angle0=rng.uniform(-0.1, 0.1), spin=0.0,
                roll=random_wave(rng, np.radians(BACKGROUND_ROLL_RATE), PAN_PERIOD),
                zoom=random_wave(rng, BACKGROUND_ZOOM_RATE, PAN_PERIOD), shear=0.0)


def exposure_times(T):
    """Times at which the background must cover the frame: each frame and its shutter's ends."""
    frames = np.arange(T, dtype=np.float64)
    return np.concatenate([frames, frames - MOTION_BLUR_EXPOSURE / 2, frames + MOTION_BLUR_EXPOSURE / 2])


def background_half_size(path, T, H, W):
    """(half width, half height) in texels that the background texture needs around its
    anchor to cover the whole frame at every moment, with 2 texels to spare."""
    corners = np.array([[0, 0], [W - 1, 0], [0, H - 1], [W - 1, H - 1]], np.float64)  # 4,2
    matrices = path.matrices(exposure_times(T))  # M,2,3
    inverse = np.linalg.inv(matrices[:, :, :2])  # M,2,2
    texels = np.einsum('mij,mcj->mci', inverse, corners[None] - matrices[:, None, :, 2])  # M,4,2
    return np.ceil(np.abs(texels).max(axis=(0, 1))).astype(int) + 2


# ---------------------------------------------------------------------------------------
# Textures and shapes


@functools.lru_cache(maxsize=None)
def photo(name):
    """A bundled photograph as h,w,3 uint8 RGB, at most PHOTO_MAX_SIDE px a side."""
    image = getattr(skimage.data, name)()
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    scale = PHOTO_MAX_SIDE / max(image.shape[:2])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    image = np.ascontiguousarray(image[:, :, :3])
    image.flags.writeable = False
    return image


@functools.lru_cache(maxsize=None)
def horse_silhouette():
    """The horse silhouette bundled with scikit-image (CC0), h,w uint8 (255 on the horse)."""
    silhouette = (~skimage.data.horse()).astype(np.uint8) * 255
    silhouette.flags.writeable = False
    return silhouette


def random_colours(rng, count):
    return rng.uniform(0, 255, (count, 3)).astype(np.float32)


def colourise(values, colours):
    """h,w,3 float32: ``values`` (h,w in [0, 1]) mapped through a ramp of ``colours`` (K,3)."""
    stops = np.linspace(0, 1, len(colours))
    return np.stack([np.interp(values, stops, colours[:, c]) for c in range(3)], axis=-1).astype(np.float32)


def fractal_noise(rng, h, w, finest=2):
    """h,w float32 in [0, 1]: smooth random values summed over octaves (cells of 64 px down
    to ``finest``), coarse ones weighted more by a random roughness."""
    roughness = rng.uniform(0.4, 1.0)
    total = np.zeros((h, w), np.float32)
    cell = 64
    while cell >= finest:
        coarse = rng.random((h // cell + 2, w // cell + 2), np.float32)
        total += cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC) * cell ** roughness
        cell //= 2
    low, high = total.min(), total.max()
    return (total - low) / max(high - low, 1e-6)


def rotated_grid(rng, h, w):
    """(u, v) h,w float32: pixel coordinates turned by a random angle."""
    angle = rng.uniform(0, np.pi)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)


def noise_pattern(rng, h, w):
    return colourise(fractal_noise(rng, h, w), random_colours(rng, rng.integers(2, 5)))


def stripe_pattern(rng, h, w):
    """Stripes of a random period (4-24 px), soft or hard, with a little noise."""
    u, _ = rotated_grid(rng, h, w)
    profile = 0.5 + 0.5 * np.sin(u * (2 * np.pi / rng.uniform(4, 24)) + rng.uniform(0, 2 * np.pi))
    profile = np.clip((profile - 0.5) * rng.uniform(1, 6) + 0.5, 0, 1)
    return colourise(0.8 * profile + 0.2 * fractal_noise(rng, h, w), random_colours(rng, 2))


def checker_pattern(rng, h, w):
    """A turned checkerboard of 6-32 px cells, with a little noise."""
    u, v = rotated_grid(rng, h, w)
    cell = rng.uniform(6, 32)
    parity = ((np.floor(u / cell) + np.floor(v / cell)) % 2).astype(np.float32)
    return colourise(0.85 * parity + 0.15 * fractal_noise(rng, h, w), random_colours(rng, 2))


def gradient_pattern(rng, h, w):
    """A linear gradient shaded by fine noise (little texture: hard to track, as in real scenes)."""
    u, _ = rotated_grid(rng, h, w)
    ramp = (u - u.min()) / max(u.max() - u.min(), 1e-6)
    shade = 0.75 + 0.25 * fractal_noise(rng, h, w, finest=1)
    return colourise(ramp, random_colours(rng, 2)) * shade[:, :, None]


def dots_pattern(rng, h, w):
    """Noise sprinkled with discs of random colours and radii (2-10 px)."""
    canvas = np.ascontiguousarray(noise_pattern(rng, h, w))
    count = max(h * w // 300, 1)
    centres = rng.integers(0, [w, h], (count, 2))
    radii = rng.integers(2, 11, count)
    for (x, y), radius, colour in zip(centres, radii, random_colours(rng, count)):
        cv2.circle(canvas, (int(x), int(y)), int(radius), colour.tolist(), -1, cv2.LINE_AA)
    return canvas


PATTERNS = (noise_pattern, stripe_pattern, checker_pattern, gradient_pattern, dots_pattern)


def photo_crop(rng, h, w):
    """h,w,3 float32: a random crop of a random bundled photograph, turned, flipped and
    rescaled at random; grey photographs get a random colour ramp."""
    name = PHOTOS[rng.integers(len(PHOTOS))]
    image = np.rot90(photo(name), rng.integers(4))
    if rng.random() < 0.5:
        image = image[:, ::-1]
    ph, pw = image.shape[:2]
    zoom = max(h / ph, w / pw, rng.uniform(0.5, 1.2))
    size = (max(w, int(round(pw * zoom))), max(h, int(round(ph * zoom))))
    interpolation = cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR
    image = cv2.resize(np.ascontiguousarray(image), size, interpolation=interpolation)
    y0, x0 = rng.integers(0, size[1] - h + 1), rng.integers(0, size[0] - w + 1)
    crop = image[y0:y0 + h, x0:x0 + w].astype(np.float32)
    grey = (crop[:, :, 0] == crop[:, :, 1]).all() and (crop[:, :, 1] == crop[:, :, 2]).all()
    if grey:
        crop = colourise(crop[:, :, 0] / 255, np.sort(random_colours(rng, 2), axis=0))
    return crop


def make_texture(rng, h, w):
    """h,w,3 uint8 RGB: a photograph crop (PHOTO_SHARE of the time, sometimes modulated by a
    pattern) or a procedural pattern."""
    if rng.random() < PHOTO_SHARE:
        texture = photo_crop(rng, h, w)
        if rng.random() < PATTERN_ON_PHOTO_PROB:
            pattern = PATTERNS[rng.integers(len(PATTERNS))](rng, h, w)
            texture = texture * (0.5 + pattern.mean(axis=2, keepdims=True) / 255)
    else:
        texture = PATTERNS[rng.integers(len(PATTERNS))](rng, h, w)
    return np.clip(np.rint(texture), 0, 255).astype(np.uint8)


def ellipse_shape(rng, mask, box):
    (x0, y0), (x1, y1) = box
    centre, axes = ((x0 + x1) // 2, (y0 + y1) // 2), ((x1 - x0) // 2, (y1 - y0) // 2)
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 255, -1)


def ring_shape(rng, mask, box):
    """An ellipse with an elliptic hole (through which farther layers show)."""
    (x0, y0), (x1, y1) = box
    centre, axes = ((x0 + x1) // 2, (y0 + y1) // 2), np.array([(x1 - x0) // 2, (y1 - y0) // 2])
    cv2.ellipse(mask, centre, tuple(int(a) for a in axes), 0, 0, 360, 255, -1)
    hole = np.maximum((axes * rng.uniform(0.3, 0.6)).astype(int), 1)
    cv2.ellipse(mask, centre, tuple(int(a) for a in hole), 0, 0, 360, 0, -1)


def polygon_shape(rng, mask, box):
    """A star-shaped polygon of 3-9 corners at random angles and radii."""
    (x0, y0), (x1, y1) = box
    count = rng.integers(3, 10)
    angles = np.sort(rng.uniform(0, 2 * np.pi, count))
    radii = rng.uniform(0.45, 1.0, count)
    half = np.array([(x1 - x0) / 2, (y1 - y0) / 2])
    corners = np.array([(x0 + x1) / 2, (y0 + y1) / 2]) + half * radii[:, None] * np.stack(
        [np.cos(angles), np.sin(angles)], axis=1)
    cv2.fillPoly(mask, [np.round(corners).astype(np.int32)], 255)


def blob_shape(rng, mask, box):
    """An irregular blob: noise thresholded under an elliptic falloff (may hold holes)."""
    (x0, y0), (x1, y1) = box
    h, w = y1 - y0 + 1, x1 - x0 + 1
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    radius2 = ((x - (w - 1) / 2) / (w / 2)) ** 2 + ((y - (h - 1) / 2) / (h / 2)) ** 2
    mask[y0:y1 + 1, x0:x1 + 1] = 255 * ((1 - radius2) * 0.6 + fractal_noise(rng, h, w, finest=4) * 0.6 > 0.55)


def horse_shape(rng, mask, box):
    (x0, y0), (x1, y1) = box
    size = (x1 - x0 + 1, y1 - y0 + 1)
    mask[y0:y1 + 1, x0:x1 + 1] = cv2.resize(horse_silhouette(), size, interpolation=cv2.INTER_NEAREST)


def rectangle_shape(rng, mask, box):
    cv2.rectangle(mask, box[0], box[1], 255, -1)


def letter_shape(rng, mask, box):
    """A bold letter or digit filling the box (thin strokes, small counters)."""
    (x0, y0), (x1, y1) = box
    glyph = 'ABCDEFGHKMNOPRSTUVWXYZ0123456789'[rng.integers(32)]
    drawn = np.zeros((100, 100), np.uint8)
    cv2.putText(drawn, glyph, (12, 82), cv2.FONT_HERSHEY_SIMPLEX, 2.6, 255, 14)
    ys, xs = np.nonzero(drawn)
    glyph_box = drawn[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    mask[y0:y1 + 1, x0:x1 + 1] = cv2.resize(glyph_box, (x1 - x0 + 1, y1 - y0 + 1), interpolation=cv2.INTER_NEAREST)


SHAPES = (ellipse_shape, polygon_shape, blob_shape, ring_shape, horse_shape, rectangle_shape, letter_shape)
SHAPE_WEIGHTS = (0.2, 0.25, 0.2, 0.1, 0.1, 0.1, 0.05)


def make_shape(rng, h, w):
    """h,w uint8 (255 inside) of a random shape kept EDGE_MARGIN + 2 texels off the border."""
    mask = np.zeros((h, w), np.uint8)
    pad = EDGE_MARGIN + 2
    shape = SHAPES[rng.choice(len(SHAPES), p=SHAPE_WEIGHTS)]
    shape(rng, mask, ((pad, pad), (w - 1 - pad, h - 1 - pad)))
    return mask


# ---------------------------------------------------------------------------------------
# Scenes


@dataclass
class Layer:
    """A textured layer: ``texture`` h,w,3 uint8, ``shape`` h,w uint8 (255 inside),
    ``interior`` h,w bool (the shape less EDGE_MARGIN texels), its motion, the depth it has
    at scale 1 (mm) and its own brightness wave."""

    texture: np.ndarray
    shape: np.ndarray
    interior: np.ndarray
    path: Path
    depth: float
    brightness: tuple  # (amplitude, period, phase)

    @property
    def corners(self):
        h, w = self.shape.shape
        return np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], np.float64)  # 4,2


def make_object(rng, T, H, W, unit):
    extent = rng.uniform(*OBJECT_SIZE) * min(H, W)
    aspect = np.exp(rng.uniform(-0.4, 0.4))
    w = max(int(extent * np.sqrt(aspect)), 16) + 2 * EDGE_MARGIN
    h = max(int(extent / np.sqrt(aspect)), 16) + 2 * EDGE_MARGIN
    texture, shape = make_texture(rng, h, w), make_shape(rng, h, w)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * EDGE_MARGIN + 1, 2 * EDGE_MARGIN + 1))
    return Layer(texture=texture, shape=shape, interior=cv2.erode(shape, kernel) > 0,
                 path=object_path(rng, T, H, W, unit, anchor=np.array([(w - 1) / 2, (h - 1) / 2])),
                 depth=rng.uniform(*OBJECT_DEPTH), brightness=brightness_wave(rng, LAYER_BRIGHTNESS))


def make_background(rng, T, H, W, unit):
    path = background_path(rng, H, W, unit)
    half = background_half_size(path, T, H, W)
    path.anchor = half.astype(np.float64)
    h, w = 2 * half[1] + 1, 2 * half[0] + 1
    return Layer(texture=make_texture(rng, h, w), shape=np.full((h, w), 255, np.uint8),
                 interior=np.ones((h, w), bool), path=path, depth=rng.uniform(*BACKGROUND_DEPTH),
                 brightness=brightness_wave(rng, LAYER_BRIGHTNESS))


@dataclass
class Scene:
    """A sequence ready to render: its layers (0 the background; layer l has mask id l + 1),
    per-frame ``poses`` T,L,2,3 (texture to frame), ``depths`` T,L (mm), ``gains`` T,L
    (brightness factors), and the tracks: ``track_layers`` N, ``track_points`` N,2
    (texture x,y), ``trajs`` T,N,2 float32 (frame x,y)."""

    settings: dict
    layers: list
    poses: np.ndarray
    depths: np.ndarray
    gains: np.ndarray
    track_layers: np.ndarray
    track_points: np.ndarray
    trajs: np.ndarray

    @property
    def size(self):
        return self.settings['H'], self.settings['W']


def brightness_gains(rng, layers, T):
    """T,L: the global brightness wave times each layer's own."""
    times = np.arange(T, dtype=np.float64)
    overall = 1 + wave(*brightness_wave(rng, BRIGHTNESS), times)  # T
    own = np.stack([1 + wave(*layer.brightness, times) for layer in layers], axis=1)  # T,L
    return overall[:, None] * own


def invert_affine(matrices):
    """...,2,3 inverse affine maps."""
    linear = np.linalg.inv(matrices[..., :2])
    return np.concatenate([linear, -linear @ matrices[..., 2:]], axis=-1)


def texel_lookup(image, points):
    """image values at the texels nearest to ``points`` (M,2 x,y); 0 outside the image."""
    h, w = image.shape[:2]
    x, y = np.floor(points[:, 0] + 0.5), np.floor(points[:, 1] + 0.5)
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    values = np.zeros(len(points), image.dtype)
    values[inside] = image[y[inside].astype(int), x[inside].astype(int)]
    return values


def topmost_layers(layers, poses, depths, times, pixels):
    """(layer index M, its texture point M,2) on top at ``pixels`` (M,2) of frames ``times`` (M)."""
    inverse = invert_affine(poses[times])  # M,L,2,3
    points = np.einsum('mlij,mj->lmi', inverse[..., :2], pixels) + inverse[..., 2].transpose(1, 0, 2)  # L,M,2
    nearest = np.full((len(layers), len(times)), np.inf)
    for k, layer in enumerate(layers):
        covered = texel_lookup(layer.shape, points[k]) > 0
        nearest[k, covered] = depths[times[covered], k]
    top = nearest.argmin(axis=0)
    return top, points[top, np.arange(len(times))]


def sample_tracks(rng, layers, poses, depths, N, H, W):
    """(layer index N, texture point N,2): points on the topmost layer at random pixels of
    frame 0 (FRAME0_SHARE of them) or random frames, inside their layer's interior; those on
    the background are thinned to BACKGROUND_TRACK_KEEP."""
    T = len(poses)
    chosen_layers, chosen_points = [], []
    while sum(len(c) for c in chosen_layers) < N:
        count = 2 * (N - sum(len(c) for c in chosen_layers)) + 16
        times = np.where(rng.random(count) < FRAME0_SHARE, 0, rng.integers(0, T, count))
        pixels = rng.uniform([0, 0], [W - 1, H - 1], (count, 2))
        top, points = topmost_layers(layers, poses, depths, times, pixels)
        keep = (top > 0) | (rng.random(count) < BACKGROUND_TRACK_KEEP)
        for k, layer in enumerate(layers):
            keep[top == k] &= texel_lookup(layer.interior, points[top == k])
        chosen_layers.append(top[keep])
        chosen_points.append(points[keep])
    return np.concatenate(chosen_layers)[:N], np.concatenate(chosen_points)[:N]


def track_positions(poses, track_layers, track_points):
    """T,N,2 float32: each track's texture point mapped by its layer's pose at every frame."""
    trajs = np.zeros((len(poses), len(track_layers), 2))
    for k in np.unique(track_layers):
        on = track_layers == k
        trajs[:, on] = np.einsum('tij,nj->tni', poses[:, k, :, :2], track_points[on]) + poses[:, k, None, :, 2]
    return trajs.astype(np.float32)


def make_scene(seed, index, T, H, W, N, motion_blur=False):
    """Sequence ``index`` of the set made with ``seed`` (drawn from (seed, index) alone)."""
    rng = np.random.default_rng([seed, index])
    unit = min(H, W) / REFERENCE_SIDE
    objects = [make_object(rng, T, H, W, unit) for _ in range(rng.integers(OBJECT_COUNT[0], OBJECT_COUNT[1] + 1))]
    layers = [make_background(rng, T, H, W, unit)] + objects
    times = np.arange(T, dtype=np.float64)
    poses = np.stack([layer.path.matrices(times) for layer in layers], axis=1)  # T,L,2,3
    depths = np.stack([layer.depth / layer.path.scales(times) for layer in layers], axis=1)  # T,L
    gains = brightness_gains(rng, layers, T)
    track_layers, track_points = sample_tracks(rng, layers, poses, depths, N, H, W)
    settings = dict(generator=GENERATOR, seed=seed, index=index, T=T, H=H, W=W, N=N, motion_blur=motion_blur)
    return Scene(settings=settings, layers=layers, poses=poses, depths=depths, gains=gains, track_layers=track_layers,
                 track_points=track_points, trajs=track_positions(poses, track_layers, track_points))


# ---------------------------------------------------------------------------------------
# Rendering


@dataclass
class Frame:
    """One rendered frame: colours, the id mask and the depth map."""

    rgb: np.ndarray  # H,W,3 uint8
    ids: np.ndarray  # H,W uint8 layer ids (layer index + 1)
    depth: np.ndarray  # H,W uint16 mm


def frame_box(layer, matrices, H, W):
    """(x0, y0, x1, y1), the frame pixels the layer may touch under any of ``matrices``
    (M,2,3), clipped to the frame; None if none."""
    corners = np.einsum('mij,cj->mci', matrices[:, :, :2], layer.corners) + matrices[:, None, :, 2]  # M,4,2
    low = np.maximum(np.floor(corners.min(axis=(0, 1))).astype(int) - 1, 0)
    high = np.minimum(np.ceil(corners.max(axis=(0, 1))).astype(int) + 2, [W, H])
    if (low >= high).any():
        return None
    return int(low[0]), int(low[1]), int(high[0]), int(high[1])


def warp(image, matrix, box, interpolation):
    """``image`` drawn by ``matrix`` (2,3) into the frame pixels of ``box``."""
    x0, y0, x1, y1 = box
    shifted = matrix - np.array([[0, 0, x0], [0, 0, y0]])
    border = cv2.BORDER_REPLICATE if interpolation == cv2.INTER_LINEAR else cv2.BORDER_CONSTANT
    return cv2.warpAffine(image, shifted, (x1 - x0, y1 - y0), flags=interpolation, borderMode=border)


def shutter_matrices(layer, t):
    """K,2,3 maps over the exposure around frame t: one per texel the layer's corners move
    (at least 2, at most MAX_BLUR_SAMPLES)."""
    ends = layer.path.matrices([t - MOTION_BLUR_EXPOSURE / 2, t + MOTION_BLUR_EXPOSURE / 2])
    moved = np.einsum('kij,cj->kci', ends[:, :, :2], layer.corners) + ends[:, None, :, 2]  # 2,4,2
    count = int(np.clip(np.ceil(np.abs(moved[1] - moved[0]).max()), 2, MAX_BLUR_SAMPLES))
    return layer.path.matrices(t + MOTION_BLUR_EXPOSURE * np.linspace(-0.5, 0.5, count))


def layer_paint(layer, pose, box, blur_matrices):
    """(premultiplied colour bh,bw,3 float32, opacity bh,bw,1 float32, cover bh,bw bool) of a
    layer in ``box``: drawn at ``pose``, or averaged over ``blur_matrices`` when given (the
    cover, which makes the id mask, is always the sharp shape at ``pose``)."""
    cover = warp(layer.shape, pose, box, cv2.INTER_NEAREST) > 0
    if blur_matrices is None:
        opacity = cover[:, :, None].astype(np.float32)
        return warp(layer.texture, pose, box, cv2.INTER_LINEAR) * opacity, opacity, cover
    colour, opacity = 0, 0
    for matrix in blur_matrices:
        alpha = warp(layer.shape, matrix, box, cv2.INTER_LINEAR)[:, :, None] / np.float32(255)
        colour = colour + warp(layer.texture, matrix, box, cv2.INTER_LINEAR) * alpha
        opacity = opacity + alpha
    return colour / len(blur_matrices), opacity / len(blur_matrices), cover


def render_frame(scene, t):
    """Frame t: layers painted far to near (brightness applied), their ids and depths."""
    H, W = scene.size
    canvas = np.zeros((H, W, 3), np.float32)
    ids = np.zeros((H, W), np.uint8)
    for k in np.argsort(-scene.depths[t], kind='stable'):
        layer, pose = scene.layers[k], scene.poses[t, k]
        blur = shutter_matrices(layer, t) if scene.settings['motion_blur'] else None
        box = frame_box(layer, pose[None] if blur is None else np.concatenate([pose[None], blur]), H, W)
        if box is None:
            continue
        colour, opacity, cover = layer_paint(layer, pose, box, blur)
        x0, y0, x1, y1 = box
        canvas[y0:y1, x0:x1] = canvas[y0:y1, x0:x1] * (1 - opacity) + colour * np.float32(scene.gains[t, k])
        ids[y0:y1, x0:x1][cover] = k + 1
    depth_of_id = np.zeros(256, np.uint16)
    depth_of_id[1:len(scene.layers) + 1] = np.clip(np.rint(scene.depths[t]), 0, 65535)
    return Frame(rgb=np.clip(np.rint(canvas), 0, 255).astype(np.uint8), ids=ids, depth=depth_of_id[ids])


def visible_tracks(scene, t, ids):
    """N bool: tracks in the frame whose pixel shows their own layer in ``ids`` (H,W)."""
    H, W = scene.size
    x, y = scene.trajs[t, :, 0].astype(np.float64), scene.trajs[t, :, 1].astype(np.float64)
    inside = (x >= 0) & (x <= W - 1) & (y >= 0) & (y <= H - 1)
    column = np.clip(np.floor(x + 0.5), 0, W - 1).astype(int)
    row = np.clip(np.floor(y + 0.5), 0, H - 1).astype(int)
    return inside & (ids[row, column] == scene.track_layers + 1)


# ---------------------------------------------------------------------------------------
# Writing


def camera_points(scene):
    """(trajs_3d T,N,3 metres in the camera frame, intrinsics 3,3) of a pinhole camera with
    focal length FOCAL * W, each track at its layer's depth."""
    H, W = scene.size
    focal, centre = FOCAL * W, np.array([(W - 1) / 2, (H - 1) / 2])
    intrinsics = np.array([[focal, 0, centre[0]], [0, focal, centre[1]], [0, 0, 1]], np.float32)
    depth = scene.depths[:, scene.track_layers] / 1000  # T,N
    xy = (scene.trajs - centre) / focal * depth[:, :, None]
    return np.concatenate([xy, depth[:, :, None]], axis=2).astype(np.float32), intrinsics


def write_annotations(path, scene, visibs):
    T, N = visibs.shape
    trajs_3d, intrinsics = camera_points(scene)
    np.savez(path, trajs_2d=scene.trajs, visibs=visibs, valids=np.ones((T, N), bool), trajs_3d=trajs_3d,
             intrinsics=np.tile(intrinsics, (T, 1, 1)), extrinsics=np.tile(np.eye(4, dtype=np.float32), (T, 1, 1)))


def write_image(path, image, params=()):
    if not cv2.imwrite(path, image, list(params)):
        raise DatasetError(f'{path}: could not be written')


def write_sequence(seq_dir, scene):
    """Render ``scene`` into ``seq_dir`` (the PointOdyssey files and synthetic.json);
    returns visibs T,N."""
    T, N = scene.trajs.shape[:2]
    for folder in ('rgbs', 'masks', 'depths'):
        os.makedirs(os.path.join(seq_dir, folder), exist_ok=True)
    visibs = np.zeros((T, N), bool)
    for t in range(T):
        frame = render_frame(scene, t)
        visibs[t] = visible_tracks(scene, t, frame.ids)
        write_image(os.path.join(seq_dir, 'rgbs', 'rgb_%05d.jpg' % t), frame.rgb[:, :, ::-1],
                    (cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY))
        write_image(os.path.join(seq_dir, 'masks', 'mask_%05d.png' % t), frame.ids)
        write_image(os.path.join(seq_dir, 'depths', 'depth_%05d.png' % t), frame.depth)
    write_annotations(os.path.join(seq_dir, 'anno.npz'), scene, visibs)
    with open(os.path.join(seq_dir, SETTINGS_FILE), 'w') as f:
        json.dump(scene.settings, f, sort_keys=True)
    return visibs


def recorded_settings(seq_dir):
    try:
        with open(os.path.join(seq_dir, SETTINGS_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise DatasetError(f'{seq_dir}: exists but is not a finished synthetic sequence ({exc})') from exc


def check_finished(seq_dir, settings):
    """DatasetError unless the finished sequence was made with ``settings``."""
    recorded = recorded_settings(seq_dir)
    if recorded != settings:
        differ = ', '.join(f'{key}={recorded.get(key)!r} (now {value!r})' for key, value in settings.items()
                           if recorded.get(key) != value)
        raise DatasetError(f'{seq_dir}: made with other settings: {differ}; use another out_dir or dset')


def busy_elsewhere(split_dir, name):
    """Whether another live process is writing sequence ``name`` (a temporary folder of another
    host counts as in use until it is stale: its process cannot be checked from here)."""
    mine = os.path.basename(temporary_name(os.path.join(split_dir, name)))
    for entry in os.listdir(split_dir):
        if entry.startswith(f'.{name}{TMP_MARK}') and entry != mine:
            age = time.time() - os.path.getmtime(os.path.join(split_dir, entry))
            if not writer_is_dead(entry, age):
                return True
    return False


def make_one(split_dir, index, settings):
    """(name, 'written' | 'present' | 'busy') for sequence ``index``: written now, found
    finished (by this or another run), or left to the live process already writing it."""
    name = sequence_name(index)
    seq_dir = os.path.join(split_dir, name)
    wanted = dict(generator=GENERATOR, index=index, **settings)
    if os.path.isdir(seq_dir):
        check_finished(seq_dir, wanted)
        return name, 'present'
    if busy_elsewhere(split_dir, name):
        return name, 'busy'
    try:
        with atomic_path(seq_dir) as temp_dir:  # the rename refuses to replace a finished folder
            write_sequence(temp_dir, make_scene(index=index, **settings))
    except OSError:
        if not os.path.isdir(seq_dir):
            raise
        check_finished(seq_dir, wanted)
        return name, 'present'
    return name, 'written'


def make_sequences(out_dir, dset='train', n_seqs=1, seed=0, T=40, H=256, W=320, N=600, motion_blur=False):
    """Check the arguments and the output folder at once (SettingsError, DatasetError), then
    return an iterator that makes sequences 0..n_seqs-1 one by one, yielding (name,
    outcome) as ``make_one``."""
    check_settings(out_dir, dset, n_seqs=n_seqs, seed=seed, T=T, H=H, W=W, N=N, motion_blur=motion_blur)
    split_dir = prepare_split(out_dir, dset)
    settings = dict(seed=int(seed), T=int(T), H=int(H), W=int(W), N=int(N), motion_blur=bool(motion_blur))
    return (make_one(split_dir, index, settings) for index in range(n_seqs))
