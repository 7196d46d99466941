"""The training loop that train.py and finetune_highres.py share.

The two scripts differ only in their data and defaults: each builds a dataset and an
``unpack`` function for its batches, and hands them to ``run``. The phases, in order:

- ``setup``: quick mode, torchrun's process group, seeds, the run name;
- ``Trainer``: model, optimizer, schedule, restore, DDP and AMP (the build), one training
  step (gradient accumulation, NaN stop, clipping), validation and the one ``save``;
- ``Logger``: tensorboard writers, running pools and the printed step line;
- ``run``: the loop, with Ctrl-C / SIGTERM saving first.
"""

import contextlib
import datetime
import os
import signal
import sys
import time
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
import torch.distributed as dist
from tensorboardX import SummaryWriter
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

import saverloader
from nets.pips2 import Pips, masked_error_sums, weigh_iterations
from utils.metrics import SimplePool, paper_metrics
from utils.misc import count_parameters, fail
from utils.vis import Summ_writer, preprocess_color

POOL_NAMES = ['total_loss', 'd_1', 'd_2', 'd_4', 'd_8', 'd_16', 'd_avg', 'survival', 'median_l2']
REDRAW_LIMIT = 100  # consecutive batches holding a refused clip before giving up


@dataclass
class Config:
    """A run's settings: the script arguments the loop uses (see ``train.py --help``)."""

    B: int
    S: int
    N: int
    stride: int
    iters: int
    crop_size: tuple
    use_augs: bool
    shuffle: bool
    cache_len: int
    cache_freq: int
    n_pool: int
    quick: bool
    lr: float
    grad_acc: int
    use_scheduler: bool
    max_iters: int
    log_dir: str
    log_freq: int
    val_freq: int
    ckpt_dir: str
    save_freq: int
    keep_latest: int
    init_dir: str
    load_optimizer: bool
    load_step: bool
    ignore_load: list | None
    device: str | None
    amp: str
    num_workers: int
    exp_name: str
    seed: int | None
    clip_grad: float = 5.0  # the largest gradient norm
    rank: int = 0  # the rest is set by setup()
    world: int = 1
    name: str = ''

    @classmethod
    def from_args(cls, args, **extra):
        """The Config of a script's arguments (the ``locals()`` of its main) and ``extra``."""
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in args.items() if key in names}, **extra)

    @property
    def is_main(self):
        return self.rank == 0


def setup(cfg, quick_settings):
    """Apply --quick, check the crop, join torchrun's process group, seed, name the run."""
    if cfg.quick:  # the original's debug settings
        cfg = replace(cfg, **quick_settings)
    crop_size = tuple(int(c) for c in cfg.crop_size)
    if crop_size[0] % 32 or crop_size[1] % 32:
        fail(f'crop_size {crop_size} must be multiples of 32')
    rank, world, device = setup_distributed(cfg.device)
    if cfg.seed is not None:
        torch.manual_seed(cfg.seed + rank)
        np.random.seed(cfg.seed + rank)
    name = run_name(cfg)
    if world > 1:  # all ranks use rank 0's name (it holds a timestamp)
        shared = [name]
        dist.broadcast_object_list(shared, src=0)
        name = shared[0]
    cfg = replace(cfg, crop_size=crop_size, rank=rank, world=world, device=device, name=name)
    if cfg.is_main:
        print('model_name', name)
    return cfg


def run_name(cfg):
    """The original's descriptive run name, e.g. 2_36_64_i6_5e-4s_A_aa01_153012."""
    name = f'{cfg.B}_{cfg.S}_{cfg.N}_i{cfg.iters}'
    if cfg.grad_acc > 1:
        name += f'x{cfg.grad_acc}'
    lr_text = '%.1e' % cfg.lr  # 5.0e-04 -> 5e-4
    name += '_' + lr_text[0] + lr_text[3:5] + lr_text[-1]
    if cfg.use_scheduler:
        name += 's'
    if cfg.cache_len:
        name += f'_c{cfg.cache_len}_f{cfg.cache_freq}'
    if cfg.use_augs:
        name += '_A'
    return f'{name}_{cfg.exp_name}_{datetime.datetime.now().strftime("%H%M%S")}'


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
        fail(f"--amp must be '', 'bf16' or 'fp16'; got {amp!r}")
    if not device.startswith('cuda'):
        fail('--amp needs a CUDA device')
    dtype = torch.bfloat16 if amp == 'bf16' else torch.float16
    return (lambda: torch.autocast('cuda', dtype=dtype)), torch.amp.GradScaler(enabled=(amp == 'fp16'))


