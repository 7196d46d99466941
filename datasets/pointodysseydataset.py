"""PointOdyssey clips for training, with the original's track filtering and augmentations.

Layout: ``<dataset_location>/<dset>/<sequence>/rgbs/rgb_%05d.jpg``, ``masks/mask_%05d.png``
(object ids) and ``anno.npz`` (``trajs_2d`` T,N,2, ``visibs``, ``valids`` T,N) or the
older ``visibilities`` (0 occluded, 1 visible, 2 invalid) in ``anno.npz`` or
``annotations.npz``. Clips of S frames start every ``clip_step`` frames at each stride.

``dataset[i]`` returns ``(sample, gotit)``: a dict of ``rgbs`` S,3,H,W uint8, ``masks``
and ``edges`` S,1,H,W float, ``trajs`` S,N,2, ``visibs`` and ``valids`` S,N float, and
whether the clip was usable (a refused clip is all zeros with the same keys and shapes).
"""

import glob
import os

import cv2
import numpy as np
import torch

from datasets.augment import add_occluders, augment_colors, color_augmenter
from datasets.common import read_rgb
from datasets.pointodysseydataset_fullseq import read_annotations

SPATIAL_PROB = 0.7
REVERSE_PROB = 0.5
PAD_MAX = 64
SCALE_RANGE = (0.25, 1.5)
SCALE_STEP = 0.01
SCALE_CLAMP = (0.2, 2.0)
CROP_DRIFT = 20
FLIP_PROB = 0.5
FAR_OUTSIDE = 64  # points farther outside the crop are invalid, and clamped to this
MOTION_LIMITS = (0.4, 0.3, 0.1)  # velocity, acceleration, jerk over the larger image side


