"""The training augmentations of PointOdyssey clips: photometric, occluders, time reversal,
and the spatial ones (resize, pad, drifting zoom and crop, flips).

Functions work on a ``Clip`` in place or return a new one. Every random draw comes from the
numpy Generator passed in (the photometric recipe shares it, see ``sample_rng``), so a seed
reproduces a sample.

The photometric recipe is the original's, written for albumentations 2.x with the
distributions of the 1.x release the original used: Gaussian noise whose variance (not
standard deviation) is uniform in 10..50 (0..255 units), added as 1.x added it, and
motion-blur kernels that are one-pixel lines between two random cells of a random odd
square (3..7), as 1.x drew them.
"""

import random
import warnings
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np

SPATIAL_PROB = 0.7  # else a plain crop or a plain resize
PLAIN_CROP_PROB = 0.5  # of the non-spatial clips: crop at native resolution, else resize
REVERSE_PROB = 0.5
ERASER_PROB = 0.2  # per clip, then per frame
ERASER_COUNT = (1, 10)  # rectangles per erased frame
ERASER_SIZE = (20, 300)  # px, each side (upper bound excluded)
PAD_MAX = 64  # px of zero padding per side (excluded)
SCALE_RANGE = (0.25, 1.5)  # base scale
SCALE_LIMITS = (0.2, 2.0)  # per-frame scale after drift
SCALE_DRIFT = 0.1  # per-frame scale change is uniform(-0.1, 0.1) * 0.1, smoothed
CROP_SLACK = 16  # a resized frame of the spatial path is at least this much larger than the crop
CROP_DRIFT = 20  # px per frame
FLIP_PROB = 0.5
NOISE_VARIANCE = (10.0, 50.0)  # albumentations 1.x GaussNoise var_limit, 0..255 units


@dataclass
class Clip:
    """A clip being augmented. Frame sizes may differ between frames mid-way."""

    rgbs: list  # S of H,W,3 uint8
    labels: list | None  # S of H,W,2: object ids and mask edges (nearest-neighbour layers), or None
    trajs: np.ndarray  # S,N,2 pixels
    visibs: np.ndarray  # S,N
    valids: np.ndarray  # S,N


class VarianceGaussNoise(A.GaussNoise):
    """GaussNoise as albumentations 1.x drew and added it: the variance uniform in
    NOISE_VARIANCE, one noise field per draw, added to the uint8 image in float, clipped
    and truncated (2.x rounds the noise toward zero first, which weakens it)."""

    def get_params_dependent_on_data(self, params, data):
        std = np.sqrt(self.py_random.uniform(*NOISE_VARIANCE)) / 255  # fraction of the uint8 range
        self.std_range = (std, std)
        return super().get_params_dependent_on_data(params, data)

    def apply(self, img, noise_map, **params):
        return np.clip(img.astype(np.float32) + noise_map, 0, 255).astype(np.uint8)


class LineMotionBlur(A.MotionBlur):
    """MotionBlur with albumentations 1.x's kernels: an odd size in blur_limit, a one-pixel
    line between two random cells (two distinct rows when the columns agree), normalised."""

    def get_params(self):
        size = self.py_random.choice(range(self.blur_limit[0], self.blur_limit[1] + 1, 2))
        x1, x2 = self.py_random.randint(0, size - 1), self.py_random.randint(0, size - 1)
        if x1 == x2:
            y1, y2 = self.py_random.sample(range(size), 2)
        else:
            y1, y2 = self.py_random.randint(0, size - 1), self.py_random.randint(0, size - 1)
        kernel = cv2.line(np.zeros((size, size), np.uint8), (x1, y1), (x2, y2), 1, thickness=1)
        return {'kernel': kernel.astype(np.float32) / kernel.sum()}


def color_augmenter():
    """The original's photometric recipe, one draw per clip (see the module docstring)."""
    return A.ReplayCompose([
        VarianceGaussNoise(p=0.2),
        A.OneOf([LineMotionBlur(blur_limit=(3, 7), p=0.2), A.MedianBlur(blur_limit=3, p=0.1),
                 A.Blur(blur_limit=3, p=0.1)], p=0.2),
        A.OneOf([A.CLAHE(clip_limit=2), A.Sharpen(), A.Emboss()], p=0.2),
        A.RGBShift(p=0.5),
        A.RandomBrightnessContrast(p=0.5),
        A.RandomGamma(p=0.5),
        A.HueSaturationValue(p=0.3),
        A.ImageCompression(quality_range=(50, 100), p=0.3),
    ], p=0.8)


