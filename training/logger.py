"""What a training run reports: tensorboard writers, running pools and the printed step line."""

import os

from tensorboardX import SummaryWriter

from utils.metrics import SimplePool
from utils.vis import Summ_writer

POOL_NAMES = ['total_loss', 'd_1', 'd_2', 'd_4', 'd_8', 'd_16', 'd_avg', 'survival', 'median_l2']


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
