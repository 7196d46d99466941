"""Training PIPs++: the original recipe, on one GPU, many GPUs (torchrun) or the CPU.

    cfg = setup(Config.from_args(args), quick_settings)
    run(cfg, export_samples(cfg, dataset_location=..., dataset_version=...))

Modules: ``config`` (``Config``, ``setup``: ranks, seeds, the run name), ``data`` (the
batch streams of the two recipes), ``step`` (one step's arithmetic: initial tracks, the
data-parallel loss, validation), ``loop`` (``Trainer`` and ``run``) and ``logger``
(tensorboard, pools, the step line).
"""

from training.config import Config, setup
from training.data import SampleStream, export_samples, raw_samples
from training.loop import Trainer, run

__all__ = ['Config', 'SampleStream', 'Trainer', 'export_samples', 'raw_samples', 'run', 'setup']