class PointOdysseyDataset(torch.utils.data.Dataset):
    def __init__(self, dataset_location='./pointodyssey', dset='train', use_augs=False, S=8, N=32,
                 strides=(1, 2, 4), clip_step=2, quick=False, verbose=False, crop_size=(368, 496),
                 resize_size=(432, 560), req_full=False, seed=None):
        self.S, self.N = S, N
        self.use_augs = use_augs
        self.crop_size = tuple(crop_size)
        self.resize_size = tuple(resize_size)
        self.req_full = req_full
        self.verbose = verbose
        self.seed = seed  # None: fresh randomness per sample (and so per DataLoader worker)
        self.color_augmenter = color_augmenter()
        sequences = sorted(os.path.dirname(p) for p in glob.glob(os.path.join(dataset_location, dset, '*', 'rgbs')))
        if quick:
            sequences = sequences[:1]
        self.clips = []  # (sequence folder, frame indices)
        for seq in sequences:
            T = len(glob.glob(os.path.join(seq, 'rgbs', 'rgb_*.jpg')))
            for stride in strides:
                for start in range(0, T - (S - 1) * stride, clip_step):
                    self.clips.append((seq, start + np.arange(S) * stride))
        print('found %d clips of %d frames in %d sequences of %s' % (
            len(self.clips), S, len(sequences), os.path.join(dataset_location, dset)))

    def __len__(self):
        return len(self.clips)

    def __getitem__(self, index):
        self.rng = np.random.default_rng(None if self.seed is None else (self.seed, index))
        sample = self.make_sample(index)
        if sample is None:
            H, W = self.crop_size
            S, N = self.S, self.N
            return {'rgbs': torch.zeros(S, 3, H, W, dtype=torch.uint8), 'masks': torch.zeros(S, 1, H, W),
                    'edges': torch.zeros(S, 1, H, W), 'trajs': torch.zeros(S, N, 2),
                    'visibs': torch.zeros(S, N), 'valids': torch.zeros(S, N)}, False
        return sample, True

    def refuse(self, index, reason):
        if self.verbose:
            print(f'clip {index} ({self.clips[index][0]}): {reason}')
        return None

    def make_sample(self, index):
        seq, frame_ids = self.clips[index]
        trajs, visibs, valids = read_annotations(seq)
        trajs = trajs[frame_ids].astype(np.float64)
        visibs = visibs[frame_ids].astype(np.float32)
        valids = valids[frame_ids].astype(np.float32)
        rgbs = [read_rgb(os.path.join(seq, 'rgbs', 'rgb_%05d.jpg' % t)) for t in frame_ids]
        H, W = rgbs[0].shape[:2]
        masks = [read_mask(seq, t, H, W) for t in frame_ids]

        keep = (valids[0] > 0) & (visibs[0] > 0)
        outside = (trajs[..., 0] < 0) | (trajs[..., 0] > W - 1) | (trajs[..., 1] < 0) | (trajs[..., 1] > H - 1)
        visibs[outside] = 0
        keep &= visibs[0] > 0
        edges = [mask_edges(mask) for mask in masks]
        x0 = np.clip(np.round(trajs[0, :, 0]).astype(int), 0, W - 1)
        y0 = np.clip(np.round(trajs[0, :, 1]).astype(int), 0, H - 1)
        keep &= edges[0][y0, x0] == 0
        trajs, visibs, valids = trajs[:, keep], visibs[:, keep], valids[:, keep]
        needed = self.N if self.req_full else self.N // 2
        if trajs.shape[1] < needed:
            return self.refuse(index, f'{trajs.shape[1]} usable tracks before augmentation, need {needed}')

        if self.use_augs:
            rgbs = augment_colors(self.color_augmenter, rgbs)
            rgbs = add_occluders(rgbs, trajs, visibs, self.rng)
            if self.rng.random() < REVERSE_PROB:
                rgbs, masks, edges = rgbs[::-1], masks[::-1], edges[::-1]
                trajs, visibs, valids = trajs[::-1].copy(), visibs[::-1].copy(), valids[::-1].copy()
        if self.use_augs and self.rng.random() < SPATIAL_PROB:
            rgbs, masks, edges, trajs = self.spatial_augs(rgbs, masks, edges, trajs, visibs)
        elif self.rng.random() < 0.5:
            rgbs, masks, edges, trajs = self.just_crop(rgbs, masks, edges, trajs)
        else:
            rgbs, masks, edges, trajs = resize_all(rgbs, masks, edges, trajs, self.crop_size)
        return self.finish(index, rgbs, masks, edges, trajs, visibs, valids)

    def finish(self, index, rgbs, masks, edges, trajs, visibs, valids):
        """Post-crop visibility/validity, the track filters, N tracks by FPS, tensors."""
        S, (H, W) = self.S, self.crop_size
        near_border = (trajs[..., 0] < 1) | (trajs[..., 0] > W - 2) | (trajs[..., 1] < 1) | (trajs[..., 1] > H - 2)
        visibs[near_border] = 0
        far = ((trajs[..., 0] < -FAR_OUTSIDE) | (trajs[..., 0] > W + FAR_OUTSIDE) |
               (trajs[..., 1] < -FAR_OUTSIDE) | (trajs[..., 1] > H + FAR_OUTSIDE))
        valids[far] = 0
        good = visibs * valids
        keep = (good[0] > 0) & (good[1] > 0) & (good.sum(axis=0) >= max(np.sqrt(S), 2))
        keep &= smooth_enough(trajs, max(H, W))
        trajs, visibs, valids = trajs[:, keep], visibs[:, keep], valids[:, keep]
        needed = self.N if self.req_full else self.N // 2
        if trajs.shape[1] < needed:
            return self.refuse(index, f'{trajs.shape[1]} usable tracks after augmentation, need {needed}')
        features = np.concatenate([trajs[0], (trajs[1:] - trajs[:-1]).mean(axis=0)], axis=1)  # N,4
        picked = farthest_point_sample(features, min(self.N, trajs.shape[1]), self.rng)
        picked = self.rng.permutation(picked)
        trajs = np.clip(trajs[:, picked], -FAR_OUTSIDE, np.array([W, H]) + FAR_OUTSIDE)
        n = len(picked)
        out_trajs = np.zeros((S, self.N, 2), np.float32)
        out_visibs = np.zeros((S, self.N), np.float32)
        out_valids = np.zeros((S, self.N), np.float32)
        out_trajs[:, :n], out_visibs[:, :n], out_valids[:, :n] = trajs, visibs[:, picked], valids[:, picked]
        return {
            'rgbs': torch.from_numpy(np.stack(rgbs)).permute(0, 3, 1, 2).contiguous(),
            'masks': torch.from_numpy(np.stack(masks)[:, None].astype(np.float32)),
            'edges': torch.from_numpy(np.stack(edges)[:, None].astype(np.float32)),
            'trajs': torch.from_numpy(out_trajs),
            'visibs': torch.from_numpy(out_visibs),
            'valids': torch.from_numpy(out_valids),
        }

    def just_crop(self, rgbs, masks, edges, trajs):
        """Resize to resize_size, then one random crop_size crop for all frames."""
        rgbs, masks, edges, trajs = resize_all(rgbs, masks, edges, trajs, self.resize_size)
        H, W = rgbs[0].shape[:2]
        ch, cw = self.crop_size
        y0 = self.rng.integers(0, max(H - ch, 0) + 1)
        x0 = self.rng.integers(0, max(W - cw, 0) + 1)
        crops = [crop(image, x0, y0, cw, ch) for image in rgbs], [crop(m, x0, y0, cw, ch) for m in masks], \
            [crop(e, x0, y0, cw, ch) for e in edges]
        return (*crops, trajs - [x0, y0])

    def spatial_augs(self, rgbs, masks, edges, trajs, visibs):
        """Resize, pad, smoothly drifting zoom, drifting crop around the tracks, flips."""
        rgbs, masks, edges, trajs = resize_all(rgbs, masks, edges, trajs, self.resize_size)
        pads = self.rng.integers(0, PAD_MAX + 1, 4)  # left, right, top, bottom
        pad_width = ((pads[2], pads[3]), (pads[0], pads[1]))
        rgbs = [np.pad(image, pad_width + ((0, 0),)) for image in rgbs]
        masks = [np.pad(m, pad_width) for m in masks]
        edges = [np.pad(e, pad_width) for e in edges]
        trajs = trajs + [pads[0], pads[2]]
        H, W = rgbs[0].shape[:2]
        ch, cw = self.crop_size

        scale = np.full(2, self.rng.uniform(*SCALE_RANGE))  # x, y
        drift = np.zeros(2)
        for t in range(self.S):
            if t > 0:
                drift = drift * 0.9 + self.rng.uniform(-SCALE_STEP, SCALE_STEP, 2)
                scale = scale + drift
            scale = 0.75 * scale + 0.25 * scale.mean()  # pull x and y together
            scale = np.clip(scale, *SCALE_CLAMP)
            size = np.maximum(np.array([W, H]) * scale, [cw + 16, ch + 16]).astype(int)
            scale_t = size / [W, H]
            rgbs[t] = cv2.resize(rgbs[t], tuple(size), interpolation=cv2.INTER_LINEAR)
            masks[t] = cv2.resize(masks[t], tuple(size), interpolation=cv2.INTER_NEAREST)
            edges[t] = cv2.resize(edges[t], tuple(size), interpolation=cv2.INTER_NEAREST)
            trajs[t] = trajs[t] * scale_t

        visible0 = visibs[0] > 0
        centre = trajs[0, visible0].mean(axis=0) if visible0.any() else np.array([W, H]) * scale_t / 2
        corner = centre - [cw / 2, ch / 2]
        offset = np.zeros(2)
        for t in range(self.S):
            if t > 0:
                offset = 0.8 * offset + 0.2 * self.rng.uniform(-CROP_DRIFT, CROP_DRIFT + 1, 2)
            corner = corner + offset
            h, w = rgbs[t].shape[:2]
            corner = np.clip(corner, 0, [w - cw, h - ch])
            x0, y0 = corner.astype(int)
            rgbs[t], masks[t], edges[t] = crop(rgbs[t], x0, y0, cw, ch), crop(masks[t], x0, y0, cw, ch), \
                crop(edges[t], x0, y0, cw, ch)
            trajs[t] = trajs[t] - [x0, y0]

        if self.rng.random() < FLIP_PROB:  # horizontal: x -> W-1-x
            rgbs, masks, edges = [i[:, ::-1] for i in rgbs], [m[:, ::-1] for m in masks], [e[:, ::-1] for e in edges]
            trajs[..., 0] = cw - 1 - trajs[..., 0]
        if self.rng.random() < FLIP_PROB:  # vertical: y -> H-1-y
            rgbs, masks, edges = [i[::-1] for i in rgbs], [m[::-1] for m in masks], [e[::-1] for e in edges]
            trajs[..., 1] = ch - 1 - trajs[..., 1]
        return [np.ascontiguousarray(i) for i in rgbs], [np.ascontiguousarray(m) for m in masks], \
            [np.ascontiguousarray(e) for e in edges], trajs


