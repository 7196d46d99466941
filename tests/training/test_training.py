"""training/: the data-parallel loss against one process, batch redrawing, errors from loader workers."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import training
from datasets.common import DatasetError
from nets.pips2 import Pips, sequence_loss
from tests.fixtures.training import make_config
from training.data import UnusableData
from training.step import data_parallel_loss, validate
from utils.metrics import paper_metrics

WORLD = 2


def tiny_case():
    """A model and a batch of 2 whose samples hold very different numbers of valid entries."""
    torch.manual_seed(0)
    model = Pips()
    model.norm.requires_grad_(False)
    rgbs = torch.rand(2, 3, 3, 128, 128) * 255  # B,S,3,H,W
    trajs_g = torch.rand(2, 3, 4, 2) * 127  # B,S,N,2
    trajs_e0 = trajs_g[:, :1].expand_as(trajs_g) + torch.randn(2, 3, 4, 2) * 4
    valids = torch.ones(2, 3, 4)  # B,S,N
    valids[1, :, 1:] = 0  # the second sample: one valid track of four
    return model, rgbs, trajs_g, trajs_e0, valids


def loss_and_grads(model, loss):
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def rank_worker(rank, rendezvous, results):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{rendezvous}', rank=rank, world_size=WORLD)
    model, rgbs, trajs_g, trajs_e0, valids = tiny_case()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    mine = slice(rank, rank + 1)  # each rank gets one sample of the batch
    preds = ddp(trajs_e0[mine], rgbs[mine], iters=2)[0]
    loss = data_parallel_loss(preds[:-1], trajs_g[mine], valids[mine], WORLD)
    torch.save(loss_and_grads(model, loss), f'{results}{rank}.pt')
    dist.destroy_process_group()


def test_two_gloo_ranks_give_the_loss_and_gradients_of_one_process(tmp_path):
    mp.spawn(rank_worker, args=(str(tmp_path / 'rendezvous'), str(tmp_path / 'rank')), nprocs=WORLD)
    model, rgbs, trajs_g, trajs_e0, valids = tiny_case()
    # one process, the same batch; run sample by sample on one thread, as the ranks do, so
    # that the float rounding is the same and only the loss reduction is compared
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        per_sample = [model(trajs_e0[b:b + 1], rgbs[b:b + 1], iters=2)[0][:-1] for b in range(2)]
        preds = [torch.cat(iteration) for iteration in zip(*per_sample)]  # I of B,S,N,2
        loss_one, grads_one = loss_and_grads(model, sequence_loss(preds, trajs_g, valids))
    finally:
        torch.set_num_threads(threads)
    per_rank_means = [sequence_loss(p, trajs_g[b:b + 1], valids[b:b + 1]).item() for b, p in enumerate(per_sample)]
    assert abs(sum(per_rank_means) / 2 - loss_one.item()) > 0.03 * loss_one.item()  # what a per-rank mean gives
    scale = max(grad.abs().max().item() for grad in grads_one.values())
    for rank in range(WORLD):
        loss_ranks, grads_ranks = torch.load(tmp_path / f'rank{rank}.pt', weights_only=True)
        assert loss_ranks.item() == pytest.approx(loss_one.item(), rel=1e-6)
        assert grads_ranks.keys() == grads_one.keys()
        for name, grad in grads_one.items():
            torch.testing.assert_close(grads_ranks[name], grad, rtol=1e-5, atol=1e-6 * scale)


def test_data_parallel_loss_of_one_process_is_the_model_loss():
    model, rgbs, trajs_g, trajs_e0, valids = tiny_case()
    with torch.no_grad():
        preds, _, _, loss = model(trajs_e0, rgbs, iters=2, trajs_g=trajs_g, valids=valids)
    assert torch.equal(data_parallel_loss(preds[:-1], trajs_g, valids, 1), loss)


class FlakyClips(torch.utils.data.Dataset):
    """Clip i holds the value i; clips listed in ``refused`` come back unusable, and reading one
    listed in ``unreadable`` raises DatasetError naming its file."""

    def __init__(self, count, refused, unreadable=()):
        self.count, self.refused, self.unreadable = count, set(refused), set(unreadable)

    def __len__(self):
        return self.count

    def __getitem__(self, index):
        if index in self.unreadable:
            raise DatasetError(f'clips/{index:06d}/rgb_00003.jpg: missing or not a readable image')
        return {'value': torch.tensor(index)}, index not in self.refused


def stream_config(B, **changes):
    return make_config(B=B, S=8, N=8, use_augs=False, shuffle=False, **changes)


def test_a_dataset_error_in_a_loader_worker_arrives_as_it_was_raised():
    stream = training.SampleStream(FlakyClips(4, refused=[], unreadable=[3]), stream_config(B=2, num_workers=1),
                                   usable_only)
    assert stream.next()['value'].tolist() == [0, 1]
    with pytest.raises(DatasetError) as error:  # not wrapped in the worker's traceback
        stream.next()
    assert str(error.value) == 'clips/000003/rgb_00003.jpg: missing or not a readable image'


def usable_only(batch):
    sample, usable = batch
    return sample if bool(usable.all()) else None


def test_a_batch_holding_a_refused_clip_is_drawn_again():
    stream = training.SampleStream(FlakyClips(6, refused=[1, 4]), stream_config(B=2), usable_only)
    values = [stream.next()['value'].tolist() for _ in range(3)]
    assert values == [[2, 3], [2, 3], [2, 3]]  # [0, 1] and [4, 5] are redrawn, across epochs


def test_a_stream_of_refused_clips_stops_with_one_line():
    stream = training.SampleStream(FlakyClips(4, refused=[0, 3]), stream_config(B=2), usable_only)
    with pytest.raises(UnusableData, match='100 batches in a row held a refused clip'):
        stream.next()


def test_validation_keeps_points_invalid_at_frame_0_in_median_l2():
    model, rgbs, trajs_g, _, valids = tiny_case()
    valids[0, 0, 0] = 0  # valid later, not at frame 0
    batch = {'rgbs': rgbs, 'trajs': trajs_g, 'visibs': valids, 'valids': valids}
    cfg = stream_config(B=2)
    model.eval()
    with torch.no_grad():
        metrics = validate(model, batch, cfg, None)
        preds = model(trajs_g[:, :1].expand_as(trajs_g), rgbs, iters=2 * cfg.iters)[0]
    kept = paper_metrics(preds[-1], trajs_g, valids, 128, 128)['median_l2']
    dropped = paper_metrics(preds[-1], trajs_g, valids, 128, 128, drop_invalid_first=True)['median_l2']
    assert metrics['median_l2'] == pytest.approx(kept) and kept != pytest.approx(dropped)
