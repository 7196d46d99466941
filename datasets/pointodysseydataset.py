"""PointOdyssey training clips with the original's track filtering and augmentations.

Layout: ``<dataset_location>/<dset>/<sequence>/rgbs/rgb_%05d.jpg``, optional
``masks/mask_%05d.png`` (single-channel object ids) and ``anno.npz`` with ``trajs_2d``
T,M,2, ``visibs`` T,M and ``valids`` T,M (v1.2), or the older ``annotations.npz`` /
``anno.npz`` with ``visibilities`` T,M (0 occluded, 1 visible, 2 invalid).

Clips of S frames start every ``clip_step`` frames at each of ``strides``. A sample is
``(sample, gotit)``: ``sample`` holds ``rgbs`` S,3,H,W uint8, ``masks`` and ``edges``
S,1,H,W float32 (object ids; mask boundaries), ``trajs`` S,N,2, ``visibs`` and ``valids``
S,N float32; a refused clip comes back as zeros with the same keys and ``gotit`` False.

Fixed relative to the original: flips map x to W-1-x (not W-x); masks and edges stay
single-channel through every spatial step; time reversal reverses validity too; a refused
clip has every key, so batches collate; resizes map pixel centres exactly; a sequence
without masks skips the edge filter instead of failing; a sequence without usable tracks
is left out (with the reason printed) instead of failing an assert. The photometric recipe
keeps albumentations 1.x's noise strength (2.x's default is about 15 times stronger) and
draws from each sample's own generator, so DataLoader workers do not repeat each other.
"""

import glob
import os
import random
import warnings
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch

from datasets.common import DatasetError, read_rgb

SPATIAL_PROB = 0.7  # else a plain crop or a plain resize, 50/50
REVERSE_PROB = 0.5
ERASER_PROB = 0.2  # per clip, then per frame
ERASER_COUNT = (1, 10)  # rectangles per erased frame
ERASER_SIZE = (20, 300)  # px, each side
PAD_MAX = 64  # px of zero padding per side, at most
SCALE_RANGE = (0.25, 1.5)  # base scale
SCALE_LIMITS = (0.2, 2.0)  # per-frame scale after drift
SCALE_DRIFT = 0.1  # per-frame scale change is uniform(-0.1, 0.1) * 0.1, smoothed
CROP_SLACK = 16  # a scaled frame is at least this much larger than the crop
CROP_DRIFT = 20  # px per frame
FLIP_PROB = 0.5
OUT_OF_FRAME = 64  # px beyond which a track is invalid (and to which it is clamped)
MAX_MOTION = (0.4, 0.3, 0.1)  # velocity, acceleration, jerk, over the larger image side


class ClipRefused(Exception):
    """A clip that leaves too few usable tracks; the message says why."""


@dataclass
class Clip:
    """A clip being augmented. Frame sizes may differ between frames mid-way."""

    rgbs: list  # S of H,W,3 uint8
    masks: list | None  # S of H,W uint16 object ids, or None without masks
    trajs: np.ndarray  # S,N,2
    visibs: np.ndarray  # S,N bool
    valids: np.ndarray  # S,N bool


