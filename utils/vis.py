"""Drawing point tracks on frames, and tensorboard summaries in the original's style.

Two kinds of pictures:

* ``draw_tracks`` / ``draw_tracks_stream``: tracks on full-resolution video frames (the
  demo's overlay video). Each point is a dot with a fading trail of its recent positions,
  coloured by where it starts, so neighbouring points get related colours; an occluded
  point is a hollow ring.
* ``Summ_writer``: the original's tensorboard helpers, with the original's names and
  arguments, as train.py, the test_on_*.py scripts and demo.py call them: scalars, gifs
  of trajectories and points drawn on frames, and a PCA view of feature maps. They take
  torch tensors (images in [-0.5, 0.5], as ``preprocess_color`` makes them) and draw with
  numpy and OpenCV.

All drawing is on H,W,3 uint8 RGB arrays; trajectories are pixel (x, y).
"""

import cv2
import numpy as np
import torch
from matplotlib import colormaps

POINT_CMAP = 'gist_rainbow'  # hue of a point along x (draw_tracks)
RECENT_STEPS = 8  # trail length (in frames) of summ_traj2ds_on_rgbs, as in the original
COORD_LIMIT = 1e6  # pixel coordinates are clipped to +-this before drawing


# ---------------------------------------------------------------- colours and coordinates

def preprocess_color(x):
    """0..255 images (tensor or numpy array) -> float32 in [-0.5, 0.5]."""
    if isinstance(x, np.ndarray):
        return x.astype(np.float32) / 255.0 - 0.5
    return x.float() / 255.0 - 0.5


def back2color(x):
    """Images in [-0.5, 0.5] (tensor) -> uint8 0..255 (rounded, clamped)."""
    return ((x + 0.5) * 255.0).round().clamp(0, 255).to(torch.uint8)


def colormap_rgb(cmap, values):
    """RGB colours (...,3 uint8) of ``values`` in [0, 1] along a matplotlib colormap."""
    values = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), 0.0, 1.0)
    return np.round(np.asarray(colormaps[cmap](values))[..., :3] * 255).astype(np.uint8)


def point_colors(xy, H, W, cmap=POINT_CMAP):
    """A colour per point from its position xy (N,2 pixels) in an H x W frame: the hue runs
    along ``cmap`` with x and points lower in the frame are paler, so neighbours get
    related colours and distant points different ones. Returns N,3 uint8 RGB."""
    xy = np.nan_to_num(np.asarray(xy, dtype=np.float64))
    x = np.clip(xy[:, 0] / max(W - 1, 1), 0.0, 1.0)
    y = np.clip(xy[:, 1] / max(H - 1, 1), 0.0, 1.0)
    base = colormap_rgb(cmap, x).astype(np.float64)
    paleness = 0.45 * y[:, None]
    return np.round(base + (255.0 - base) * paleness).astype(np.uint8)


def _color(rgb):
    """A uint8 RGB triple -> the tuple of ints OpenCV takes."""
    return tuple(int(c) for c in rgb)


def _pixels(xy):
    """Float pixel coordinates (...,2) -> int32 for OpenCV (non-finite values become 0;
    callers mask them out)."""
    xy = np.clip(np.nan_to_num(np.asarray(xy, dtype=np.float64)), -COORD_LIMIT, COORD_LIMIT)
    return np.round(xy).astype(np.int32)


def _segments(starts, ends, ok):
    """K,2,2 int32 line segments from start to end points (N,2 int32) where ``ok`` (N)."""
    return np.stack([starts[ok], ends[ok]], axis=1)


def _mask(values, T, N):
    """A T,N bool mask from optional values (> 0 is true); all true when None."""
    if values is None:
        return np.ones((T, N), dtype=bool)
    return np.asarray(values).reshape(T, N) > 0


# ---------------------------------------------------------------- tracks on video frames

def first_valid_positions(trajs, valids):
    """Each point's position at its first valid frame (N,2; NaN if never valid)."""
    first = valids.argmax(axis=0)  # N
    xy = trajs[first, np.arange(trajs.shape[1])].astype(np.float64)
    xy[~valids.any(axis=0)] = np.nan
    return xy


