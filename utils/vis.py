"""Drawing tracks on frames, and tensorboard summaries in the original's style.

``draw_tracks_stream`` draws tracks as coloured trails on full-resolution video frames
(the demo's overlay video). ``Summ_writer`` keeps the original's tensorboard helpers
(scalars, gifs of trajectories on frames) under their original names, so the training
and test scripts log what the original logs.
"""

import cv2
import numpy as np
import torch
from matplotlib import colormaps


def preprocess_color(x):
    """0..255 images -> [-0.5, 0.5] floats (the form the summaries take)."""
    return x.float() / 255.0 - 0.5


def back2color(x):
    """[-0.5, 0.5] floats -> 0..255 uint8."""
    return ((x + 0.5) * 255.0).clamp(0, 255).to(torch.uint8)


def _colors(cmap, n):
    """n RGB colours (0..255 ints) spread along a matplotlib colormap."""
    values = colormaps[cmap](np.linspace(0, 1, max(n, 2)))[:n, :3]
    return (values * 255).astype(int)


def point_colors(xy0, W, cmap='hsv'):
    """A colour per point from its x position, so neighbours get related colours. xy0: N,2."""
    idx = np.clip(np.asarray(xy0)[:, 0] / max(W - 1, 1), 0, 1)
    return (colormaps[cmap](idx * 0.9)[:, :3] * 255).astype(int)


def draw_trails(image, trajs, colors, upto, tail=16, linewidth=1, visibs=None):
    """Draw, on an H,W,3 uint8 RGB image (in place), each point's last ``tail`` positions up
    to frame ``upto`` as a line fading in, and a dot at frame ``upto`` (hollow when
    invisible). trajs: T,N,2; colors: N,3."""
    start = max(0, upto - tail)
    overlay = image.copy()
    for n in range(trajs.shape[1]):
        color = tuple(int(c) for c in colors[n])
        points = np.round(trajs[start:upto + 1, n]).astype(np.int32)
        for i in range(1, len(points)):
            cv2.line(overlay, tuple(points[i - 1]), tuple(points[i]), color, linewidth, cv2.LINE_AA)
    cv2.addWeighted(overlay, 0.7, image, 0.3, 0, dst=image)
    for n in range(trajs.shape[1]):
        color = tuple(int(c) for c in colors[n])
        x, y = np.round(trajs[upto, n]).astype(np.int32)
        visible = visibs is None or visibs[upto, n]
        cv2.circle(image, (int(x), int(y)), linewidth + 1, color, -1 if visible else 1, cv2.LINE_AA)
    return image


def draw_tracks_stream(frames, trajs, visibs=None, tail=16, linewidth=None):
    """Yield frames with the tracks drawn as coloured trails. frames: iterable of H,W,3
    uint8 RGB; trajs: T,N,2 in those frames' pixels (colour by frame-0 x position)."""
    colors = None
    for t, frame in enumerate(frames):
        if t >= len(trajs):
            return
        if colors is None:
            H, W = frame.shape[:2]
            colors = point_colors(trajs[0], W)
            linewidth = linewidth or max(1, int(round(max(H, W) / 480)))
        yield draw_trails(np.ascontiguousarray(frame).copy(), trajs, colors, t, tail, linewidth, visibs)


def _to_image(rgb):
    """1,3,H,W tensor in [-0.5, 0.5] -> H,W,3 uint8 numpy."""
    return np.ascontiguousarray(back2color(rgb[0].detach().cpu()).permute(1, 2, 0).numpy())


def _to_tensor(image):
    """H,W,3 uint8 numpy -> 1,3,H,W uint8 tensor (0..255)."""
    return torch.from_numpy(image).permute(2, 0, 1)[None]


def draw_traj_on_image(image, trajs, valids=None, cmap='coolwarm', linewidth=1, show_dots=True):
    """Trajectories S,N,2 on an H,W,3 uint8 image; colour encodes time along each trail."""
    S, N, _ = trajs.shape
    colors = _colors(cmap, S)
    for n in range(N):
        points = np.round(trajs[:, n]).astype(np.int32)
        valid = np.ones(S, bool) if valids is None else valids[:, n] > 0
        for s in range(1, S):
            if valid[s] and valid[s - 1]:
                cv2.line(image, tuple(points[s - 1]), tuple(points[s]), tuple(int(c) for c in colors[s]),
                         linewidth, cv2.LINE_AA)
        if show_dots:
            for s in np.flatnonzero(valid):
                cv2.circle(image, tuple(points[s]), linewidth, tuple(int(c) for c in colors[s]), -1)
    return image


def draw_points_on_image(image, xy, valids=None, cmap='coolwarm', linewidth=1):
    """Points N,2 on an H,W,3 uint8 image, coloured by index along ``cmap``."""
    colors = _colors(cmap, len(xy))
    for n, (x, y) in enumerate(np.round(xy).astype(np.int32)):
        if valids is None or valids[n] > 0:
            cv2.circle(image, (int(x), int(y)), linewidth + 1, tuple(int(c) for c in colors[n]), -1)
    return image


