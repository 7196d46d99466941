"""The training loop that train.py and finetune_highres.py share, in plain phases.

``run(cfg, samples)``: build (``Trainer``: model, optimizer and schedule, restore, DDP,
autocast), then the steps (``train_steps``: one optimizer step, the step line, the
periodic checkpoint and validation), then the final save.

No finished step is lost. Ctrl-C and SIGTERM (raised as KeyboardInterrupt by
``utils.interrupts``) and errors met on the way (unreadable data, a worker that died, out
of memory) save a checkpoint of the last finished step before they go on. A stop signal
takes effect between steps, or while a step waits for data: each step runs ``deferred``, so
a step in progress finishes (weights, optimizer and schedule move together, and no library
is cut while it holds a lock), and so does a checkpoint being written. Two stops save
nothing: a NaN loss (the weights that gave it are suspect) and a checkpoint that cannot be
written.

``run(cfg, samples, on_save=fn)`` calls ``fn(step, folder)`` on rank 0 after each
checkpoint the steps or the final save write, between steps (outside the step line's time,
and open to a stop signal): to evaluate the checkpoints of a run as it goes.
"""

import contextlib
import os
import time

import torch

import saverloader
from nets.pips2 import Pips
from nets.precision import training_autocast
from saverloader import CheckpointError
from training.logger import Logger
from training.step import train_forward, validate
from utils import interrupts
from utils.errors import PipsError, SettingsError
from utils.metrics import SimplePool
from utils.runs import count_parameters


def make_optimizer(model, cfg):
    """The original's AdamW and, with --use_scheduler, its one-cycle schedule (10% warm-up,
    linear annealing, 100 spare steps); the scheduler is None without it."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-6, eps=1e-8)
    if not cfg.use_scheduler:
        return optimizer, None
    return optimizer, torch.optim.lr_scheduler.OneCycleLR(optimizer, cfg.lr, cfg.max_iters + 100, pct_start=0.1,
                                                          cycle_momentum=False, anneal_strategy='linear')


class NonFiniteLoss(PipsError):
    """The loss of a training step is NaN or infinite (nothing of that step is saved)."""


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
            raise SettingsError(f'the restored step {self.start_step} is not below max_iters={cfg.max_iters}, so '
                                'there is nothing to train; pass --load_step=False to fine-tune with a fresh step '
                                'count, or raise --max_iters')
        self.bare_model = model
        self.model = model
        if cfg.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[cfg.device] if cfg.device.startswith('cuda') else None)
        self.autocast, self.scaler = training_autocast(cfg.amp, cfg.device)  # checked by setup
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
        step = saverloader.load(path, model, optimizer=self.optimizer if resume else None,
                                scheduler=self.scheduler if resume else None, ignore_load=cfg.ignore_load)
        return step if cfg.load_step else 0

    def next_batch(self, step):
        """A new batch, or with --cache_len one of the cached ones."""
        cfg = self.cfg
        if self.cache is None:
            return self.read()
        if len(self.cache) < cfg.cache_len or (cfg.cache_freq > 0 and step % cfg.cache_freq == 0):
            self.cache.update([self.read()])
            if cfg.is_main:
                print('cached a new sample into sample_pool (len %d)' % len(self.cache))
        return self.cache.sample()

    def read(self):
        """The stream's next batch; a stop signal cuts the wait for it."""
        with interrupts.interruptible():
            return self.samples.next()

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
                raise NonFiniteLoss(f'nan in loss at step {step}; quitting (nothing saved for this step)')
            loss = loss / cfg.grad_acc
            with contextlib.nullcontext() if last or cfg.world == 1 else self.model.no_sync():
                self.scaler.scale(loss).backward()
        self.update(step)
        return loss, metrics, read_time

    def update(self, step):
        """Apply the accumulated gradients: the weights, optimizer and schedule of ``step``."""
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.done_step = step

    def validation_batch(self):
        """As the original: one of the cached batches with --cache_len (none is added), else
        the next batch of the training stream."""
        if self.cache is not None and len(self.cache):
            return self.cache.sample()
        return self.read()

    def validate(self, step, sw):
        """Validation metrics on a fresh batch (rank 0 only)."""
        self.bare_model.eval()
        with torch.no_grad(), self.autocast():
            metrics = validate(self.bare_model, self.validation_batch(), self.cfg, sw)
        self.bare_model.train()
        return metrics

    def save(self, step):
        """Write the checkpoint of ``step`` (rank 0; once per step), whole even if a stop
        signal comes meanwhile; returns whether it wrote one."""
        wrote = self.cfg.is_main and step != self.saved_step
        if wrote:
            with interrupts.deferred():
                saverloader.save(self.run_dir, self.optimizer, self.bare_model, step, scheduler=self.scheduler,
                                 keep_latest=self.cfg.keep_latest)
        self.saved_step = step
        return wrote

    @property
    def run_dir(self):
        return os.path.join(self.cfg.ckpt_dir, self.cfg.name)