def _blend_trails(image, trail, valid, colors, tail, linewidth):
    """Blend each point's trail (trail: L,N,2 positions ending at the current frame) onto
    ``image`` in place, the newest segment most opaque and older ones fading out."""
    pts = _pixels(trail)  # L,N,2
    segment_ok = valid[1:] & valid[:-1]  # L-1,N
    overlay = image.copy()
    for n in np.flatnonzero(segment_ok.any(axis=0)):
        segments = _segments(pts[:-1, n], pts[1:, n], segment_ok[:, n])
        # the colour layer is drawn wider than the trail: the alpha mask below shapes it
        cv2.polylines(overlay, segments, False, _color(colors[n]), linewidth + 2)
    alpha = np.zeros(image.shape[:2], dtype=np.uint8)
    L = len(trail)
    for k in range(L - 1):  # oldest first, so newer segments lie on top
        age = L - 2 - k
        if segment_ok[k].any():
            strength = round(255 * (1.0 - age / tail))
            cv2.polylines(alpha, _segments(pts[k], pts[k + 1], segment_ok[k]), False, strength, linewidth,
                          cv2.LINE_AA)
    drawn = alpha > 0  # blend only there: trails cover a small part of the frame
    weight = alpha[drawn][:, None].astype(np.float32) / 255.0  # K,1
    image[drawn] = np.round(image[drawn] * (1.0 - weight) + overlay[drawn] * weight).astype(np.uint8)


