"""Evaluate PIPs++ on the PointOdyssey test set (full sequences, ~2k frames each).

    python test_on_pod.py --dataset_location=/data/pointodyssey   # holds test/<sequence>/

N=256 evenly spaced tracks per sequence that pass the original's filter are tracked from
frame 0 in windows of S frames, reading frames from disk as it goes, and the paper's
metrics are reported.
"""

import time

import torch
from fire import Fire

from datasets.common import DatasetError, read_rgb
from datasets.pointodysseydataset_fullseq import PointOdysseyDataset
from utils.evaluate import Evaluation, eval_run_name, evaluate_frame0
from utils.misc import count_parameters, default_device, fail, load_model


def main(B=1, S=128, N=256, stride=8, iters=16, image_size=(512, 896), shuffle=False, log_freq=99, max_iters=99,
         log_dir='./logs_test_on_pod', dataset_location='./pointodyssey', dset='test', init_dir='./reference_model',
         n_pool=1000, device=None, out_json=None):
    """The original's arguments, plus --device and --out_json=PATH. B must be 1;
    --shuffle is unused."""
    if B != 1:
        fail('B must be 1 (videos are tracked one at a time)')
    image_size = tuple(int(v) for v in image_size)
    device = default_device(device)
    try:
        dataset = PointOdysseyDataset(dataset_location, dset=dset, N=N)
    except DatasetError as exc:
        fail(str(exc))
    total = min(max_iters, len(dataset)) if max_iters else len(dataset)
    model_name = eval_run_name(B, S, iters, 'pod01')
    print('model_name', model_name)
    model = load_model(init_dir, device, stride)
    count_parameters(model)
    evaluation = Evaluation(model_name, log_dir, total, n_pool, log_freq, out_json)
    try:
        for index in range(total):
            start = time.time()
            sample = dataset[index]
            read_time = time.time() - start
            if sample['trajs'].shape[1] == 0:
                evaluation.skip(sample['name'], 'no track passes the filter (visible at frame 0 and in 8 frames)')
                continue
            vis_frames = [read_rgb(path) for path in sample['frame_paths'][:S:4]]
            with torch.no_grad():
                metrics, _ = evaluate_frame0(model, PointOdysseyDataset.frames(sample), sample['trajs'],
                                             sample['valids'], (sample['H'], sample['W']), S, iters, image_size,
                                             evaluation.summ_writer(), vis_frames)
            evaluation.add(sample['name'], metrics, read_time, time.time() - start)
    except DatasetError as exc:
        fail(str(exc))
    evaluation.finish()


if __name__ == '__main__':
    Fire(main)
