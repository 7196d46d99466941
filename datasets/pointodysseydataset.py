"""PointOdyssey training clips with the original's track filtering and augmentations.

Layout: ``<dataset_location>/<dset>/<sequence>/rgbs/rgb_%05d.jpg``, optional
``masks/mask_%05d.png`` (single-channel 8-bit object ids; 0 marks fog or smoke) and the
annotations (``anno.npz`` or ``annotations.npz``, see ``datasets.common``).

Clips of S frames start every ``clip_step`` frames at each of ``strides``. A sample is
``(sample, gotit)``: ``sample`` holds ``rgbs`` S,3,H,W uint8, ``masks`` and ``edges``
S,1,H,W float32 (object ids; mask boundaries as 0/1), ``trajs`` S,N,2, ``visibs`` and
``valids`` S,N float32; a refused clip comes back as zeros with the same keys and
``gotit`` False.

The original's steps, in order: non-finite points become (0, 0), invisible and invalid;
tracks must be visible and valid at frame 0 and inside the native frame; the masks' id-0
holes are filled by a 7x7 median, and tracks starting on a mask edge (Canny, none within
1 px of a remaining id-0 pixel, dilated) are dropped; the augmentations of
``datasets.augment``; then, on the crop, points within 1 px of the border become
invisible and points more than 64 px outside invalid; tracks must be visible and valid at
frames 0 and 1 and in at least max(sqrt(S), 2) frames, and keep their velocity,
acceleration and jerk (over the larger image side, every frame counted) under 0.4, 0.3,
0.1; N of them are picked by farthest-point sampling. A clip needs N usable tracks, or
with ``req_full`` N/2, filled to N by repeating tracks.

Fixed relative to the original: flips map x to W-1-x (not W-x); masks and edges stay
single-channel through every spatial step; time reversal reverses validity too; a refused
clip has every key, so batches collate; a sequence without masks skips the edge filter
instead of failing; a sequence without usable tracks is left out (with the reason
printed) instead of failing an assert. Random draws come from each sample's own generator,
so DataLoader workers do not repeat each other.
"""

import glob
import os

import cv2
import numpy as np
import torch
from PIL import Image

from datasets import augment
from datasets.common import (
    DatasetError,
    FrameSequence,
    annotation_path,
    read_annotations,
    read_visibility,
    reading_npz,
)

OUT_OF_FRAME = 64  # px beyond which a track is invalid (and to which it is clamped)
MAX_MOTION = (0.4, 0.3, 0.1)  # velocity, acceleration, jerk, over the larger image side
HOLE_MIN_PIXELS = 128  # a mask with more id-0 pixels than this gets them filled
HOLE_FILL_SIZE = 7  # px, the median window that fills them


class ClipRefused(Exception):
    """A clip that leaves too few usable tracks; the message says why."""


def read_mask(path):
    """A mask PNG as H,W uint8 object ids, read as the original read it (PIL: a palette
    image gives its indices)."""
    try:
        with Image.open(path) as image:
            mask = np.array(image)
    except OSError as exc:
        raise DatasetError(f'{path}: cannot read this mask ({exc})') from exc
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise DatasetError(f'{path}: a {mask.dtype} mask of shape {mask.shape}; need single-channel 8-bit ids')
    return mask


def fill_holes(mask):
    """The mask with its id-0 pixels (fog, smoke) replaced by the 7x7 median around them,
    when there are more than HOLE_MIN_PIXELS of them."""
    if np.sum(mask == 0) <= HOLE_MIN_PIXELS:
        return mask
    return np.where(mask == 0, cv2.medianBlur(mask, HOLE_FILL_SIZE), mask)


def mask_edges(mask, dilate_iters=1):
    """H,W uint8 (0 or 255): object boundaries of an id mask (Canny), none within 1 px of
    an id-0 pixel, then dilated ``dilate_iters`` times by a 3x3 square."""
    kernel = np.ones((3, 3), np.uint8)
    near_hole = cv2.dilate((mask == 0).astype(np.uint8), kernel)
    return cv2.dilate(cv2.Canny(mask, 1, 1) * (1 - near_hole), kernel, iterations=dilate_iters)


def outside(trajs, x_range, y_range):
    """S,N bool: points outside [x_range] x [y_range] (bounds themselves inside)."""
    x, y = trajs[..., 0], trajs[..., 1]
    return (x < x_range[0]) | (x > x_range[1]) | (y < y_range[0]) | (y > y_range[1])


def startable_tracks(trajs, visibs, valids, H, W, edges0):
    """N bool: tracks visible, valid and in frame at frame 0, not starting on a frame-0
    mask edge (looked up at the truncated position, as the original). Marks out-of-frame
    points invisible (in place)."""
    visibs &= ~outside(trajs, (0, W - 1), (0, H - 1))
    keep = visibs[0] & valids[0]
    if edges0 is not None:
        x, y = trajs[0, keep].astype(np.int32).T
        keep[keep] = edges0[y, x] == 0
    return keep