def augment_video(augmenter, frames):
    """Apply one random draw of ``augmenter`` identically to every frame (S of H,W,3 uint8)."""
    with warnings.catch_warnings():  # replaying warns about arguments it does not need
        warnings.simplefilter('ignore', UserWarning)
        first = augmenter(image=frames[0])
        replay = A.ReplayCompose._restore_for_replay(first['replay'])  # built once, not per frame
        rest = [replay(force_apply=True, image=frame)['image'] for frame in frames[1:]]
    return [first['image']] + rest


def augment_video_bgr(augmenter, frames):
    """``augment_video`` on the BGR form of RGB frames (S,H,W,3), back in RGB: the channel
    order the original's second pass, on frames read by OpenCV, used (CLAHE, JPEG and hue
    treat the channels differently)."""
    return np.stack(augment_video(augmenter, [f[:, :, ::-1] for f in frames]))[..., ::-1]


def sample_rng(seed, index, augmenter):
    """The random generator for one sample, shared with ``augmenter``: fresh entropy when
    ``seed`` is None (so DataLoader workers differ), else fixed by (seed, index)."""
    rng = np.random.default_rng(None if seed is None else (seed, index))
    augmenter.set_random_state(rng, random.Random(int(rng.integers(2 ** 63))))
    return rng


def erase_patches(rgbs, trajs, visibs, rng):
    """The "eraser" occluders: on each later frame with probability ERASER_PROB, 1-10
    rectangles filled with their mean colour; points inside become invisible (in place)."""
    H, W = rgbs[0].shape[:2]
    for s in range(1, len(rgbs)):
        if rng.random() >= ERASER_PROB:
            continue
        for _ in range(rng.integers(ERASER_COUNT[0], ERASER_COUNT[1] + 1)):
            xc, yc = rng.integers(0, W), rng.integers(0, H)
            dx, dy = rng.integers(ERASER_SIZE[0], ERASER_SIZE[1], 2)
            x0, x1 = np.clip(np.round([xc - dx / 2, xc + dx / 2]), 0, W - 1).astype(int)
            y0, y1 = np.clip(np.round([yc - dy / 2, yc + dy / 2]), 0, H - 1).astype(int)
            if x1 <= x0 or y1 <= y0:
                continue
            patch = rgbs[s][y0:y1, x0:x1]
            patch[:] = patch.reshape(-1, 3).mean(axis=0).astype(np.uint8)
            x, y = trajs[s, :, 0], trajs[s, :, 1]
            visibs[s, (x >= x0) & (x < x1) & (y >= y0) & (y < y1)] = 0


def reverse_time(clip):
    """The clip backwards in time (frames, labels, tracks, visibility and validity)."""
    return Clip(clip.rgbs[::-1], None if clip.labels is None else clip.labels[::-1],
                clip.trajs[::-1].copy(), clip.visibs[::-1].copy(), clip.valids[::-1].copy())


def resize_frames(clip, sizes):
    """Resize frame s to sizes[s] = (H, W) (bilinear; labels nearest); a track at x moves
    to x * W_new / W, as the original and the evaluation scripts scale labels."""
    for s, (H_new, W_new) in enumerate(sizes):
        H, W = clip.rgbs[s].shape[:2]
        clip.rgbs[s] = cv2.resize(clip.rgbs[s], (W_new, H_new), interpolation=cv2.INTER_LINEAR)
        if clip.labels is not None:
            clip.labels[s] = cv2.resize(clip.labels[s], (W_new, H_new), interpolation=cv2.INTER_NEAREST)
        clip.trajs[s] *= np.array([W_new / W, H_new / H], np.float32)


def crop_frames(clip, corners, crop_size):
    """Cut crop_size (H, W) out of frame s at corners[s] = (x0, y0)."""
    ch, cw = crop_size
    for s, (x0, y0) in enumerate(corners):
        clip.rgbs[s] = clip.rgbs[s][y0:y0 + ch, x0:x0 + cw]
        if clip.labels is not None:
            clip.labels[s] = clip.labels[s][y0:y0 + ch, x0:x0 + cw]
        clip.trajs[s] -= np.array([x0, y0], np.float32)


def pad_frames(clip, top, bottom, left, right):
    """Zero-pad every frame (and label layer) on each side."""
    widths = ((top, bottom), (left, right), (0, 0))
    clip.rgbs = [np.pad(rgb, widths) for rgb in clip.rgbs]
    if clip.labels is not None:
        clip.labels = [np.pad(label, widths) for label in clip.labels]
    clip.trajs += np.array([left, top], np.float32)


