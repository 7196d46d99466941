"""Augmentations shared by the training loaders: the photometric recipe and occluders."""

import warnings

import albumentations as A
import numpy as np

COLOR_PROB = 0.8
ERASER_CLIP_PROB = 0.2
ERASER_FRAME_PROB = 0.2
ERASER_SIZE = (20, 300)
ERASER_COUNT = (1, 10)


def color_augmenter():
    """The original's photometric recipe (albumentations 2.x names), applied with p=0.8."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # albumentations 2.x warns about RGBShift's internals
        return A.ReplayCompose([
            A.GaussNoise(p=0.2),
            A.OneOf([A.MotionBlur(p=0.2), A.MedianBlur(blur_limit=3, p=0.1), A.Blur(blur_limit=3, p=0.1)], p=0.2),
            A.OneOf([A.CLAHE(clip_limit=2), A.Sharpen(), A.Emboss()], p=0.2),
            A.RGBShift(p=0.5),
            A.RandomBrightnessContrast(p=0.5),
            A.RandomGamma(p=0.5),
            A.HueSaturationValue(p=0.3),
            A.ImageCompression(quality_range=(50, 100), p=0.3),
        ], p=COLOR_PROB)


def augment_colors(augmenter, frames):
    """Apply one random draw of ``augmenter`` identically to every frame (list of H,W,3 uint8)."""
    first = augmenter(image=frames[0])
    out = [first['image']]
    for frame in frames[1:]:
        out.append(A.ReplayCompose.replay(first['replay'], image=frame)['image'])
    return out


def add_occluders(frames, trajs, visibs, rng):
    """With prob 0.2 per clip, then 0.2 per frame (frame 0 kept clean), paint 1-10 boxes of
    20-300 px filled with their mean colour; points inside become invisible (in place)."""
    if rng.random() >= ERASER_CLIP_PROB:
        return frames
    H, W = frames[0].shape[:2]
    for t in range(1, len(frames)):
        if rng.random() >= ERASER_FRAME_PROB:
            continue
        frame = frames[t].copy()
        for _ in range(rng.integers(ERASER_COUNT[0], ERASER_COUNT[1] + 1)):
            cx, cy = rng.integers(0, W), rng.integers(0, H)
            dx, dy = rng.integers(ERASER_SIZE[0], ERASER_SIZE[1], 2)
            x0, x1 = np.clip([cx - dx // 2, cx + dx // 2], 0, W - 1)
            y0, y1 = np.clip([cy - dy // 2, cy + dy // 2], 0, H - 1)
            if x1 <= x0 or y1 <= y0:
                continue
            frame[y0:y1, x0:x1] = frame[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)
            inside = ((trajs[t, :, 0] >= x0) & (trajs[t, :, 0] < x1) &
                      (trajs[t, :, 1] >= y0) & (trajs[t, :, 1] < y1))
            visibs[t, inside] = 0
        frames[t] = frame
    return frames
