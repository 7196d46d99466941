"""A training run's settings, and the setup that turns script arguments into them.

Every value is checked when the Config is made (``check``), and ``setup`` checks the
device, the precision and the output folders (``--ckpt_dir``, ``--log_dir``: written to
and swept of the temporaries of killed runs) before any data is read or any step runs.
"""

import dataclasses
import os

import numpy as np
import torch

from nets.pips2 import MIN_SIZE
from nets.precision import training_autocast
from utils import runs
from utils.checks import check_choice, check_count, check_flag, check_positive, check_size
from utils.distributed import Ranks
from utils.errors import SettingsError
from utils.files import check_writable, sweep_temporaries

CROP_MULTIPLE = 32  # crop sides must divide by the coarsest feature level's stride
AMP_CHOICES = ('', 'fp32', 'bf16', 'fp16')
COUNTS = dict(B=1, S=2, N=1, stride=1, iters=1, cache_len=0, cache_freq=0, n_pool=1, grad_acc=1, max_iters=1,
              log_freq=1, val_freq=0, save_freq=1, keep_latest=1, num_workers=0)  # the least each may be
FLAGS = ('use_augs', 'shuffle', 'quick', 'use_scheduler', 'load_optimizer', 'load_step')


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

    def __post_init__(self):
        self.check()

    def check(self):
        """Raise SettingsError naming the first value that cannot work; normalise the rest."""
        for name, minimum in COUNTS.items():
            check_count(f'--{name}', getattr(self, name), minimum)
        for name in FLAGS:
            check_flag(f'--{name}', getattr(self, name))
        self.crop_size = check_size('--crop_size', self.crop_size, minimum=MIN_SIZE, multiple=CROP_MULTIPLE)
        check_positive('--lr', self.lr)
        check_positive('clip_grad', self.clip_grad)
        check_choice('--amp', self.amp, AMP_CHOICES)
        if self.seed is not None:
            check_count('--seed', self.seed, minimum=0)
        if isinstance(self.ignore_load, str):  # --ignore_load=corr: one substring, not its letters
            self.ignore_load = [self.ignore_load]

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
    """Apply --quick, join torchrun's process group, check the precision and the output
    folders, seed, name the run."""
    if cfg.quick:  # the original's debug settings
        cfg = dataclasses.replace(cfg, **quick_settings)
    ranks = Ranks.start(cfg.device)
    try:
        training_autocast(cfg.amp, ranks.device)
    except ValueError as exc:
        raise SettingsError(f'--{exc}') from exc
    if ranks.is_main:
        prepare_outputs(cfg)
    if cfg.seed is not None:
        torch.manual_seed(cfg.seed + ranks.rank)
        np.random.seed(cfg.seed + ranks.rank)
    name = ranks.broadcast(run_name(cfg))  # all ranks use rank 0's name (it holds a timestamp)
    cfg = dataclasses.replace(cfg, ranks=ranks, device=ranks.device, name=name)
    if cfg.is_main:
        print('model_name', name)
    return cfg


def prepare_outputs(cfg):
    """Check that checkpoints and logs can be written (before step 1, not at the first save)
    and sweep the temporaries that killed runs left among the checkpoints."""
    check_writable(cfg.ckpt_dir, '--ckpt_dir')
    check_writable(cfg.log_dir, '--log_dir')
    run_dirs = [entry.path for entry in os.scandir(cfg.ckpt_dir) if entry.is_dir()]
    for folder in [cfg.ckpt_dir, *run_dirs]:
        sweep_temporaries(folder)


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