def color_augmenter():
    """The original's photometric recipe (albumentations 2.x names, the 1.x ranges)."""
    noise_std = (np.sqrt(10) / 255, np.sqrt(50) / 255)  # 1.x var_limit (10, 50) on 0..255
    return A.ReplayCompose([
        A.GaussNoise(std_range=noise_std, p=0.2),
        A.OneOf([A.MotionBlur(p=0.2), A.MedianBlur(blur_limit=3, p=0.1), A.Blur(blur_limit=3, p=0.1)], p=0.2),
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
        rest = [A.ReplayCompose.replay(first['replay'], image=frame)['image'] for frame in frames[1:]]
    return [first['image']] + rest


def sample_rng(seed, index, augmenter):
    """The random generator for one sample, shared with ``augmenter``: fresh entropy when
    ``seed`` is None (so DataLoader workers differ), else fixed by (seed, index)."""
    rng = np.random.default_rng(None if seed is None else (seed, index))
    augmenter.set_random_state(rng, random.Random(int(rng.integers(2 ** 63))))
    return rng


def annotation_path(seq_dir):
    """The sequence's annotation file (anno.npz preferred), or None."""
    for name in ('anno.npz', 'annotations.npz'):
        path = os.path.join(seq_dir, name)
        if os.path.isfile(path):
            return path
    return None


def read_visibility(anno, path):
    """(visibs, valids) T,M bool from either annotation form."""
    if 'visibs' in anno and 'valids' in anno:
        return anno['visibs'].astype(bool), anno['valids'].astype(bool)
    if 'visibilities' in anno:
        code = anno['visibilities']
        return code == 1, code < 2
    raise DatasetError(f'{path}: has neither visibs/valids nor visibilities')


def read_annotations(path, frame_idx=slice(None)):
    """(trajs S,M,2, visibs S,M, valids S,M) at ``frame_idx``; non-finite points are invalid."""
    try:
        with np.load(path, allow_pickle=False) as anno:
            trajs = anno['trajs_2d'][frame_idx].astype(np.float64)
            visibs, valids = (a[frame_idx] for a in read_visibility(anno, path))
    except (OSError, ValueError, KeyError) as exc:
        raise DatasetError(f'{path}: cannot read the annotations ({exc})') from exc
    valids = valids & np.isfinite(trajs).all(axis=-1)
    return np.nan_to_num(trajs, nan=0.0, posinf=0.0, neginf=0.0), visibs & valids, valids


def count_frames_and_tracks(path):
    """(annotated frames, tracks visible and valid in at least one frame), read cheaply."""
    with np.load(path, allow_pickle=False) as anno:
        visibs, valids = read_visibility(anno, path)
    return len(visibs), int((visibs & valids).any(axis=0).sum())


def read_mask(path):
    """A mask PNG as H,W uint16 object ids (a colour-coded mask is folded to one channel)."""
    mask = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise DatasetError(f'{path}: cannot read this mask')
    if mask.ndim == 3:  # BGR: ids up to 65535 in the blue and green channels
        return mask[..., 0].astype(np.uint16) + 256 * mask[..., 1].astype(np.uint16)
    return mask.astype(np.uint16)


def mask_edges(mask):
    """H,W bool: object boundaries of an H,W id mask (Canny, dilated by one pixel)."""
    edges = cv2.Canny((mask % 256).astype(np.uint8), 1, 1)
    return cv2.dilate(edges, np.ones((3, 3), np.uint8)) > 0


def outside(trajs, H, W, margin):
    """S,N bool: points more than ``margin`` px outside [0, W-1] x [0, H-1] (negative: inside)."""
    x, y = trajs[..., 0], trajs[..., 1]
    return (x < -margin) | (x > W - 1 + margin) | (y < -margin) | (y > H - 1 + margin)


def startable_tracks(trajs, visibs, valids, H, W, edges0):
    """N bool: tracks visible, valid and in frame at frame 0, off the frame-0 mask edges.
    Marks out-of-frame points invisible (in place)."""
    visibs &= ~outside(trajs, H, W, 0)
    keep = visibs[0] & valids[0]
    if edges0 is not None:
        xy0 = np.round(trajs[0]).astype(int)
        keep[keep] &= ~edges0[xy0[keep, 1], xy0[keep, 0]]
    return keep


def erase_patches(rgbs, trajs, visibs, rng):
    """The "eraser" occluders: on each later frame with probability ERASER_PROB, 1-10
    rectangles filled with their mean colour; points inside become invisible (in place)."""
    H, W = rgbs[0].shape[:2]
    for s in range(1, len(rgbs)):
        if rng.random() >= ERASER_PROB:
            continue
        for _ in range(rng.integers(ERASER_COUNT[0], ERASER_COUNT[1] + 1)):
            xc, yc = rng.uniform(0, W), rng.uniform(0, H)
            dx, dy = rng.integers(ERASER_SIZE[0], ERASER_SIZE[1], 2)
            x0, x1 = np.clip(np.round([xc - dx / 2, xc + dx / 2]), 0, W - 1).astype(int)
            y0, y1 = np.clip(np.round([yc - dy / 2, yc + dy / 2]), 0, H - 1).astype(int)
            if x1 <= x0 or y1 <= y0:
                continue
            patch = rgbs[s][y0:y1, x0:x1]
            patch[:] = patch.reshape(-1, 3).mean(axis=0).astype(np.uint8)
            x, y = trajs[s, :, 0], trajs[s, :, 1]
            visibs[s, (x >= x0) & (x < x1) & (y >= y0) & (y < y1)] = False


def reverse_time(clip):
    """The clip backwards in time (frames, masks, tracks, visibility and validity)."""
    return Clip(clip.rgbs[::-1], None if clip.masks is None else clip.masks[::-1],
                clip.trajs[::-1].copy(), clip.visibs[::-1].copy(), clip.valids[::-1].copy())


def resize_frames(clip, sizes):
    """Resize frame s to sizes[s] = (H, W) (bilinear; masks nearest), moving the tracks with
    the pixel centres."""
    for s, (H_new, W_new) in enumerate(sizes):
        H, W = clip.rgbs[s].shape[:2]
        clip.rgbs[s] = cv2.resize(clip.rgbs[s], (W_new, H_new), interpolation=cv2.INTER_LINEAR)
        if clip.masks is not None:
            clip.masks[s] = cv2.resize(clip.masks[s], (W_new, H_new), interpolation=cv2.INTER_NEAREST)
        clip.trajs[s] = (clip.trajs[s] + 0.5) * [W_new / W, H_new / H] - 0.5


def crop_frames(clip, corners, crop_size):
    """Cut crop_size (H, W) out of frame s at corners[s] = (x0, y0)."""
    ch, cw = crop_size
    for s, (x0, y0) in enumerate(corners):
        clip.rgbs[s] = clip.rgbs[s][y0:y0 + ch, x0:x0 + cw]
        if clip.masks is not None:
            clip.masks[s] = clip.masks[s][y0:y0 + ch, x0:x0 + cw]
        clip.trajs[s] -= [x0, y0]


def pad_frames(clip, top, bottom, left, right):
    """Zero-pad every frame (and mask) on each side."""
    clip.rgbs = [np.pad(rgb, ((top, bottom), (left, right), (0, 0))) for rgb in clip.rgbs]
    if clip.masks is not None:
        clip.masks = [np.pad(mask, ((top, bottom), (left, right))) for mask in clip.masks]
    clip.trajs += [left, top]


def flip_frames(clip, horizontal):
    """Mirror every frame left-right (or top-bottom); pixel x maps to W-1-x."""
    axis = 1 if horizontal else 0
    clip.rgbs = [np.flip(rgb, axis) for rgb in clip.rgbs]
    if clip.masks is not None:
        clip.masks = [np.flip(mask, axis) for mask in clip.masks]
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
    """Per-frame crop corners (x0, y0): centred on the frame-0 visible tracks, then drifting."""
    ch, cw = crop_size
    visible0 = clip.visibs[0]
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
        x0 = min(max(0, x0 + offset_x), W - cw)
        y0 = min(max(0, y0 + offset_y), H - ch)
        corners.append((x0, y0))
    return corners


class PointOdysseyDataset(torch.utils.data.Dataset):
    """PointOdyssey clips for training (see the module docstring).

    ``resize_size`` (H, W) is the frame size the crops are taken from (never smaller than
    ``crop_size``). A clip needs N//2 tracks usable at frame 0 and after augmentation
    (zero-padded to N), or all N with ``req_full``. ``seed`` makes sample i reproducible;
    without it every draw is fresh (so DataLoader workers differ).
    """

    def __init__(self, dataset_location='./pointodyssey', dset='train', use_augs=False, S=8, N=32,
                 strides=(1, 2, 4), clip_step=2, quick=False, verbose=False, crop_size=(368, 496),
                 resize_size=(432, 560), req_full=False, seed=None):
        self.S, self.N = S, N
        self.use_augs, self.verbose = use_augs, verbose
        self.crop_size = tuple(int(c) for c in crop_size)
        self.resize_size = tuple(max(int(r), c) for r, c in zip(resize_size, self.crop_size))
        self.min_tracks = N if req_full else N // 2
        self.seed = seed
        self.color_augmenter = color_augmenter()
        sequences = self.find_sequences(dataset_location, dset, quick)
        self.clips = [(seq_dir, anno, start + np.arange(S) * stride)
                      for seq_dir, anno, T in sequences
                      for stride in strides
                      for start in range(0, T - S * stride + 1, clip_step)]
        print('collected %d clips of length %d in %s (dset=%s)' % (len(self.clips), S, dataset_location, dset))

    def find_sequences(self, dataset_location, dset, quick):
        """[(seq_dir, annotation path, frame count)] of the usable sequences (others printed)."""
        root = os.path.join(dataset_location, dset)
        seq_dirs = sorted(d for d in glob.glob(os.path.join(root, '*')) if os.path.isdir(d))
        if not seq_dirs:
            raise DatasetError(f'{root}: no sequence folders here')
        print('found %d unique videos in %s (dset=%s)' % (len(seq_dirs), dataset_location, dset))
        sequences = []
        for seq_dir in seq_dirs[:1] if quick else seq_dirs:
            problem, entry = check_sequence(seq_dir)
            if problem:
                print(f'skipping {seq_dir}: {problem}')
            else:
                sequences.append(entry)
                if self.verbose:
                    print('seq', seq_dir)
        return sequences

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, index):
        try:
            return self.load_clip(index), True
        except ClipRefused as refusal:
            if self.verbose:
                print(f'clip {index} refused: {refusal}')
            return self.empty_sample(), False

    def empty_sample(self):
        """An all-zero sample with every key (for a refused clip)."""
        S, N, (H, W) = self.S, self.N, self.crop_size
        return {'rgbs': torch.zeros((S, 3, H, W), dtype=torch.uint8),
                'masks': torch.zeros((S, 1, H, W)), 'edges': torch.zeros((S, 1, H, W)),
                'trajs': torch.zeros((S, N, 2)), 'visibs': torch.zeros((S, N)), 'valids': torch.zeros((S, N))}

    def load_clip(self, index):
        """The augmented sample for clip ``index``; raises ClipRefused with the reason."""
        seq_dir, anno, frame_idx = self.clips[index]
        rng = sample_rng(self.seed, index, self.color_augmenter)
        trajs, visibs, valids = read_annotations(anno, frame_idx)  # S,M,2; S,M; S,M
        rgbs = [read_rgb(os.path.join(seq_dir, 'rgbs', 'rgb_%05d.jpg' % i)) for i in frame_idx]
        mask_paths = [os.path.join(seq_dir, 'masks', 'mask_%05d.png' % i) for i in frame_idx]
        masks = [read_mask(p) for p in mask_paths] if all(map(os.path.isfile, mask_paths)) else None
        H, W = rgbs[0].shape[:2]
        keep = startable_tracks(trajs, visibs, valids, H, W, mask_edges(masks[0]) if masks else None)
        if keep.sum() < self.min_tracks:
            raise ClipRefused(f'{keep.sum()} usable tracks at frame 0, need {self.min_tracks}')
        clip = Clip(rgbs, masks, trajs[:, keep], visibs[:, keep], valids[:, keep])
        return self.finish(self.augment(clip, rng), rng)

    def augment(self, clip, rng):
        """Photometric, eraser and time-reversal augmentations (with use_augs), then the
        spatial ones (with use_augs, probability 0.7), else a plain crop or resize."""
        if self.use_augs:
            clip.rgbs = augment_video(self.color_augmenter, clip.rgbs)
            if rng.random() < ERASER_PROB:
                erase_patches(clip.rgbs, clip.trajs, clip.visibs, rng)
            if rng.random() < REVERSE_PROB:
                clip = reverse_time(clip)
        if self.use_augs and rng.random() < SPATIAL_PROB:
            self.spatial_augs(clip, rng)
        elif rng.random() < 0.5:
            resize_frames(clip, [self.resize_size] * self.S)
            H, W = self.resize_size
            x0, y0 = rng.integers(0, W - self.crop_size[1] + 1), rng.integers(0, H - self.crop_size[0] + 1)
            crop_frames(clip, [(x0, y0)] * self.S, self.crop_size)
        else:
            resize_frames(clip, [self.crop_size] * self.S)
        return clip

    def spatial_augs(self, clip, rng):
        """Resize, random padding, smoothly drifting scale and crop, random flips (in place)."""
        resize_frames(clip, [self.resize_size] * self.S)
        pad_frames(clip, *rng.integers(0, PAD_MAX, 4))
        H, W = clip.rgbs[0].shape[:2]
        resize_frames(clip, drifting_sizes(H, W, self.S, self.crop_size, rng))
        crop_frames(clip, drifting_corners(clip, self.crop_size, rng), self.crop_size)
        if rng.random() < FLIP_PROB:
            flip_frames(clip, horizontal=True)
        if rng.random() < FLIP_PROB:
            flip_frames(clip, horizontal=False)

    def finish(self, clip, rng):
        """Filter the tracks on the final frames, pick N and pack the sample."""
        H, W = self.crop_size
        trajs, visibs, valids = clip.trajs, clip.visibs, clip.valids
        visibs &= ~outside(trajs, H, W, -1)  # within 1 px of the border
        valids &= ~outside(trajs, H, W, OUT_OF_FRAME)
        visibs &= valids
        keep = visibs[0] & visibs[1] & (visibs.sum(axis=0) >= max(np.sqrt(self.S), 2))
        keep &= smooth_motion(trajs, valids, max(H, W))
        if keep.sum() < self.min_tracks:
            raise ClipRefused(f'{keep.sum()} usable tracks after augmentation, need {self.min_tracks}')
        trajs, visibs, valids = trajs[:, keep], visibs[:, keep], valids[:, keep]
        if trajs.shape[1] > self.N:
            features = np.concatenate([trajs[0], (trajs[1:] - trajs[:-1]).mean(axis=0)], axis=1)  # M,4
            chosen = farthest_point_sample(features, self.N, rng)
            trajs, visibs, valids = trajs[:, chosen], visibs[:, chosen], valids[:, chosen]
        trajs = np.clip(trajs, -OUT_OF_FRAME, [W + OUT_OF_FRAME, H + OUT_OF_FRAME])
        order = rng.permutation(trajs.shape[1])
        return self.pack(clip, trajs[:, order], visibs[:, order], valids[:, order])

    def pack(self, clip, trajs, visibs, valids):
        """The sample dict, tracks zero-padded to N."""
        S, M = visibs.shape
        trajs_full = np.zeros((S, self.N, 2), np.float32)
        visibs_full = np.zeros((S, self.N), np.float32)
        valids_full = np.zeros((S, self.N), np.float32)
        trajs_full[:, :M], visibs_full[:, :M], valids_full[:, :M] = trajs, visibs, valids
        rgbs = torch.from_numpy(np.stack(clip.rgbs)).permute(0, 3, 1, 2).contiguous()  # S,3,H,W
        if clip.masks is None:
            masks = edges = torch.zeros((S, 1) + self.crop_size)
        else:
            masks = torch.from_numpy(np.stack(clip.masks).astype(np.float32))[:, None]  # S,1,H,W
            edges = torch.from_numpy(np.stack([mask_edges(m) for m in clip.masks]).astype(np.float32))[:, None]
        return {'rgbs': rgbs, 'masks': masks, 'edges': edges, 'trajs': torch.from_numpy(trajs_full),
                'visibs': torch.from_numpy(visibs_full), 'valids': torch.from_numpy(valids_full)}


def check_sequence(seq_dir):
    """(problem or None, (seq_dir, annotation path, frame count))."""
    T = len(glob.glob(os.path.join(seq_dir, 'rgbs', 'rgb_*.jpg')))
    anno = annotation_path(seq_dir)
    if T == 0:
        return 'no rgbs/rgb_*.jpg frames', None
    if anno is None:
        return 'no anno.npz or annotations.npz', None
    try:
        T_anno, usable = count_frames_and_tracks(anno)
    except (OSError, ValueError, KeyError, DatasetError) as exc:
        return f'cannot read {anno} ({exc})', None
    if T_anno != T:
        return f'{T} frames but annotations for {T_anno}', None
    if usable == 0:
        return 'no track is ever visible and valid', None
    return None, (seq_dir, anno, T)


def smooth_motion(trajs, valids, size):
    """N bool: tracks whose velocity, acceleration and jerk (over ``size`` px) stay within
    MAX_MOTION wherever all the frames involved are valid."""
    keep = np.ones(trajs.shape[1], bool)
    diffs, ok = trajs, valids
    for limit in MAX_MOTION:
        diffs, ok = diffs[1:] - diffs[:-1], ok[1:] & ok[:-1]
        speed = np.linalg.norm(diffs, axis=-1) / size  # S-k,N
        keep &= ~((speed > limit) & ok).any(axis=0)
    return keep


def farthest_point_sample(features, k, rng):
    """Indices of k rows of ``features`` (M,D), each the farthest from those already chosen
    (the first at random)."""
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = rng.integers(len(features))
    nearest = np.full(len(features), np.inf)
    for i in range(1, k):
        nearest = np.minimum(nearest, ((features - features[chosen[i - 1]]) ** 2).sum(axis=1))
        chosen[i] = np.argmax(nearest)
    return chosen