def flip_frames(clip, horizontal):
    """Mirror every frame left-right (or top-bottom); pixel x maps to W-1-x."""
    axis = 1 if horizontal else 0
    clip.rgbs = [np.flip(rgb, axis) for rgb in clip.rgbs]
    if clip.labels is not None:
        clip.labels = [np.flip(label, axis) for label in clip.labels]
    size = clip.rgbs[0].shape[axis]
    coord = 0 if horizontal else 1
    clip.trajs[..., coord] = size - 1 - clip.trajs[..., coord]


def drifting_sizes(H, W, S, crop_size, rng):
    """Per-frame (H, W) after a random base scale that drifts smoothly over the clip."""
    scale = rng.uniform(*SCALE_RANGE)
    scale_x = scale_y = scale
    delta_x = delta_y = 0.0
    sizes = []
    for s in range(S):
        if s > 0:
            delta_x = delta_x * (0.9 if s > 1 else 0.0) + rng.uniform(-SCALE_DRIFT, SCALE_DRIFT) * 0.1
            delta_y = delta_y * (0.9 if s > 1 else 0.0) + rng.uniform(-SCALE_DRIFT, SCALE_DRIFT) * 0.1
        scale_x, scale_y = scale_x + delta_x, scale_y + delta_y
        mean = (scale_x + scale_y) / 2  # pull x and y scales together
        scale_x = np.clip((scale_x + mean) / 2, *SCALE_LIMITS)
        scale_y = np.clip((scale_y + mean) / 2, *SCALE_LIMITS)
        H_new = max(int(H * scale_y), crop_size[0] + CROP_SLACK)
        W_new = max(int(W * scale_x), crop_size[1] + CROP_SLACK)
        scale_x, scale_y = W_new / W, H_new / H
        sizes.append((H_new, W_new))
    return sizes


def drifting_corners(clip, crop_size, rng):
    """Per-frame crop corners (x0, y0): centred on the frame-0 visible tracks, then drifting.
    As in the original, a corner stays at most (frame size - crop size - 1)."""
    ch, cw = crop_size
    visible0 = clip.visibs[0] > 0
    if visible0.any():
        mid_x, mid_y = clip.trajs[0, visible0].mean(axis=0)
    else:
        mid_x, mid_y = cw, ch
    x0, y0 = int(mid_x - cw // 2), int(mid_y - ch // 2)
    offset_x = offset_y = 0
    corners = []
    for s, rgb in enumerate(clip.rgbs):
        if s == 1:
            offset_x, offset_y = rng.integers(-CROP_DRIFT, CROP_DRIFT, 2)
        elif s > 1:
            step_x, step_y = rng.integers(-CROP_DRIFT, CROP_DRIFT + 1, 2)
            offset_x, offset_y = int(offset_x * 0.8 + step_x * 0.2), int(offset_y * 0.8 + step_y * 0.2)
        H, W = rgb.shape[:2]
        x0 = min(max(0, x0 + offset_x), W - cw - 1)
        y0 = min(max(0, y0 + offset_y), H - ch - 1)
        corners.append((x0, y0))
    return corners


def spatial_augs(clip, resize_size, crop_size, rng):
    """Resize to resize_size (at least crop + CROP_SLACK), random padding, smoothly drifting
    scale and crop, random flips (in place). Frames come out float32, as in the original
    (which truncated them to uint8 at the end)."""
    S = len(clip.rgbs)
    clip.rgbs = [rgb.astype(np.float32) for rgb in clip.rgbs]
    base = (max(resize_size[0], crop_size[0] + CROP_SLACK), max(resize_size[1], crop_size[1] + CROP_SLACK))
    resize_frames(clip, [base] * S)
    pad_frames(clip, *rng.integers(0, PAD_MAX, 4))
    H, W = clip.rgbs[0].shape[:2]
    resize_frames(clip, drifting_sizes(H, W, S, crop_size, rng))
    crop_frames(clip, drifting_corners(clip, crop_size, rng), crop_size)
    if rng.random() < FLIP_PROB:
        flip_frames(clip, horizontal=True)
    if rng.random() < FLIP_PROB:
        flip_frames(clip, horizontal=False)


def plain_crop(clip, crop_size, rng):
    """A crop_size window of the native frames at one random corner (scale 1, aspect kept).
    As in the original, the corner stays below (frame size - crop size)."""
    H, W = clip.rgbs[0].shape[:2]
    ch, cw = crop_size
    y0, x0 = rng.integers(0, max(H - ch, 1)), rng.integers(0, max(W - cw, 1))
    crop_frames(clip, [(x0, y0)] * len(clip.rgbs), crop_size)