def smooth_motion(trajs, size):
    """N bool: tracks whose velocity, acceleration and jerk, over ``size`` px, stay under
    MAX_MOTION on every step of the clip, invalid frames included (their coordinates read
    as 0, as in the original)."""
    keep = np.ones(trajs.shape[1], bool)
    diffs = trajs / size
    for limit in MAX_MOTION:
        diffs = diffs[1:] - diffs[:-1]
        keep &= np.linalg.norm(diffs, axis=-1).max(axis=0, initial=0.0) < limit
    return keep


def farthest_point_sample(features, k, rng):
    """Indices of k rows of ``features`` (M,D): the first at random, each next the farthest
    from those already chosen. With k > M rows repeat: as in the original, the distances
    then get standard normal noise after every pick."""
    chosen = np.empty(k, dtype=np.int64)
    nearest = np.full(len(features), np.inf)
    pick = rng.integers(len(features))
    for i in range(k):
        chosen[i] = pick
        nearest = np.minimum(nearest, ((features - features[pick]) ** 2).sum(axis=1))
        pick = np.argmax(nearest)
        if k > len(features):
            nearest = nearest + rng.standard_normal(len(features))
    return chosen


def count_frames_and_tracks(path):
    """(annotated frames, tracks visible and valid in at least one frame), read cheaply."""
    with reading_npz(path, 'the annotations') as anno:
        visibs, valids = read_visibility(anno, path)
    return len(visibs), int((visibs & valids).any(axis=0).sum())


def check_sequence(seq_dir):
    """(problem or None, (seq_dir, annotation path, frame count)); DatasetError naming the
    file if the annotations cannot be read."""
    T = len(glob.glob(os.path.join(seq_dir, 'rgbs', 'rgb_*.jpg')))
    anno = annotation_path(seq_dir)
    if T == 0:
        return 'no rgbs/rgb_*.jpg frames', None
    if anno is None:
        return 'no anno.npz or annotations.npz', None
    T_anno, usable = count_frames_and_tracks(anno)
    if T_anno != T:
        return f'{T} frames but annotations for {T_anno}', None
    if usable == 0:
        return 'no track is ever visible and valid', None
    return None, (seq_dir, anno, T)