class SampleStream:
    """Endless batches of a dataset, sharded across ranks and reshuffled every epoch.

    ``unpack`` turns a loader batch into a dict of ``rgbs`` B,S,3,H,W, ``trajs`` B,S,N,2,
    ``visibs`` and ``valids`` B,S,N, or None when the batch must be drawn again.
    """

    def __init__(self, dataset, cfg, unpack):
        if len(dataset) < cfg.B * cfg.world:
            fail(f'{len(dataset)} clips cannot fill a batch of {cfg.B} on {cfg.world} process(es)')
        self.unpack = unpack
        self.sampler = None
        if cfg.world > 1:
            self.sampler = DistributedSampler(dataset, num_replicas=cfg.world, rank=cfg.rank, shuffle=cfg.shuffle)
        self.loader = DataLoader(dataset, batch_size=cfg.B, shuffle=cfg.shuffle and self.sampler is None,
                                 sampler=self.sampler, num_workers=cfg.num_workers, drop_last=True,
                                 worker_init_fn=seed_worker, persistent_workers=cfg.num_workers > 0)
        self.epoch = 0
        self.iterator = iter(self.loader)

    def next(self):
        """The next usable batch (drawing again while ``unpack`` refuses one)."""
        for _ in range(REDRAW_LIMIT):
            batch = self.unpack(self.next_raw())
            if batch is not None:
                return batch
        fail(f'{REDRAW_LIMIT} batches in a row held a refused clip; check the data and --crop_size, --S, --N')

    def next_raw(self):
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


def make_optimizer(model, cfg):
    """The original's AdamW and, with --use_scheduler, its one-cycle schedule (10% warm-up,
    linear annealing, 100 spare steps); the scheduler is None without it."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-6, eps=1e-8)
    if not cfg.use_scheduler:
        return optimizer, None
    return optimizer, torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, cfg.max_iters + 100, pct_start=0.1,
                                                          cycle_momentum=False, anneal_strategy='linear')


class NonFiniteLoss(Exception):
    """The loss of a training step is NaN or infinite."""


class Trainer:
    """A run's model, optimizer, schedule and batches; one training step; one save."""

    def __init__(self, cfg, samples):
        self.cfg, self.samples = cfg, samples
        model = Pips(stride=cfg.stride).to(cfg.device)
        model.norm.requires_grad_(False)  # the unused GroupNorm: no gradient, so DDP need not wait for one
        self.optimizer, self.scheduler = make_optimizer(model, cfg)
        if cfg.is_main:
            count_parameters(model)
        self.start_step = self.done_step = self.saved_step = self.restore(model)
        if self.start_step >= cfg.max_iters:
            fail(f'the restored step {self.start_step} is not below max_iters={cfg.max_iters}, so there is '
                 'nothing to train; pass --load_step=False to fine-tune with a fresh step count, or raise '
                 '--max_iters')
        self.bare_model = model
        self.model = model
        if cfg.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[cfg.device] if cfg.device.startswith('cuda') else None)
        self.autocast, self.scaler = amp_context(cfg.amp, cfg.device)
        self.cache = SimplePool(cfg.cache_len) if cfg.cache_len else None

    def restore(self, model):
        """Load --init_dir (a run under ckpt_dir, or a folder path); return the starting step.

        As in the original: with --load_step the step, and with --load_optimizer too the
        optimizer and schedule, continue; --load_step=False loads the model only.
        """
        cfg = self.cfg
        if not cfg.init_dir:
            return 0
        path = cfg.init_dir if os.path.isdir(cfg.init_dir) else os.path.join(cfg.ckpt_dir, cfg.init_dir)
        resume = cfg.load_step and cfg.load_optimizer
        try:
            step = saverloader.load(path, model, optimizer=self.optimizer if resume else None,
                                    scheduler=self.scheduler if resume else None, ignore_load=cfg.ignore_load)
        except saverloader.CheckpointError as exc:
            fail(str(exc))
        return step if cfg.load_step else 0

    def next_batch(self, step):
        """A new batch, or with --cache_len one of the cached ones."""
        cfg = self.cfg
        if self.cache is None:
            return self.samples.next()
        if len(self.cache) < cfg.cache_len or (cfg.cache_freq > 0 and step % cfg.cache_freq == 0):
            self.cache.update([self.samples.next()])
            if cfg.is_main:
                print('cached a new sample into sample_pool (len %d)' % len(self.cache))
        return self.cache.sample()

    def train_step(self, step, sw):
        """One optimizer step over --grad_acc batches: (the last loss / grad_acc, its metrics,
        seconds spent reading data). Raises NonFiniteLoss before touching the weights."""
        cfg = self.cfg
        read_time = 0.0
        for micro_step in range(cfg.grad_acc):
            read_start = time.time()
            batch = self.next_batch(step)
            read_time += time.time() - read_start
            last = micro_step == cfg.grad_acc - 1
            with self.autocast():
                loss, metrics = train_forward(self.model, batch, cfg, sw if last else None)
            if not torch.isfinite(loss):
                raise NonFiniteLoss(step)
            loss = loss / cfg.grad_acc
            with contextlib.nullcontext() if last or cfg.world == 1 else self.model.no_sync():
                self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.done_step = step
        return loss, metrics, read_time

    def validation_batch(self):
        """As the original: one of the cached batches with --cache_len (none is added), else
        the next batch of the training stream."""
        if self.cache is not None and len(self.cache):
            return self.cache.sample()
        return self.samples.next()

    def validate(self, step, sw):
        """Validation metrics on a fresh batch (rank 0 only)."""
        self.bare_model.eval()
        with torch.no_grad(), self.autocast():
            metrics = validate(self.bare_model, self.validation_batch(), self.cfg, sw)
        self.bare_model.train()
        return metrics

    def save(self, step):
        """Write the checkpoint of ``step`` (rank 0; once per step)."""
        if self.cfg.is_main and step != self.saved_step:
            saverloader.save(os.path.join(self.cfg.ckpt_dir, self.cfg.name), self.optimizer, self.bare_model,
                             step, scheduler=self.scheduler, keep_latest=self.cfg.keep_latest)
        self.saved_step = step


