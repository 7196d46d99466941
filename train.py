"""Train PIPs++ on exported PointOdyssey clips (see export_mp4_dataset.py).

    python train.py                                   # one GPU, or the CPU without one
    torchrun --nproc_per_node=4 train.py --B=1        # DistributedDataParallel, B per GPU
    python train.py --init_dir=<run name>             # resume a run under --ckpt_dir

The arguments and defaults are the original's. Note that ``--N`` only names the run: the
export loader reads its default of 128 tracks per clip, as in the original release.
"""

import contextlib
import datetime
import os
import signal
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from fire import Fire
from tensorboardX import SummaryWriter
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

import saverloader
from datasets.common import DatasetError
from datasets.exportdataset import ExportDataset
from nets.pips2 import Pips
from utils.metrics import SimplePool, paper_metrics
from utils.misc import count_parameters
from utils.video import VideoError
from utils.vis import Summ_writer, preprocess_color

POOL_NAMES = ['total_loss', 'd_1', 'd_2', 'd_4', 'd_8', 'd_16', 'd_avg', 'survival', 'median_l2']


def run_name(B, S, N, iters, grad_acc, lr, use_scheduler, cache_len, cache_freq, use_augs, exp_name):
    """The original's descriptive run name, e.g. 2_36_64_i6_5e-4s_A_aa01_153012."""
    name = f'{B}_{S}_{N}_i{iters}'
    if grad_acc > 1:
        name += f'x{grad_acc}'
    lr_text = '%.1e' % lr  # 5.0e-04 -> 5e-4
    name += '_' + lr_text[0] + lr_text[3:5] + lr_text[-1]
    if use_scheduler:
        name += 's'
    if cache_len:
        name += f'_c{cache_len}_f{cache_freq}'
    if use_augs:
        name += '_A'
    return f'{name}_{exp_name}_{datetime.datetime.now().strftime("%H%M%S")}'


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


def split_track(sample, device):
    """rgbs B,S,3,H,W float; trajs_g B,S,N,2; vis_g, valids B,S,N from an export sample."""
    rgbs = sample['rgbs'].to(device).float()
    track_g = sample['track_g'].to(device).float()
    return rgbs, track_g[..., :2], track_g[..., 2], track_g[..., 3]


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