def read_mask(seq, t, H, W):
    """The object-id mask of frame t (zeros when the sequence has no masks)."""
    path = os.path.join(seq, 'masks', 'mask_%05d.png' % t)
    mask = cv2.imread(path, cv2.IMREAD_UNCHANGED) if os.path.exists(path) else None
    if mask is None:
        return np.zeros((H, W), np.uint8)
    return mask if mask.ndim == 2 else mask[..., 0]


def mask_edges(mask):
    """Object boundaries of a mask: Canny edges dilated by a 3x3 kernel (uint8 0/1)."""
    edges = cv2.Canny(mask.astype(np.uint8), 0, 1) > 0
    return cv2.dilate(edges.astype(np.uint8), np.ones((3, 3), np.uint8))


def resize_all(rgbs, masks, edges, trajs, size):
    """Resize frames (bilinear), masks and edges (nearest) to size (H, W); scale the tracks."""
    H, W = rgbs[0].shape[:2]
    h, w = size
    rgbs = [cv2.resize(i, (w, h), interpolation=cv2.INTER_LINEAR) for i in rgbs]
    masks = [cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) for m in masks]
    edges = [cv2.resize(e, (w, h), interpolation=cv2.INTER_NEAREST) for e in edges]
    return rgbs, masks, edges, trajs * [w / W, h / H]


def crop(image, x0, y0, w, h):
    return image[y0:y0 + h, x0:x0 + w]


def smooth_enough(trajs, side):
    """Tracks whose velocity, acceleration and jerk (over ``side``) stay within the limits."""
    ok = np.ones(trajs.shape[1], bool)
    diff = trajs / side
    for limit in MOTION_LIMITS:
        diff = diff[1:] - diff[:-1]
        if len(diff):
            ok &= np.linalg.norm(diff, axis=-1).max(axis=0) <= limit
    return ok


def farthest_point_sample(features, n, rng):
    """Indices of n rows of features (M,D) picked by farthest-point sampling."""
    picked = np.zeros(n, dtype=np.int64)
    distance = np.full(len(features), np.inf)
    current = rng.integers(len(features))
    for i in range(n):
        picked[i] = current
        distance = np.minimum(distance, ((features - features[current]) ** 2).sum(axis=1))
        current = int(np.argmax(distance))
    return picked