def _draw_dots(image, xy, valid, visible, colors, linewidth):
    """A dot per valid point at xy (N,2): filled with a dark rim when visible, a hollow
    ring when occluded."""
    radius = linewidth + 1
    pts = _pixels(xy)
    for n in np.flatnonzero(valid):
        center = (int(pts[n, 0]), int(pts[n, 1]))
        if visible[n]:
            cv2.circle(image, center, radius + 1, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(image, center, radius, _color(colors[n]), -1, cv2.LINE_AA)
        else:
            cv2.circle(image, center, radius + 1, _color(colors[n]), max(1, linewidth // 2), cv2.LINE_AA)


def draw_tracks_frame(frame, trail, trail_valid, visible, colors, tail=16, linewidth=1):
    """One frame (H,W,3 uint8 RGB) with the tracks drawn on a copy of it.

    trail: L,N,2 positions over the last L frames, ending at this one; trail_valid: L,N
    bool; visible: N bool at this frame; colors: N,3 uint8 RGB (``point_colors``).
    """
    image = np.array(frame, dtype=np.uint8, copy=True)
    if len(trail) > 1:
        _blend_trails(image, trail, trail_valid, colors, tail, linewidth)
    _draw_dots(image, trail[-1], trail_valid[-1], visible, colors, linewidth)
    return image


def draw_tracks_stream(frames, trajs, visibs=None, valids=None, tail=16, cmap=POINT_CMAP, linewidth=None):
    """Yield the frames with the tracks drawn on them, one at a time, for long videos.

    frames: any iterable of H,W,3 uint8 RGB frames, read lazily (at most T are read);
    trajs: T,N,2 pixels (x, y) in those frames; visibs, valids: T,N (> 0 is true; default
    all), invisible points drawn as hollow rings, invalid or non-finite positions not at
    all. Each point is a dot with a trail over its last ``tail`` frames, coloured by its
    first valid position through ``cmap``. ``linewidth`` defaults to 1 px per 640 px of
    frame size.
    """
    trajs = np.asarray(trajs, dtype=np.float32)
    T, N = trajs.shape[:2]
    valids = _mask(valids, T, N) & np.isfinite(trajs).all(axis=-1)
    visibs = _mask(visibs, T, N)
    colors = None
    for t, frame in zip(range(T), frames):
        if colors is None:
            H, W = frame.shape[:2]
            colors = point_colors(first_valid_positions(trajs, valids), H, W, cmap)
            linewidth = linewidth or max(1, round(max(H, W) / 640))
        start = max(0, t - tail)
        yield draw_tracks_frame(frame, trajs[start:t + 1], valids[start:t + 1], visibs[t], colors, tail, linewidth)


def draw_tracks(frames, trajs, visibs=None, valids=None, tail=16, cmap=POINT_CMAP, linewidth=None):
    """``draw_tracks_stream`` on a whole clip: frames T,H,W,3 uint8 RGB -> T,H,W,3 uint8."""
    return np.stack(list(draw_tracks_stream(frames, trajs, visibs, valids, tail, cmap, linewidth)))


# ---------------------------------------------------------------- drawings of the summaries

def draw_trajs_time_colored(image, trajs, valids, cmap='coolwarm', linewidth=1, show_dots=False):
    """Whole trajectories (S,N,2) on an H,W,3 uint8 image (in place), for points valid at
    frame 0; a segment's colour runs along ``cmap`` with its time. Invalid frames are
    skipped and the trail bridges them. ``show_dots`` also marks each valid position."""
    S, N = trajs.shape[:2]
    valids = (valids > 0) & np.isfinite(trajs).all(axis=-1)
    valids &= valids[0:1]
    pts = _pixels(trajs)
    latest_valid = np.maximum.accumulate(np.where(valids, np.arange(S)[:, None], -1), axis=0)  # S,N
    colors = colormap_rgb(cmap, np.arange(S) / max(1, S - 2))
    points = np.arange(N)
    for s in range(1, S):
        previous = latest_valid[s - 1]
        ok = valids[s] & (previous >= 0)
        if ok.any():
            starts = pts[np.maximum(previous, 0), points]
            cv2.polylines(image, _segments(starts, pts[s], ok), False, _color(colors[s - 1]), linewidth,
                          cv2.LINE_AA)
    if show_dots:
        dot_color = _color(colormap_rgb(cmap, 1.0))
        for s, n in zip(*np.nonzero(valids)):
            cv2.circle(image, (int(pts[s, n, 0]), int(pts[s, n, 1])), linewidth, dot_color, -1)
    return image


def draw_recent_trails(image, trail, valid, cmap='coolwarm', linewidth=1, show_dots=False):
    """Trails over the last frames (trail: L,N,2 ending at this frame) on an H,W,3 uint8
    image (in place), coloured along ``cmap`` from oldest to newest, with a dot at each
    point's current position. ``show_dots`` also marks every trail position."""
    L = len(trail)
    colors = colormap_rgb(cmap, np.linspace(0.0, 1.0, L))
    pts = _pixels(trail)
    for k in range(1, L):
        ok = valid[k] & valid[k - 1]
        if ok.any():
            cv2.polylines(image, _segments(pts[k - 1], pts[k], ok), False, _color(colors[k - 1]), linewidth,
                          cv2.LINE_AA)
    if show_dots:
        for k, n in zip(*np.nonzero(valid)):
            cv2.circle(image, (int(pts[k, n, 0]), int(pts[k, n, 1])), linewidth, _color(colors[k]), -1)
    for n in np.flatnonzero(valid[-1]):
        cv2.circle(image, (int(pts[-1, n, 0]), int(pts[-1, n, 1])), linewidth + 1, _color(colors[-1]), -1)
    return image


def draw_points(image, xy, valid, color, radius=1):
    """Filled dots of one colour at the valid points xy (N,2) on an H,W,3 uint8 image."""
    pts = _pixels(xy)
    for n in np.flatnonzero(valid):
        cv2.circle(image, (int(pts[n, 0]), int(pts[n, 1])), radius, _color(color), -1)
    return image


def label_text(value):
    """A frame id or a number as a short label: ints as they are, floats with %g."""
    if isinstance(value, torch.Tensor):
        value = value.item()
    if isinstance(value, (float, np.floating)):
        return '%g' % value
    return str(value)


def draw_label(image, text, scale=0.5, left=5, top=20):
    """White text on a black box at the top left of an H,W,3 uint8 image (in place)."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (width, height), _ = cv2.getTextSize(text, font, scale, 1)
    cv2.rectangle(image, (left, top - height), (left + width, top + 1), (0, 0, 0), -1)
    cv2.putText(image, text, (left, top), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def feature_pca_rgb(feats):
    """Feature maps S,C,H,W -> S,3,H,W in [-0.5, 0.5]: the 3 principal components over all
    frames together (so colours agree across frames), min-max normalised."""
    S, C, H, W = feats.shape
    X = torch.nan_to_num(feats.double()).permute(0, 2, 3, 1).reshape(-1, C)
    X = X - X.mean(dim=0)
    _, vectors = torch.linalg.eigh(X.T @ X)  # ascending eigenvalues
    top = vectors.flip(-1)[:, :3]  # C,min(C,3)
    signs = torch.sign(top.gather(0, top.abs().argmax(dim=0, keepdim=True)))  # fix each sign
    projected = X @ (top * signs)
    projected = torch.cat([projected, projected.new_zeros(len(X), 3 - projected.shape[1])], dim=1)
    return _normalise(projected.reshape(S, H, W, 3).permute(0, 3, 1, 2)).float() - 0.5


def feature_magnitude_rgb(feats):
    """Feature maps S,C,H,W -> S,3,H,W gray in [-0.5, 0.5]: mean |feature|, min-max normalised."""
    magnitude = torch.nan_to_num(feats.float()).abs().mean(dim=1, keepdim=True)
    return _normalise(magnitude).repeat(1, 3, 1, 1) - 0.5


def _normalise(x):
    """Min-max normalise a tensor to [0, 1] (all zeros when constant)."""
    low, high = x.min(), x.max()
    return (x - low) / (high - low) if high > low else torch.zeros_like(x)


# ---------------------------------------------------------------- tensor <-> image

def _as_uint8(images):
    """A tensor of images, uint8 or floats in [-0.5, 0.5], as uint8 on the CPU."""
    images = images.detach().cpu()
    return images if images.dtype == torch.uint8 else back2color(images)


def _to_image(rgb):
    """3,H,W tensor (uint8 or floats in [-0.5, 0.5]) -> H,W,3 uint8 numpy array (a copy)."""
    return np.ascontiguousarray(_as_uint8(rgb).permute(1, 2, 0).numpy())


def _to_tensor(image):
    """H,W,3 uint8 numpy array -> 1,3,H,W uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]


def _numpy(x):
    """A tensor as a float32 numpy array."""
    return x.detach().cpu().float().numpy()


def _valids_numpy(valids, trajs):
    """The first batch element's S,N validity (> 0) as numpy; all valid when None."""
    if valids is None:
        return np.ones(trajs.shape[1:3], dtype=bool)
    return _numpy(valids[0]) > 0


# ---------------------------------------------------------------- tensorboard

class Summ_writer:
    """Tensorboard summaries for one step, in the style of the original's ``Summ_writer``.

    Visual summaries are made only when ``save_this`` (the step is a multiple of
    ``log_freq``) or when asked for with ``only_return``; scalars are written when
    ``save_this`` or every ``scalar_freq`` steps. Images are B,3,H,W and videos B,S,3,H,W
    tensors, uint8 or floats in [-0.5, 0.5] (``preprocess_color``); trajectories are
    B,S,N,2 pixels and validity/visibility B,S,N. Only the first batch element is drawn.
    Sequences are written as animated gifs; unless ``just_gif``, each gif frame also
    shows all frames stacked below it. With ``only_return``, the methods return what they
    would write (uint8, 1,3,H,W for an image and 1,S,3,H,W for a sequence).
    """

    def __init__(self, writer, global_step, log_freq=10, fps=8, scalar_freq=100, just_gif=False):
        self.writer = writer
        self.global_step = global_step
        self.log_freq = max(int(log_freq), 1)
        self.fps = fps
        self.scalar_freq = max(int(scalar_freq), 1)
        self.just_gif = just_gif
        self.save_this = global_step % self.log_freq == 0

    def _wanted(self, only_return):
        return self.save_this or only_return

    def summ_scalar(self, name, value):
        """A scalar (number or one-element tensor); NaN is skipped."""
        value = float(value.item() if isinstance(value, torch.Tensor) else value)
        if np.isnan(value):
            return
        if self.save_this or self.global_step % self.scalar_freq == 0:
            self.writer.add_scalar(name, value, global_step=self.global_step)

    def summ_gif(self, name, video):
        """Write B,S,3,H,W as an animated gif (an image when S is 1); returns 1,S,3,H,W uint8."""
        video = _as_uint8(video[0:1])
        if video.shape[1] == 1:
            self.writer.add_image(name, video[0, 0], global_step=self.global_step)
        else:
            self.writer.add_video(name, video, global_step=self.global_step, fps=self.fps)
        return video

    def summ_rgb(self, name, ims, frame_id=None, only_return=False):
        """One image B,3,H,W, optionally labelled with ``frame_id``."""
        if not self._wanted(only_return):
            return None
        vis = _as_uint8(ims[0:1])
        if frame_id is not None:
            vis = _to_tensor(draw_label(_to_image(vis[0]), label_text(frame_id)))
        return vis if only_return else self.summ_gif(name, vis[:, None])

    def summ_rgbs(self, name, ims, frame_ids=None, only_return=False):
        """A sequence (list of B,3,H,W images) as a gif, frame s labelled with frame_ids[s]."""
        if not self._wanted(only_return):
            return None
        video = torch.stack([_as_uint8(im[0:1]) for im in ims], dim=1)  # 1,S,3,H,W
        S = video.shape[1]
        if not self.just_gif:
            column = torch.cat(list(video.unbind(1)), dim=2)  # 1,3,S*H,W
            video = torch.cat([video, column[:, None].expand(-1, S, -1, -1, -1)], dim=3)
        if frame_ids is not None:
            video = torch.stack([_to_tensor(draw_label(_to_image(video[0, s]), label_text(frame_ids[s])))
                                 for s in range(S)], dim=1)
        return video if only_return else self.summ_gif(name, video)

    def summ_traj2ds_on_rgb(self, name, trajs, rgb, valids=None, show_dots=False, frame_id=None,
                            only_return=False, cmap='coolwarm', linewidth=1):
        """Whole trajectories B,S,N,2 on one image B,3,H,W, colour encoding time along each
        trail (points valid at frame 0 only); ``frame_id`` is written in the corner."""
        if not self._wanted(only_return):
            return None
        image = _to_image(rgb[0])
        draw_trajs_time_colored(image, _numpy(trajs[0]), _valids_numpy(valids, trajs), cmap, linewidth, show_dots)
        return self.summ_rgb(name, _to_tensor(image), frame_id=frame_id, only_return=only_return)

    def summ_traj2ds_on_rgbs(self, name, trajs, rgbs, valids=None, frame_ids=None, only_return=False,
                             show_dots=False, cmap='coolwarm', linewidth=1):
        """Trajectories B,S,N,2 on frames B,S,3,H,W: on each frame, every point's trail over
        the last few frames (colour from old to new along ``cmap``) and a dot where it is."""
        if not self._wanted(only_return):
            return None
        trajs_np, valids_np = _numpy(trajs[0]), _valids_numpy(valids, trajs)
        frames = []
        for s in range(rgbs.shape[1]):
            start = max(0, s - RECENT_STEPS)
            image = _to_image(rgbs[0, s])
            draw_recent_trails(image, trajs_np[start:s + 1], valids_np[start:s + 1], cmap, linewidth, show_dots)
            frames.append(_to_tensor(image))
        return self.summ_rgbs(name, frames, frame_ids=frame_ids, only_return=only_return)

    def summ_traj2ds_on_rgbs2(self, name, trajs, visibles, rgbs, valids=None, frame_ids=None, only_return=False,
                              cmap=None, linewidth=1):
        """Trajectories B,S,N,2 on frames B,S,3,H,W as ``draw_tracks`` draws them: each point
        coloured by its frame-0 position (``cmap`` along x, default ``POINT_CMAP``), its trail
        from frame 0 and a dot, hollow where ``visibles`` B,S,N says occluded. Points
        invalid at frame 0 are left out."""
        if not self._wanted(only_return):
            return None
        valids_np = _valids_numpy(valids, trajs)
        frames = [_to_image(rgbs[0, s]) for s in range(rgbs.shape[1])]
        drawn = draw_tracks(frames, _numpy(trajs[0]), _numpy(visibles[0]), valids_np & valids_np[0:1],
                            tail=len(frames), cmap=cmap or POINT_CMAP, linewidth=linewidth)
        return self.summ_rgbs(name, [_to_tensor(image) for image in drawn], frame_ids=frame_ids,
                              only_return=only_return)

    def summ_pts_on_rgbs(self, name, trajs, rgbs, valids=None, frame_ids=None, only_return=False,
                         cmap='coolwarm', linewidth=1):
        """Each frame's points (B,S,N,2) as dots of radius ``linewidth`` on frames B,S,3,H,W,
        all in the first colour of ``cmap`` (one colour per call, as in the original)."""
        if not self._wanted(only_return):
            return None
        trajs_np, valids_np = _numpy(trajs[0]), _valids_numpy(valids, trajs)
        color = colormap_rgb(cmap, 0.0)
        frames = [_to_tensor(draw_points(_to_image(rgbs[0, s]), trajs_np[s], valids_np[s], color, linewidth))
                  for s in range(rgbs.shape[1])]
        return self.summ_rgbs(name, frames, frame_ids=frame_ids, only_return=only_return)

    def summ_feats(self, name, feats, pca=True, only_return=False, frame_ids=None):
        """Feature maps (a list or tuple of B,C,H,W, one per frame) as a gif: their 3 principal
        components as RGB (shared over frames), or with ``pca=False`` the mean |feature|."""
        if not self._wanted(only_return):
            return None
        stacked = torch.stack([f[0].detach().cpu() for f in feats])  # S,C,H,W
        maps = feature_pca_rgb(stacked) if pca else feature_magnitude_rgb(stacked)
        return self.summ_rgbs(name, list(maps[:, None]), frame_ids=frame_ids, only_return=only_return)