def main(B=2, S=36, N=64, stride=8, iters=6, crop_size=(384, 512), use_augs=True, shuffle=True,
         cache_len=0, cache_freq=0, dataset_location='./pod_export', dataset_version='ae_36_128_384x512',
         n_pool=1000, quick=False, lr=5e-4, grad_acc=1, use_scheduler=True, max_iters=200000,
         log_dir='./logs_train', log_freq=1000, val_freq=100, ckpt_dir='./checkpoints', save_freq=1000,
         keep_latest=2, init_dir='', load_optimizer=True, load_step=True, ignore_load=None,
         device=None, amp='', num_workers=6, exp_name='aa01', seed=None, clip_N=128):
    """Train PIPs++. Beyond the original's arguments: --device (cuda if available, else
    cpu), --amp ('' off, 'bf16' or 'fp16' autocast on CUDA), --num_workers, --exp_name,
    --seed, --clip_N. As in the original, --N only names the run: clips are read with
    --clip_N tracks (default 128, the export loader's default that the original used).
    --init_dir is a run folder under --ckpt_dir, or any folder holding checkpoints (e.g.
    ./reference_model); pass --load_step=False to fine-tune with a fresh step count.
    """
    if quick:  # the original's debug settings
        B, log_freq, max_iters, shuffle, val_freq, n_pool = 1, 100, 1000, False, 10, 100
        use_augs, cache_len, cache_freq, save_freq = False, 0, 0, 99999999
    crop_size = tuple(int(c) for c in crop_size)
    if crop_size[0] % 32 or crop_size[1] % 32:
        sys.exit(f'error: crop_size {crop_size} must be multiples of 32')
    rank, world, device = setup_distributed(device)
    is_main = rank == 0
    if seed is not None:
        torch.manual_seed(seed + rank)
        np.random.seed(seed + rank)

    name = run_name(B, S, N, iters, grad_acc, lr, use_scheduler, cache_len, cache_freq, use_augs, exp_name)
    if world > 1:  # all ranks use rank 0's name (it holds a timestamp)
        shared = [name]
        dist.broadcast_object_list(shared, src=0)
        name = shared[0]
    log = print if is_main else (lambda *args, **kwargs: None)
    log('model_name', name)

    try:
        dataset = ExportDataset(dataset_location=dataset_location, dataset_version=dataset_version, S=S,
                                N=clip_N, crop_size=crop_size, use_augs=use_augs)
    except (DatasetError, VideoError) as exc:
        sys.exit(f'error: {exc}')
    samples = SampleStream(dataset, B, shuffle, num_workers, rank, world)

    model = Pips(stride=stride).to(device)
    model.norm.requires_grad_(False)  # the unused GroupNorm: no gradient, so DDP need not wait for one
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-6, eps=1e-8)
    scheduler = None
    if use_scheduler:
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, max_iters + 100, pct_start=0.1,
                                                        cycle_momentum=False, anneal_strategy='linear')
    if is_main:
        count_parameters(model)
    global_step = restore(model, optimizer, scheduler, init_dir, ckpt_dir, load_optimizer, load_step,
                          ignore_load)
    if global_step >= max_iters:
        sys.exit(f'error: the restored step {global_step} is not below max_iters={max_iters}, so there is '
                 'nothing to train; pass --load_step=False to fine-tune with a fresh step count, or raise '
                 '--max_iters')
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.startswith('cuda') else None)
    bare_model = model.module if world > 1 else model
    autocast, scaler = amp_context(amp, device)

    ckpt_path = os.path.join(ckpt_dir, name)
    writer_t = writer_v = None
    if is_main:
        writer_t = SummaryWriter(os.path.join(log_dir, name, 't'), max_queue=10, flush_secs=60)
        if val_freq:
            writer_v = SummaryWriter(os.path.join(log_dir, name, 'v'), max_queue=10, flush_secs=60)
    pools_t = {key: SimplePool(n_pool) for key in POOL_NAMES}
    pools_v = {key: SimplePool(n_pool) for key in POOL_NAMES}
    cache = SimplePool(cache_len) if cache_len else None

    def next_sample(step):
        if cache is None:
            return samples.next()
        if len(cache) < cache_len or (cache_freq > 0 and step % cache_freq == 0):
            cache.update([samples.next()])
            log('cached a new sample into sample_pool (len %d)' % len(cache))
        return cache.sample()

    def summ_writer(writer, step):
        if writer is None:
            return None
        return Summ_writer(writer=writer, global_step=step, log_freq=log_freq, fps=min(S, 8),
                           scalar_freq=max(log_freq // 4, 1), just_gif=True)

    completed_step = global_step
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    model.train()
    try:
        while global_step < max_iters:
            global_step += 1
            step_start = time.time()
            read_time = 0.0
            sw_t = summ_writer(writer_t, global_step)
            for micro_step in range(grad_acc):
                read_start = time.time()
                sample = next_sample(global_step)
                read_time += time.time() - read_start
                last = micro_step == grad_acc - 1
                with autocast():
                    loss, metrics = train_forward(model, sample, device, iters, use_augs,
                                                  sw_t if last else None)
                if not torch.isfinite(loss):
                    log(f'nan in loss at step {global_step}; quitting (nothing saved for this step)')
                    cleanup(world)
                    sys.exit(1)
                loss = loss / grad_acc
                if world > 1 and not last:
                    with model.no_sync():
                        scaler.scale(loss).backward()
                else:
                    scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            completed_step = global_step

            update_pools(pools_t, metrics, sw_t)
            if sw_t is not None:
                sw_t.summ_scalar('_/current_lr', optimizer.param_groups[0]['lr'])
            if is_main and global_step % save_freq == 0:
                saverloader.save(ckpt_path, optimizer, bare_model, global_step, scheduler=scheduler,
                                 keep_latest=keep_latest)
            if is_main and val_freq and global_step % val_freq == 0:
                bare_model.eval()
                with torch.no_grad(), autocast():
                    metrics_v = validate(bare_model, next_sample(global_step), device, iters * 2,
                                         summ_writer(writer_v, global_step))
                update_pools(pools_v, metrics_v, summ_writer(writer_v, global_step))
                bare_model.train()
            log('%s; step %06d/%d; rtime %.2f; itime %.2f; loss %.3f; loss_t %.2f; d_t %.1f; d_v %.1f' % (
                name, global_step, max_iters, read_time, time.time() - step_start, loss.item(),
                pools_t['total_loss'].mean(), pools_t['d_avg'].mean(), pools_v['d_avg'].mean()), flush=True)
        if is_main and completed_step % save_freq != 0:
            saverloader.save(ckpt_path, optimizer, bare_model, completed_step, scheduler=scheduler,
                             keep_latest=keep_latest)
    except KeyboardInterrupt:
        if is_main and completed_step > 0:
            log(f'interrupted after step {completed_step}; saving a checkpoint first')
            saverloader.save(ckpt_path, optimizer, bare_model, completed_step, scheduler=scheduler,
                             keep_latest=keep_latest)
        cleanup(world)
        sys.exit(130)
    for writer in (writer_t, writer_v):
        if writer is not None:
            writer.close()
    if world > 1:  # every rank must end with the same weights
        checksum = sum(p.detach().double().sum().item() for p in bare_model.parameters())
        print(f'rank {rank}: weights checksum {checksum:.10f}', flush=True)
    cleanup(world)


def raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def setup_distributed(device):
    """(rank, world size, device); joins the process group when started by torchrun."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    local_rank = int(os.environ.get('LOCAL_RANK', '0'))
    if device is None:
        device = f'cuda:{local_rank}' if torch.cuda.is_available() else 'cpu'
    device = str(device)
    if device == 'cuda':
        device = f'cuda:{local_rank}'
    if device.startswith('cuda'):
        torch.cuda.set_device(device)
    if world == 1:
        return 0, 1, device
    dist.init_process_group('nccl' if device.startswith('cuda') else 'gloo')
    return dist.get_rank(), world, device


def cleanup(world):
    if world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def amp_context(amp, device):
    """(autocast context factory, grad scaler) for --amp '' / 'bf16' / 'fp16'."""
    if not amp:
        return contextlib.nullcontext, torch.amp.GradScaler(enabled=False)
    if amp not in ('bf16', 'fp16'):
        sys.exit(f"error: --amp must be '', 'bf16' or 'fp16'; got {amp!r}")
    if not device.startswith('cuda'):
        sys.exit('error: --amp needs a CUDA device')
    dtype = torch.bfloat16 if amp == 'bf16' else torch.float16
    return (lambda: torch.autocast('cuda', dtype=dtype)), torch.amp.GradScaler(enabled=(amp == 'fp16'))


def restore(model, optimizer, scheduler, init_dir, ckpt_dir, load_optimizer, load_step, ignore_load):
    """Load --init_dir (a run under ckpt_dir, or a folder path); return the starting step."""
    if not init_dir:
        return 0
    path = init_dir if os.path.isdir(init_dir) else os.path.join(ckpt_dir, init_dir)
    try:
        step = saverloader.load(path, model, optimizer=optimizer if load_optimizer else None,
                                scheduler=scheduler if load_optimizer else None, ignore_load=ignore_load)
    except saverloader.CheckpointError as exc:
        sys.exit(f'error: {exc}')
    return step if load_step else 0


class SampleStream:
    """Endless batches from a dataset, sharded across ranks, reshuffled every epoch."""

    def __init__(self, dataset, B, shuffle, num_workers, rank, world):
        if len(dataset) < B * world:
            sys.exit(f'error: {len(dataset)} clips cannot fill a batch of {B} on {world} process(es)')
        self.sampler = None
        if world > 1:
            self.sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle)
        self.loader = DataLoader(dataset, batch_size=B, shuffle=shuffle and self.sampler is None,
                                 sampler=self.sampler, num_workers=num_workers, drop_last=True,
                                 worker_init_fn=seed_worker, persistent_workers=num_workers > 0)
        self.epoch = 0
        self.iterator = iter(self.loader)

    def next(self):
        try:
            return next(self.iterator)
        except StopIteration:
            self.epoch += 1
            if self.sampler is not None:
                self.sampler.set_epoch(self.epoch)
            self.iterator = iter(self.loader)
            return next(self.iterator)


def seed_worker(worker_id):
    np.random.seed((torch.initial_seed() + worker_id) % 2 ** 32)


def train_forward(model, sample, device, iters, use_augs, sw):
    """One training forward pass: (loss, metrics) with the original's augmentations."""
    rgbs, trajs_g, vis_g, valids = split_track(sample, device)
    if use_augs and np.random.rand() < 0.5:  # swap x and y (the original's "rot90")
        rgbs = rgbs.transpose(3, 4)
        trajs_g = trajs_g.flip(-1)
    H, W = rgbs.shape[-2:]
    trajs_e0 = random_initial_trajs(trajs_g, H, W)
    preds, preds_anim, _, loss = model(trajs_e0, rgbs, iters=iters, trajs_g=trajs_g, vis_g=vis_g,
                                       valids=valids, is_train=True)
    metrics = paper_metrics(preds[-1].float(), trajs_g, valids, H, W, drop_invalid_first=True)
    metrics['total_loss'] = loss.item()
    if sw is not None and sw.save_this:
        log_visuals(sw, rgbs, trajs_g, vis_g, valids, trajs_e0, preds_anim)
    return loss, metrics


def validate(model, sample, device, iters, sw):
    """Validation on one batch: zero-velocity initialisation, no gradient."""
    rgbs, trajs_g, vis_g, valids = split_track(sample, device)
    H, W = rgbs.shape[-2:]
    trajs_e0 = trajs_g[:, 0:1].expand_as(trajs_g)
    preds, preds_anim, _, loss = model(trajs_e0, rgbs, iters=iters, trajs_g=trajs_g, vis_g=vis_g,
                                       valids=valids)
    metrics = paper_metrics(preds[-1].float(), trajs_g, valids, H, W, drop_invalid_first=True)
    metrics['total_loss'] = loss.item()
    if sw is not None and sw.save_this:
        log_visuals(sw, rgbs, trajs_g, vis_g, valids, None, preds_anim)
    return metrics


def update_pools(pools, metrics, sw):
    """Add a step's metrics to the running pools; log the raw loss and the pool means."""
    if sw is not None:
        sw.summ_scalar('total_loss', metrics['total_loss'])
    for key, pool in pools.items():
        if key in metrics:
            pool.update([metrics[key]])
        if sw is not None:
            sw.summ_scalar(f'_/{key}', pool.mean())


if __name__ == '__main__':
    Fire(main)
