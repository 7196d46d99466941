"""Batches for the training loop: the datasets of the two recipes, as endless sharded streams.

A stream's ``next()`` gives a dict of ``rgbs`` B,S,3,H,W, ``trajs`` B,S,N,2, ``visibs``
and ``valids`` B,S,N. ``export_samples`` reads clips made by ``export_mp4_dataset.py``
(train.py); ``raw_samples`` cuts and augments clips from raw PointOdyssey sequences at
every step (finetune_highres.py).

Loader workers ignore SIGINT and SIGTERM (``utils.interrupts``): a stop signal sent to the
whole process group reaches the main process alone, which saves and shuts the workers
down. A dataset error met in a worker reaches the main process as it was raised (one line
naming the file), not wrapped in the worker's traceback.
"""

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate
from torch.utils.data.distributed import DistributedSampler

from datasets.exportdataset import ExportDataset
from datasets.pointodysseydataset import PointOdysseyDataset
from utils import interrupts
from utils.checks import check_count
from utils.errors import PipsError, SettingsError

REDRAW_LIMIT = 100  # consecutive batches holding a refused clip before giving up
FINETUNE_STRIDES = (1, 2)  # frame strides of the fine-tuning clips


class UnusableData(PipsError):
    """The data keeps giving batches that cannot be used."""


class SampleStream:
    """Endless batches of a dataset, sharded across ranks and reshuffled every epoch.

    ``unpack`` turns a loader batch into the loop's batch dict, or None when the batch
    must be drawn again.
    """

    def __init__(self, dataset, cfg, unpack):
        if len(dataset) < cfg.B * cfg.world:
            raise SettingsError(f'{len(dataset)} clips cannot fill a batch of {cfg.B} on {cfg.world} process(es)')
        self.unpack = unpack
        self.sampler = None
        if cfg.world > 1:
            self.sampler = DistributedSampler(dataset, num_replicas=cfg.world, rank=cfg.rank, shuffle=cfg.shuffle)
        self.loader = DataLoader(CarryErrors(dataset), batch_size=cfg.B, shuffle=cfg.shuffle and self.sampler is None,
                                 sampler=self.sampler, num_workers=cfg.num_workers, drop_last=True,
                                 collate_fn=collate_or_error, worker_init_fn=start_worker,
                                 persistent_workers=cfg.num_workers > 0)
        self.epoch = 0
        self.iterator = self.start_epoch()

    def start_epoch(self):
        """A new pass over the loader (its workers start with the stop signals ignored)."""
        with interrupts.starting_helpers():
            return iter(self.loader)

    def next(self):
        """The next usable batch (drawing again while ``unpack`` refuses one)."""
        for _ in range(REDRAW_LIMIT):
            batch = self.unpack(self.next_raw())
            if batch is not None:
                return batch
        raise UnusableData(f'{REDRAW_LIMIT} batches in a row held a refused clip; check the data and --crop_size, '
                           '--S, --N')

    def next_raw(self):
        try:
            batch = next(self.iterator)
        except StopIteration:
            self.epoch += 1
            if self.sampler is not None:
                self.sampler.set_epoch(self.epoch)
            self.iterator = self.start_epoch()
            batch = next(self.iterator)
        if isinstance(batch, PipsError):
            raise batch
        return batch


class CarryErrors(torch.utils.data.Dataset):
    """``dataset`` whose errors (PipsError) come back as items, to be raised by the main process."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        try:
            return self.dataset[index]
        except PipsError as exc:
            return exc


def collate_or_error(items):
    """The batch of ``items``, or the first error among them."""
    errors = [item for item in items if isinstance(item, PipsError)]
    return errors[0] if errors else default_collate(items)


def start_worker(worker_id):
    """A loader worker's start: stop signals ignored, its own numpy seed."""
    interrupts.ignore_in_helper()
    np.random.seed((torch.initial_seed() + worker_id) % 2 ** 32)


def unpack_export(sample):
    """An export batch (``track_g`` B,S,N,4: x, y, visible, valid) as the loop's batch."""
    track_g = sample['track_g']
    return {'rgbs': sample['rgbs'], 'trajs': track_g[..., :2], 'visibs': track_g[..., 2],
            'valids': track_g[..., 3]}


def unpack_usable(batch):
    """A raw-frame loader batch as the loop's batch, or None when a clip in it was refused."""
    sample, usable = batch
    return sample if bool(usable.all()) else None


def export_samples(cfg, *, dataset_location, dataset_version, clip_N=None):
    """The stream of exported clips (``<dataset_location>/<dataset_version>/<step>/``);
    ``clip_N`` tracks per clip (None: all the clips hold)."""
    if clip_N is not None:
        check_count('--clip_N', clip_N, minimum=1)
    dataset = ExportDataset(dataset_location=dataset_location, dataset_version=dataset_version, S=cfg.S,
                            N=clip_N, crop_size=cfg.crop_size, use_augs=cfg.use_augs)
    return SampleStream(dataset, cfg, unpack_export)


def raw_samples(cfg, *, dataset_location):
    """The stream of clips cut from ``<dataset_location>/train/<sequence>/`` at frame strides
    1 and 2, filling all N tracks, augmented afresh at every step."""
    dataset = PointOdysseyDataset(dataset_location=dataset_location, dset='train', S=cfg.S, N=cfg.N,
                                  strides=FINETUNE_STRIDES, use_augs=cfg.use_augs, crop_size=cfg.crop_size,
                                  quick=cfg.quick, req_full=True, verbose=False)
    if not len(dataset):
        raise SettingsError(f'{dataset_location}/train: no sequence has the {cfg.S} frames of one clip (--S)')
    return SampleStream(dataset, cfg, unpack_usable)