class Logger:
    """Rank 0's tensorboard writers ('t' training, 'v' validation), running pools of the
    metrics and the printed step line; other ranks keep quiet."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.writers = {}
        if cfg.is_main:
            splits = ('t', 'v') if cfg.val_freq else ('t',)
            self.writers = {split: SummaryWriter(os.path.join(cfg.log_dir, cfg.name, split), max_queue=10,
                                                 flush_secs=60) for split in splits}
        self.pools = {split: {key: SimplePool(cfg.n_pool) for key in POOL_NAMES} for split in ('t', 'v')}

    def print(self, *args):
        if self.cfg.is_main:
            print(*args, flush=True)

    def summ_writer(self, split, step):
        """The step's Summ_writer for ``split``, or None on other ranks."""
        if split not in self.writers:
            return None
        return Summ_writer(writer=self.writers[split], global_step=step, log_freq=self.cfg.log_freq,
                           fps=min(self.cfg.S, 8), scalar_freq=max(self.cfg.log_freq // 4, 1), just_gif=True)

    def update(self, split, metrics, sw):
        """Add a step's metrics to the pools; log the raw loss and the pool means."""
        if sw is not None:
            sw.summ_scalar('total_loss', metrics['total_loss'])
        for key, pool in self.pools[split].items():
            if key in metrics:
                pool.update([metrics[key]])
            if sw is not None:
                sw.summ_scalar(f'_/{key}', pool.mean())

    def step_line(self, step, read_time, step_time, loss):
        pools_t, pools_v = self.pools['t'], self.pools['v']
        self.print('%s; step %06d/%d; rtime %.2f; itime %.2f; loss %.3f; loss_t %.2f; d_t %.1f; d_v %.1f' % (
            self.cfg.name, step, self.cfg.max_iters, read_time, step_time, loss, pools_t['total_loss'].mean(),
            pools_t['d_avg'].mean(), pools_v['d_avg'].mean()))

    def close(self):
        for writer in self.writers.values():
            writer.close()


def raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt


def train_steps(cfg, trainer, logger):
    """The steps after the restored one up to --max_iters, saving and validating."""
    for step in range(trainer.start_step + 1, cfg.max_iters + 1):
        step_start = time.time()
        sw = logger.summ_writer('t', step)
        if sw is not None:
            sw.summ_scalar('_/current_lr', trainer.optimizer.param_groups[0]['lr'])
        loss, metrics, read_time = trainer.train_step(step, sw)
        logger.update('t', metrics, sw)
        if step % cfg.save_freq == 0:
            trainer.save(step)
        if cfg.is_main and cfg.val_freq and step % cfg.val_freq == 0:
            sw_v = logger.summ_writer('v', step)
            logger.update('v', trainer.validate(step, sw_v), sw_v)
        logger.step_line(step, read_time, time.time() - step_start, loss.item())


def run(cfg, samples):
    """Train (see the module docstring): build, loop, save at the end or on Ctrl-C."""
    trainer = Trainer(cfg, samples)
    logger = Logger(cfg)
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    trainer.model.train()
    try:
        train_steps(cfg, trainer, logger)
    except NonFiniteLoss as exc:
        logger.print(f'nan in loss at step {exc.args[0]}; quitting (nothing saved for this step)')
        cleanup(cfg.world)
        sys.exit(1)
    except KeyboardInterrupt:
        if trainer.done_step != trainer.saved_step:
            logger.print(f'interrupted after step {trainer.done_step}; saving a checkpoint first')
        trainer.save(trainer.done_step)
        cleanup(cfg.world)
        sys.exit(130)
    trainer.save(trainer.done_step)
    logger.close()
    if cfg.world > 1:  # every rank must end with the same weights
        checksum = sum(p.detach().double().sum().item() for p in trainer.bare_model.parameters())
        print(f'rank {cfg.rank}: weights checksum {checksum:.10f}', flush=True)
    cleanup(cfg.world)