def train_steps(cfg, trainer, logger, on_save=None):
    """The steps after the restored one up to --max_iters, saving and validating; each whole
    but for its waits for data (see the module docstring); ``on_save`` after each save."""
    for step in range(trainer.start_step + 1, cfg.max_iters + 1):
        with interrupts.deferred():
            saved = train_one(cfg, trainer, logger, step)
        if saved and on_save is not None:
            on_save(step, trainer.run_dir)


def train_one(cfg, trainer, logger, step):
    """Step ``step``: the optimizer step, its checkpoint and validation when due, the step line;
    returns whether it wrote a checkpoint."""
    step_start = time.time()
    sw = logger.summ_writer('t', step)
    if sw is not None:
        sw.summ_scalar('_/current_lr', trainer.optimizer.param_groups[0]['lr'])
    loss, metrics, read_time = trainer.train_step(step, sw)
    logger.update('t', metrics, sw)
    saved = step % cfg.save_freq == 0 and trainer.save(step)
    if cfg.is_main and cfg.val_freq and step % cfg.val_freq == 0:
        sw_v = logger.summ_writer('v', step)
        logger.update('v', trainer.validate(step, sw_v), sw_v)
    logger.step_line(step, read_time, time.time() - step_start, loss.item())
    return saved


def save_before_stopping(trainer, logger, exc):
    """Save the last finished step before ``exc`` stops the run; returns what to say about it."""
    step = trainer.done_step
    if step != trainer.saved_step:
        cause = 'interrupted' if interrupts.is_interruption(exc) else f'stopped by an error ({exc})'
        logger.print(f'{cause} after step {step}; saving a checkpoint first')
    trainer.save(step)
    if step == trainer.start_step:
        return 'no step was finished, so nothing new was saved'
    return f'step {step} is saved in {trainer.run_dir}; resume with --init_dir={trainer.cfg.name}'


def run(cfg, samples, on_save=None):
    """Train (see the module docstring): build, loop, save at the end or on a stop;
    ``on_save(step, folder)`` after each checkpoint written (not a stop's)."""
    trainer = Trainer(cfg, samples)
    logger = Logger(cfg)
    trainer.model.train()
    try:
        train_steps(cfg, trainer, logger, on_save)
    except (NonFiniteLoss, CheckpointError):
        raise  # nothing worth saving, or nothing can be saved
    except (KeyboardInterrupt, Exception) as exc:
        saved = save_before_stopping(trainer, logger, exc)
        if interrupts.is_interruption(exc):
            raise KeyboardInterrupt(saved) from None
        raise
    finally:
        logger.close()
    if trainer.save(trainer.done_step) and on_save is not None:
        on_save(trainer.done_step, trainer.run_dir)
    if cfg.world > 1:  # every rank must end with the same weights
        checksum = sum(p.detach().double().sum().item() for p in trainer.bare_model.parameters())
        print(f'rank {cfg.rank}: weights checksum {checksum:.10f}', flush=True)
