"""One training step's arithmetic: initial tracks, the data-parallel loss, validation, visuals.

``train_forward`` is the original's training forward pass (the x/y swap augmentation,
random initial trajectories around the truth, the sequence loss over all ranks' batches)
and ``validate`` its validation (zero-velocity start, twice the iterations). Both return
the paper's metrics of the batch.
"""

import numpy as np
import torch
import torch.distributed as dist

from nets.pips2 import masked_error_sums, weigh_iterations
from utils.metrics import paper_metrics
from utils.vis import preprocess_color


def random_initial_trajs(trajs_g, H, W):
    """The original's training initialisation (B,S,N,2) around the truth ``trajs_g``.

    Uniform random points mixed with the truth by a random per-point weight; for a random
    half of the points the zero-velocity track from frame 0 instead; frame 0 always true.
    """
    B, S, N, _ = trajs_g.shape
    scale = trajs_g.new_tensor([W - 1, H - 1])
    uniform = torch.rand(B, S, N, 2, device=trajs_g.device) * scale
    weight = torch.rand(B, 1, N, 1, device=trajs_g.device)
    trajs = uniform * weight + trajs_g * (1 - weight)
    keep_mixed = (torch.rand(B, 1, N, 1, device=trajs_g.device) > 0.5).float()
    trajs = trajs * keep_mixed + trajs_g[:, 0:1] * (1 - keep_mixed)
    return torch.cat([trajs_g[:, 0:1], trajs[:, 1:]], dim=1)


def data_parallel_loss(coord_predictions, trajs_g, valids, world):
    """The model's sequence loss over the batches of all ``world`` processes together.

    The masked means divide error sums by valid counts summed over all processes (an
    all_reduce), so the value does not depend on how the batch is split. Its gradient is
    ``world`` times this process's share, so that DDP's averaging of gradients gives the
    gradient of the whole batch's loss. With world 1 it is ``sequence_loss`` exactly.
    """
    error_sums = masked_error_sums(coord_predictions, trajs_g, valids)  # I
    valid_count = valids.sum()
    if world == 1:
        return weigh_iterations(error_sums, valid_count)
    totals = torch.cat([error_sums.detach().float(), valid_count.detach().float()[None]])
    dist.all_reduce(totals)
    value = weigh_iterations(totals[:-1], totals[-1])
    share = weigh_iterations(error_sums * world, totals[-1])
    return value + share - share.detach()


def to_device(batch, device):
    """rgbs B,S,3,H,W float; trajs_g B,S,N,2; vis_g, valids B,S,N on ``device``."""
    return tuple(batch[key].to(device).float() for key in ('rgbs', 'trajs', 'visibs', 'valids'))


def train_forward(model, batch, cfg, sw):
    """One training forward pass: (loss, metrics) with the original's augmentations."""
    rgbs, trajs_g, vis_g, valids = to_device(batch, cfg.device)
    if cfg.use_augs and np.random.rand() < 0.5:  # swap x and y (the original's "rot90")
        rgbs = rgbs.transpose(3, 4)
        trajs_g = trajs_g.flip(-1)
    H, W = rgbs.shape[-2:]
    trajs_e0 = random_initial_trajs(trajs_g, H, W)
    preds, preds_anim, _, _ = model(trajs_e0, rgbs, iters=cfg.iters)
    loss = data_parallel_loss(preds[:-1], trajs_g, valids, cfg.world)  # the last entry repeats the final one
    metrics = paper_metrics(preds[-1].float(), trajs_g, valids, H, W, drop_invalid_first=True)
    metrics['total_loss'] = loss.item()
    if sw is not None and sw.save_this:
        log_visuals(sw, rgbs, trajs_g, vis_g, valids, trajs_e0, preds_anim)
    return loss, metrics


def validate(model, batch, cfg, sw):
    """Validation on one batch: zero-velocity initialisation, twice the iterations."""
    rgbs, trajs_g, vis_g, valids = to_device(batch, cfg.device)
    H, W = rgbs.shape[-2:]
    trajs_e0 = trajs_g[:, 0:1].expand_as(trajs_g)
    preds, preds_anim, _, loss = model(trajs_e0, rgbs, iters=cfg.iters * 2, trajs_g=trajs_g, valids=valids)
    # as the original's validation, median_l2 keeps points invalid at frame 0 (training drops them)
    metrics = paper_metrics(preds[-1].float(), trajs_g, valids, H, W)
    metrics['total_loss'] = loss.item()
    if sw is not None and sw.save_this:
        log_visuals(sw, rgbs, trajs_g, vis_g, valids, None, preds_anim)
    return metrics


def log_visuals(sw, rgbs, trajs_g, vis_g, valids, trajs_e0, preds_anim):
    """The original's training/validation visuals: trajectories on frames, refinement."""
    prep = preprocess_color(rgbs[0:1])
    grays = prep.mean(dim=2, keepdim=True).repeat(1, 1, 3, 1, 1)
    if trajs_e0 is not None:
        rgb0 = sw.summ_traj2ds_on_rgb('', trajs_g[0:1], prep[0:1, 0], valids=valids[0:1], cmap='winter',
                                      linewidth=2, only_return=True)
        sw.summ_traj2ds_on_rgb('0_inputs/trajs_e0_on_rgb0', trajs_e0[0:1], preprocess_color(rgb0),
                               valids=valids[0:1], cmap='spring', linewidth=2)
    gt_rgb = preprocess_color(sw.summ_traj2ds_on_rgb('', trajs_g[0:1], grays[0:1].mean(dim=1),
                                                     valids=valids[0:1], cmap='winter', only_return=True))
    frames = [sw.summ_traj2ds_on_rgb('', pred[0:1], gt_rgb, valids=valids[0:1], cmap='spring',
                                     only_return=True) for pred in preds_anim]
    sw.summ_rgbs('3_test/animated_trajs_on_rgb', frames)
    sw.summ_pts_on_rgbs('0_inputs/kps_gv_on_rgbs', trajs_g[0:1, ::4], grays[0:1, ::4],
                        valids=valids[0:1, ::4] * vis_g[0:1, ::4], cmap='winter', linewidth=2)
    sw.summ_pts_on_rgbs('2_outputs/kps_e_on_rgbs', preds_anim[-1][0:1, ::4], grays[0:1, ::4],
                        valids=valids[0:1, ::4], cmap='spring', linewidth=2)
