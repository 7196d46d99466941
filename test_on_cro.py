"""Evaluate PIPs++ on CroHD (MOT Head Tracking 21, HT21 train videos).

    python test_on_cro.py --dataset_location=/data/crohd   # holds HT21/ (and HT21Labels/)

Videos are cut into clips of --clip_len frames every clip_len/2 frames (the original's
1000 / 500), each head's box centre is tracked from frame 0 in windows of S frames, and
the paper's metrics are reported.
"""

import time

import torch
from fire import Fire

from datasets.common import DatasetError, read_rgb
from datasets.crohddataset import CrohdDataset
from utils.evaluate import Evaluation, eval_run_name, evaluate_frame0
from utils.misc import count_parameters, default_device, fail, load_model


def main(B=1, S=128, N=256, stride=8, iters=16, image_size=(512, 896), shuffle=False, log_freq=99, max_iters=99,
         log_dir='./logs_test_on_cro', dataset_location='./crohd', init_dir='./reference_model', n_pool=1000,
         device=None, out_json=None, clip_len=1000, min_clip_len=128):
    """The original's arguments, plus --device, --out_json=PATH and the clip cutting
    (--clip_len, --min_clip_len). B must be 1; --shuffle and --N are unused: as in the
    original, every head that passes the filter is tracked."""
    if B != 1:
        fail('B must be 1 (videos are tracked one at a time)')
    image_size = tuple(int(v) for v in image_size)
    device = default_device(device)
    try:
        dataset = CrohdDataset(dataset_location, S=clip_len, S_min=min_clip_len)
    except DatasetError as exc:
        fail(str(exc))
    total = min(max_iters, len(dataset)) if max_iters else len(dataset)
    model_name = eval_run_name(B, S, iters, 'cro01')
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
                evaluation.skip(sample['name'], 'no head passes the filter (visible, moving, away from borders)')
                continue
            vis_frames = [read_rgb(path) for path in sample['frame_paths'][:S:4]]
            with torch.no_grad():
                metrics, _ = evaluate_frame0(model, CrohdDataset.frames(sample), sample['trajs'], sample['valids'],
                                             (sample['H'], sample['W']), S, iters, image_size,
                                             evaluation.summ_writer(), vis_frames)
            evaluation.add(sample['name'], metrics, read_time, time.time() - start)
    except DatasetError as exc:
        fail(str(exc))
    evaluation.finish()


if __name__ == '__main__':
    Fire(main)
