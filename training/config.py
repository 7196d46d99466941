"""A training run's settings, and the setup that turns script arguments into them."""

import dataclasses

import numpy as np
import torch

from nets.precision import training_autocast
from utils import runs
from utils.distributed import Ranks
from utils.errors import SettingsError


@dataclasses.dataclass
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
    ranks: Ranks = dataclasses.field(default_factory=Ranks)  # set by setup()
    name: str = ''  # set by setup()

    @classmethod
    def from_args(cls, args, **extra):
        """The Config of a script's arguments (the ``locals()`` of its main) and ``extra``."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in args.items() if key in names}, **extra)

    @property
    def rank(self):
        return self.ranks.rank

    @property
    def world(self):
        return self.ranks.world

    @property
    def is_main(self):
        return self.ranks.is_main


def setup(cfg, quick_settings):
    """Apply --quick, check the crop, join torchrun's process group, check --amp there,
    seed, name the run."""
    if cfg.quick:  # the original's debug settings
        cfg = dataclasses.replace(cfg, **quick_settings)
    crop_size = tuple(int(c) for c in cfg.crop_size)
    if crop_size[0] % 32 or crop_size[1] % 32:
        raise SettingsError(f'crop_size {crop_size} must be multiples of 32')
    ranks = Ranks.start(cfg.device)
    autocast_of(cfg.amp, ranks.device)
    if cfg.seed is not None:
        torch.manual_seed(cfg.seed + ranks.rank)
        np.random.seed(cfg.seed + ranks.rank)
    name = ranks.broadcast(run_name(cfg))  # all ranks use rank 0's name (it holds a timestamp)
    cfg = dataclasses.replace(cfg, crop_size=crop_size, ranks=ranks, device=ranks.device, name=name)
    if cfg.is_main:
        print('model_name', name)
    return cfg


def autocast_of(amp, device):
    """``nets.precision.training_autocast`` of --amp on ``device``; SettingsError when the
    device cannot train in it."""
    try:
        return training_autocast(amp, device)
    except ValueError as exc:
        raise SettingsError(f'--{exc}') from exc


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
    return runs.run_name(name, cfg.exp_name)