def _label(image, text):
    cv2.putText(image, text, (5, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def _frame_label(frame_id):
    if frame_id is None:
        return None
    if isinstance(frame_id, torch.Tensor):
        frame_id = frame_id.item()
    return f'{frame_id:.2f}' if isinstance(frame_id, float) else str(frame_id)


class Summ_writer:
    """Tensorboard summaries at a step, in the original's style.

    Images are 1,3,H,W tensors in [-0.5, 0.5] (``preprocess_color``); trajectories
    1,S,N,2 pixels. Visual summaries are written when ``save_this`` (the step is a
    multiple of ``log_freq``); scalars every ``scalar_freq`` steps. Sequences become
    gifs (``just_gif``: the original's only mode).
    """

    def __init__(self, writer, global_step, log_freq=10, fps=8, scalar_freq=100, just_gif=False):
        self.writer = writer
        self.global_step = global_step
        self.log_freq = max(int(log_freq), 1)
        self.fps = fps
        self.scalar_freq = max(int(scalar_freq), 1)
        self.just_gif = just_gif
        self.save_this = self.global_step % self.log_freq == 0

    def summ_scalar(self, name, value):
        if self.global_step % self.scalar_freq == 0 and value is not None:
            value = float(value.item() if isinstance(value, torch.Tensor) else value)
            if np.isfinite(value):
                self.writer.add_scalar(name, value, global_step=self.global_step)

    def summ_gif(self, name, frames):
        """frames: list of H,W,3 uint8 images -> an animated gif."""
        video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)[None]  # 1,T,3,H,W
        self.writer.add_video(name, video, global_step=self.global_step, fps=self.fps)

    def summ_rgbs(self, name, rgbs):
        """A list of 1,3,H,W images in [-0.5, 0.5] (or 0..255 uint8) as a gif."""
        if self.save_this:
            self.summ_gif(name, [_to_image(preprocess_color(r) if r.dtype == torch.uint8 else r)
                                 for r in rgbs])

    def summ_traj2ds_on_rgb(self, name, trajs, rgb, valids=None, cmap='coolwarm', linewidth=1,
                            only_return=False, frame_id=None, show_dots=False):
        """Trajectories 1,S,N,2 on one image 1,3,H,W. Returns 1,3,H,W uint8 (0..255)."""
        image = _to_image(rgb)
        valids_np = None if valids is None else valids[0].detach().cpu().numpy()
        draw_traj_on_image(image, trajs[0].detach().cpu().numpy(), valids_np, cmap, linewidth, show_dots)
        label = _frame_label(frame_id)
        if label:
            _label(image, label)
        if not only_return and self.save_this:
            self.writer.add_image(name, image, global_step=self.global_step, dataformats='HWC')
        return _to_tensor(image)

    def summ_traj2ds_on_rgbs(self, name, trajs, rgbs, valids=None, cmap='coolwarm', linewidth=1,
                             show_dots=False, only_return=False):
        """Trajectories 1,S,N,2 drawn up to each frame of rgbs 1,S,3,H,W, as a gif."""
        if not (self.save_this or only_return):
            return None
        trajs_np = trajs[0].detach().cpu().numpy()
        valids_np = None if valids is None else valids[0].detach().cpu().numpy()
        frames = []
        for s in range(rgbs.shape[1]):
            image = _to_image(rgbs[:, s])
            draw_traj_on_image(image, trajs_np[:s + 1], None if valids_np is None else valids_np[:s + 1],
                               cmap, linewidth, show_dots)
            frames.append(image)
        if not only_return:
            self.summ_gif(name, frames)
        return [_to_tensor(f) for f in frames]

    def summ_traj2ds_on_rgbs2(self, name, trajs, visibles, rgbs, valids=None, frame_ids=None,
                              cmap='coolwarm', linewidth=1):
        """Whole trajectories on every frame, with each frame's point marked, as a gif."""
        if not self.save_this:
            return
        trajs_np = trajs[0].detach().cpu().numpy()
        valids_np = None if valids is None else valids[0].detach().cpu().numpy()
        visibles_np = visibles[0].detach().cpu().numpy()
        frames = []
        for s in range(rgbs.shape[1]):
            image = draw_traj_on_image(_to_image(rgbs[:, s]), trajs_np, valids_np, cmap, linewidth, False)
            draw_points_on_image(image, trajs_np[s], visibles_np[s], 'spring', linewidth)
            if frame_ids is not None:
                _label(image, str(frame_ids[s]))
            frames.append(image)
        self.summ_gif(name, frames)

    def summ_pts_on_rgbs(self, name, trajs, rgbs, valids=None, cmap='coolwarm', linewidth=1,
                         only_return=False):
        """Each frame's points 1,S,N,2 on rgbs 1,S,3,H,W; a gif, or 1,S,3,H,W in [-0.5, 0.5]."""
        if not (self.save_this or only_return):
            return None
        trajs_np = trajs[0].detach().cpu().numpy()
        valids_np = None if valids is None else valids[0].detach().cpu().numpy()
        frames = [draw_points_on_image(_to_image(rgbs[:, s]), trajs_np[s],
                                       None if valids_np is None else valids_np[s], cmap, linewidth)
                  for s in range(rgbs.shape[1])]
        if not only_return:
            self.summ_gif(name, frames)
        return preprocess_color(torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)[None])
