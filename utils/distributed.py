"""Splitting work over the processes ``torchrun`` starts (one machine or many).

Started by ``torchrun`` (``WORLD_SIZE`` > 1), ``Ranks.start`` joins the process group:
NCCL when the device is CUDA (each process on ``cuda:<LOCAL_RANK>``), Gloo on the CPU.
Started plainly, it is a single rank and nothing is joined. Work items (videos) go to
ranks round robin, so each is done exactly once; rank 0 gathers the per-item results.
Only Python objects are exchanged, never tensors.
"""

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from utils.errors import SettingsError

# Ranks finish their share at different times and wait for the others in the final
# gather: allow long waits (a slow rank may still be tracking a long video).
GATHER_TIMEOUT = datetime.timedelta(hours=12)


def default_device(device=None):
    """``device`` as given (checked), else CUDA when available, else the CPU: every script's
    default. A device that is not there raises ``SettingsError``."""
    if not device:
        return 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        parsed = torch.device(str(device))
    except RuntimeError as exc:
        raise SettingsError(f'--device={device}: not a device name (cpu, cuda, cuda:1, ...)') from exc
    if parsed.type == 'cuda' and not torch.cuda.is_available():
        raise SettingsError(f'--device={device}: no CUDA device is available here (use --device=cpu)')
    if parsed.type == 'cuda' and (parsed.index or 0) >= torch.cuda.device_count():
        raise SettingsError(f'--device={device}: this machine has {torch.cuda.device_count()} CUDA device(s)')
    if parsed.type not in ('cpu', 'cuda'):
        raise SettingsError(f'--device={device}: only cpu and cuda are supported')
    return str(device)


@dataclass
class Ranks:
    """This process's place among the ranks: ``rank`` of ``world``, on ``device``."""

    rank: int = 0
    world: int = 1
    device: str = 'cpu'

    @classmethod
    def start(cls, device=None):
        """Join the process group when started by torchrun; pick this rank's device.

        ``device`` None or 'cuda' means CUDA (when available) on this process's local GPU.
        """
        world = int(os.environ.get('WORLD_SIZE', '1'))
        local_rank = int(os.environ.get('LOCAL_RANK', '0'))
        device = default_device(device)
        if device == 'cuda':
            device = f'cuda:{local_rank}'
        if device.startswith('cuda'):
            torch.cuda.set_device(device)
        if world == 1:
            return cls(0, 1, device)
        if not dist.is_initialized():
            dist.init_process_group('nccl' if device.startswith('cuda') else 'gloo', timeout=GATHER_TIMEOUT)
        return cls(dist.get_rank(), dist.get_world_size(), device)

    @property
    def is_main(self):
        return self.rank == 0

    def share(self, items):
        """This rank's items: every ``world``-th one from position ``rank``."""
        return list(items)[self.rank::self.world]

    def gather(self, obj):
        """Rank 0 gets [obj of rank 0, obj of rank 1, ...]; the other ranks get None."""
        if self.world == 1:
            return [obj]
        gathered = [None] * self.world if self.is_main else None
        dist.gather_object(obj, gathered, dst=0)
        return gathered

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if self.world == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self):
        if self.world > 1:
            on_gpu = self.device.startswith('cuda')
            dist.barrier(device_ids=[torch.cuda.current_device()] if on_gpu else None)

    def stop(self):
        """Leave the process group (if one was joined)."""
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