class PointOdysseyClips(torch.utils.data.Dataset):
    """PointOdyssey clips for training (see the module docstring).

    ``crop_size`` (H, W) is the output size; the spatial augmentations first resize to
    ``resize_size`` (at least crop + 16 px). A clip needs N usable tracks at frame 0 and
    after augmentation, or with ``req_full`` N//2 (then filled to N by repeats).
    ``seed`` makes sample i reproducible; without it every draw is fresh.
    """

    def __init__(self, dataset_location='./pointodyssey', dset='train', use_augs=False, S=8, N=32,
                 strides=(1, 2, 4), clip_step=2, quick=False, verbose=False, crop_size=(368, 496),
                 resize_size=(432, 560), req_full=False, seed=None):
        self.S, self.N = S, N
        self.use_augs, self.verbose = use_augs, verbose
        self.crop_size = tuple(int(c) for c in crop_size)
        self.resize_size = tuple(int(r) for r in resize_size)
        self.min_tracks = N // 2 if req_full else N
        self.seed = seed
        self.color_augmenter = augment.color_augmenter()
        sequences = self.find_sequences(dataset_location, dset, quick)
        self.clips = [(seq_dir, anno, start + np.arange(S) * stride)
                      for seq_dir, anno, T in sequences
                      for stride in strides
                      for start in range(0, T - S * stride + 1, clip_step)]
        print('collected %d clips of length %d in %s (dset=%s)' % (len(self.clips), S, dataset_location, dset))

    def find_sequences(self, dataset_location, dset, quick):
        """[(seq_dir, annotation path, frame count)] of the usable sequences (others printed;
        those with an unreadable file also listed in ``self.unreadable``)."""
        root = os.path.join(dataset_location, dset)
        seq_dirs = sorted(d for d in glob.glob(os.path.join(root, '*')) if os.path.isdir(d))
        if not seq_dirs:
            raise DatasetError(f'{root}: no sequence folders here')
        print('found %d unique videos in %s (dset=%s)' % (len(seq_dirs), dataset_location, dset))
        sequences = []
        self.unreadable = []  # the problems of sequences left out because a file cannot be read
        for seq_dir in seq_dirs[:1] if quick else seq_dirs:
            try:
                problem, entry = check_sequence(seq_dir)
            except DatasetError as exc:
                problem, entry = str(exc), None
                self.unreadable.append(problem)
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

    def refuse_below(self, count, where):
        if count < self.min_tracks:
            raise ClipRefused(f'{count} usable tracks {where}, need {self.min_tracks}')

    def load_clip(self, index):
        """The augmented sample for clip ``index``; raises ClipRefused with the reason."""
        seq_dir, anno, frame_idx = self.clips[index]
        rng = augment.sample_rng(self.seed, index, self.color_augmenter)
        trajs, visibs, valids = read_annotations(anno, frame_idx)  # S,M,2; S,M; S,M
        self.refuse_below(int((visibs[0] & valids[0]).sum()), 'at frame 0')
        rgbs = list(FrameSequence([os.path.join(seq_dir, 'rgbs', 'rgb_%05d.jpg' % i) for i in frame_idx]))
        H, W = rgbs[0].shape[:2]
        if H < self.crop_size[0] or W < self.crop_size[1]:
            raise DatasetError(f'{seq_dir}: frames of {H}x{W} are smaller than crop_size {self.crop_size}')
        labels = self.read_labels(seq_dir, frame_idx, H)
        edges0 = None if labels is None else labels[0][..., 1]
        keep = startable_tracks(trajs, visibs, valids, H, W, edges0)
        self.refuse_below(int(keep.sum()), 'in frame and off mask edges at frame 0')
        clip = augment.Clip(rgbs, labels, trajs[:, keep], visibs[:, keep], valids[:, keep])
        return self.finish(self.augment(clip, rng), rng)

    def read_labels(self, seq_dir, frame_idx, H):
        """S of H,W,2 uint8 (hole-filled object ids, their edges), or None without masks.
        Edges are dilated by H / resize_size[0] px (at least 1), as in the original."""
        paths = [os.path.join(seq_dir, 'masks', 'mask_%05d.png' % i) for i in frame_idx]
        if not all(map(os.path.isfile, paths)):
            return None
        masks = [fill_holes(read_mask(path)) for path in paths]
        dilate_iters = max(int(H / self.resize_size[0]), 1)
        return [np.stack([mask, mask_edges(mask, dilate_iters)], axis=-1) for mask in masks]

    def augment(self, clip, rng):
        """Photometric, eraser and time-reversal augmentations (with use_augs), then the
        spatial ones (with use_augs, probability 0.7), else a plain crop of the native
        frames or a plain resize. As in the original, frames stay float32 (resized without
        rounding, truncated at the end) after the photometric pass unless erased."""
        if self.use_augs:
            clip.rgbs = augment.augment_video(self.color_augmenter, clip.rgbs)
            if rng.random() < augment.ERASER_PROB:
                augment.erase_patches(clip.rgbs, clip.trajs, clip.visibs, rng)
            else:
                clip.rgbs = [rgb.astype(np.float32) for rgb in clip.rgbs]
            if rng.random() < augment.REVERSE_PROB:
                clip = augment.reverse_time(clip)
        if self.use_augs and rng.random() < augment.SPATIAL_PROB:
            augment.spatial_augs(clip, self.resize_size, self.crop_size, rng)
        elif rng.random() < augment.PLAIN_CROP_PROB:
            augment.plain_crop(clip, self.crop_size, rng)
        else:
            augment.resize_frames(clip, [self.crop_size] * self.S)
        return clip

    def finish(self, clip, rng):
        """Filter the tracks on the final frames, pick N and pack the sample."""
        H, W = self.crop_size
        trajs, visibs, valids = clip.trajs, clip.visibs, clip.valids
        visibs &= ~outside(trajs, (1, W - 2), (1, H - 2))
        valids &= ~outside(trajs, (-OUT_OF_FRAME, W + OUT_OF_FRAME), (-OUT_OF_FRAME, H + OUT_OF_FRAME))
        good = visibs & valids
        keep = good[0] & good[1] & (good.sum(axis=0) >= max(np.sqrt(self.S), 2)) & smooth_motion(trajs, max(H, W))
        self.refuse_below(int(keep.sum()), 'after augmentation')
        trajs, visibs, valids = trajs[:, keep], visibs[:, keep], valids[:, keep]
        features = np.concatenate([trajs[0], (trajs[1:] - trajs[:-1]).mean(axis=0)], axis=1)  # M,4
        chosen = farthest_point_sample(features, self.N, rng)[rng.permutation(self.N)]
        trajs = np.clip(trajs[:, chosen], -OUT_OF_FRAME, [W + OUT_OF_FRAME, H + OUT_OF_FRAME])
        return self.pack(clip, trajs, visibs[:, chosen], valids[:, chosen])

    def pack(self, clip, trajs, visibs, valids):
        """The sample dict of tensors."""
        rgbs = torch.from_numpy(np.stack(clip.rgbs).astype(np.uint8)).permute(0, 3, 1, 2).contiguous()  # S,3,H,W
        if clip.labels is None:
            masks = edges = torch.zeros((self.S, 1) + self.crop_size)
        else:
            labels = torch.from_numpy(np.stack(clip.labels).astype(np.float32)).permute(0, 3, 1, 2)  # S,2,H,W
            masks, edges = labels[:, :1].contiguous(), (labels[:, 1:] > 0).float()
        return {'rgbs': rgbs, 'masks': masks, 'edges': edges,
                'trajs': torch.from_numpy(trajs.astype(np.float32)),
                'visibs': torch.from_numpy(visibs.astype(np.float32)),
                'valids': torch.from_numpy(valids.astype(np.float32))}


PointOdysseyDataset = PointOdysseyClips  # the original's name
