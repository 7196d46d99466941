"""The benchmark loop of test_on_tap.py, test_on_cro.py and test_on_pod.py.

A benchmark hands ``run_benchmark`` its samples (anything indexable with a length) and a
scoring function ``score(model, sample, sw) -> (metrics, curves)`` (``evaluation.scoring``);
this module runs the videos (split over the ranks when started by torchrun), appends each
video's result to the results file as it finishes (``evaluation.results``: resumable),
keeps the running averages, prints the original's step line, logs tensorboard scalars and
visuals, and on rank 0 gathers every video, prints the table and writes ``--out_json`` and
the plots (``evaluation.plots``). The means are taken over the videos in index order, so
they do not depend on the number of ranks or on interruptions.

What can go wrong is reported, never hidden:
- the output locations are checked before any work (``check_outputs``): writable, and no
  earlier results replaced without --resume or --overwrite;
- a video that cannot be read or tracked is reported with its reason and the run goes on;
  it is kept out of the results file (so --resume retries it) and listed under "failed",
  and the run ends with ``VideosFailed`` (exit status 1) after its report;
- a metric that is undefined for a video (NaN, e.g. median_l2 with no valid point) is
  written as null, left out of that metric's mean, and counted and named in the report.
"""

import os
import sys
import time

import numpy as np
import torch
from prettytable import PrettyTable
from tensorboardX import SummaryWriter
from tqdm import tqdm

from datasets.common import DatasetError
from evaluation.plots import write_plots
from evaluation.results import ResultsFile, json_text, part_paths, refuse_earlier_results, valid_json
from evaluation.scoring import FRACTION_METRICS, PAPER_LINE, PAPER_METRICS, SkipVideo
from tracking.model import load_pips
from utils import interrupts, runs
from utils.errors import PipsError, SettingsError
from utils.files import atomic_path, check_writable, sweep_temporaries
from utils.metrics import SimplePool
from utils.runs import count_parameters
from utils.vis import Summ_writer

VIDEO_ERRORS = (PipsError, OSError, torch.cuda.OutOfMemoryError)  # a video's own failure: reported, the run goes on


class VideosFailed(DatasetError):
    """Some videos could not be read or tracked (each was reported); --resume retries them."""


def start_benchmark(ranks, *, B, S, iters, exp_name, init_dir, stride=8, with_model=True):
    """(run name, model) of a test script: one name for all ranks (the original's, e.g.
    1_128_i16_tap01_153012), the model on this rank's device (None without
    ``with_model``); rank 0 prints both."""
    name = ranks.broadcast(runs.run_name(f'{B}_{S}_i{iters}', exp_name))
    if ranks.is_main:
        print('model_name', name)
    if not with_model:
        return name, None
    model = load_pips(init_dir, ranks.device, stride)
    if ranks.is_main:
        count_parameters(model)
    return name, model


class Progress:
    """One rank's running averages, step lines, tensorboard scalars and progress bar."""

    def __init__(self, *, run_name, writer, total, todo, done, ranks, metric_names, line, n_pool, log_freq):
        self.run_name = run_name
        self.writer = writer
        self.total = total
        self.line = line  # (label, metric) pairs of the step line
        self.log_freq = log_freq
        self.pools = {key: SimplePool(n_pool) for key in metric_names}
        for record in done:  # resumed: the running averages go on from the scored videos
            self.update_pools(record)
        self.bar = tqdm(total=todo, desc='videos' if ranks.world == 1 else f'videos of rank 0 (of {ranks.world})',
                        unit='video', file=sys.stderr, disable=not ranks.is_main)

    def summ_writer(self, index):
        return Summ_writer(writer=self.writer, global_step=index + 1, log_freq=self.log_freq, fps=8, scalar_freq=1,
                           just_gif=True)

    def update_pools(self, record):
        for key, pool in self.pools.items():
            if record.get('metrics', {}).get(key) is not None:
                pool.update([record['metrics'][key]])

    def add(self, record, rtime, itime):
        """Print a finished video's step line (or why it was skipped, or failed)."""
        self.bar.update(1)
        for outcome, verb in (('skipped', 'skipping'), ('failed', 'failed')):
            if outcome in record:
                tqdm.write(f'{verb} {record["name"]}: {record[outcome]}')
                return
        self.update_pools(record)
        sw = self.summ_writer(record['index'])
        text = '%s; step %06d/%d; rtime %.2f; itime %.2f' % (self.run_name, record['index'] + 1, self.total,
                                                             rtime, itime)
        for label, key in self.line:
            scale = 100.0 if key in FRACTION_METRICS else 1.0  # TAP-Vid fractions shown as percentages
            text += '; %s %.1f' % (label, self.pools[key].mean() * scale)
        for key, pool in self.pools.items():
            sw.summ_scalar(f'_/{key}', pool.mean())
        tqdm.write(text)

    def close(self):
        self.bar.close()


def metric_means(per_video, metric_names):
    """({metric: mean over the videos where it is defined}, {metric: names of the videos
    where it is undefined (null)})."""
    means, undefined = {}, {}
    for key in metric_names:
        values = [v[key] for v in per_video if v.get(key) is not None]
        missing = [v['name'] for v in per_video if key in v and v[key] is None]
        if values:
            means[key] = float(np.mean(values))
        if missing:
            undefined[key] = missing
    return means, undefined


def report(records, *, metric_names, out_json, plot_prefix, writer, total):
    """Rank 0's final report of all videos (records in index order): the table, the JSON
    and the plots. Returns the means."""
    per_video = [{'name': r['name'], **valid_json(r['metrics'])} for r in records if 'metrics' in r]
    skipped = [{'name': r['name'], 'reason': r['skipped']} for r in records if 'skipped' in r]
    failed = [{'name': r['name'], 'reason': r['failed']} for r in records if 'failed' in r]
    means, undefined = metric_means(per_video, metric_names)
    table = PrettyTable(['metric', 'mean'])
    for key, value in means.items():
        table.add_row([key, f'{value:.4f}' if key in FRACTION_METRICS else f'{value:.2f}'])
    print(f'{len(per_video)} videos scored, {len(skipped)} skipped, {len(failed)} failed')
    print(table)
    for key, names in undefined.items():
        print(f'{key} is undefined (null) for {len(names)} of {len(per_video)} videos ({", ".join(names[:5])}'
              f'{", ..." if len(names) > 5 else ""}); its mean is over the other {len(per_video) - len(names)}')
    if out_json:
        with atomic_path(out_json) as tmp_path, open(tmp_path, 'w') as f:
            f.write(json_text({'mean': means, 'undefined': undefined, 'per_video': per_video, 'skipped': skipped,
                               'failed': failed}, indent=1))
        print(f'wrote {out_json}')
    named_curves = [(r['name'], r['curves']) for r in records if 'metrics' in r]
    paths = write_plots(per_video, named_curves, plot_prefix, writer, step=total)
    if paths:
        print('wrote plots: ' + ', '.join(paths))
    return means


def check_outputs(*, log_dir, out_json, results, resume, overwrite):
    """Before any work: the output folders take files (temporaries of killed runs swept),
    and a run without --resume or --overwrite would replace no earlier results."""
    check_writable(log_dir, '--log_dir')
    path = named_results_path(out_json, results)
    if resume and path is None:
        raise SettingsError('--resume=True needs --out_json or --results (the results file to go on from)')
    for target, flag in ((out_json, '--out_json'), (path, '--results')):
        if target:
            folder = os.path.dirname(os.path.abspath(target))
            check_writable(folder, flag)
            sweep_temporaries(folder)
    if path and not (resume or overwrite):
        refuse_earlier_results([path, *part_paths(path), out_json])


def named_results_path(out_json, results):
    """--results, else <out_json stem>.jsonl, else None (the run's log folder, known once
    the run has a name)."""
    if results:
        return str(results)
    if out_json:
        return os.path.splitext(str(out_json))[0] + '.jsonl'
    return None


def results_location(out_json, results, resume, log_dir, run_name):
    """The per-video results file: --results, else <out_json stem>.jsonl, else one in the
    run's log folder (which --resume cannot find: it needs one of the first two)."""
    path = named_results_path(out_json, results)
    if path is None and resume:
        raise SettingsError('--resume=True needs --out_json or --results (the results file to go on from)')
    return path or os.path.join(log_dir, run_name, 'results.jsonl')


def score_video(index, *, samples, score, model, sw):
    """(the record of video ``index``: its metrics and curves, why it was skipped or why it
    failed; seconds spent reading it)."""
    start = time.time()
    record = {'index': index, 'name': f'video {index}'}
    try:
        sample = samples[index]
    except VIDEO_ERRORS as exc:
        return {**record, 'failed': str(exc)}, time.time() - start
    read_time = time.time() - start
    record['name'] = str(sample['name'])
    try:
        with torch.no_grad():
            metrics, curves = score(model, sample, sw)
        record.update(metrics=valid_json({key: float(value) for key, value in metrics.items()}), curves=curves)
    except SkipVideo as skip:
        record['skipped'] = skip.reason
    except VIDEO_ERRORS as exc:
        record['failed'] = str(exc)
    return record, read_time


def score_videos(indices, *, samples, score, model, store, progress):
    """Score the videos ``indices`` one by one, appending each scored or skipped one's record
    as it finishes (a failed one is only reported, so that --resume retries it)."""
    records = []
    for index in indices:
        start = time.time()
        record, read_time = score_video(index, samples=samples, score=score, model=model,
                                        sw=progress.summ_writer(index))
        with interrupts.deferred():  # a stop signal waits for the bookkeeping, not for the tracking
            if 'failed' not in record:
                store.append(record)
            records.append(record)
            progress.add(record, read_time, time.time() - start)
    return records


def run_benchmark(*, samples, score, model, run_name, config, ranks, log_dir, out_json=None, results=None,
                  resume=False, max_iters=0, metric_names=PAPER_METRICS, line=PAPER_LINE, log_freq=99, n_pool=1000):
    """Score the first ``max_iters`` samples (0: all) with ``score(model, sample, sw)``,
    which returns (metrics, curves) or raises SkipVideo; report on rank 0 (the means).

    config: the settings that decide the results (a resumed file must have been written
    with the same). A video that cannot be read or tracked is reported, kept out of the
    results file, and ends the run with ``VideosFailed`` after the others.
    """
    total = min(max_iters, len(samples)) if max_iters else len(samples)
    path = results_location(out_json, results, resume, log_dir, run_name)
    store = ResultsFile(path, config, ranks, resume)
    mine = ranks.share(range(total))
    todo = [index for index in mine if index not in store.done]
    if ranks.is_main and store.done:
        print(f'resuming: {sum(i < total for i in store.done)} of {total} videos already scored in {path}')
    writer = SummaryWriter(os.path.join(log_dir, run_name, 'x' if ranks.is_main else f'x_rank{ranks.rank}'),
                           max_queue=10, flush_secs=60)
    progress = Progress(run_name=run_name, writer=writer, total=total, todo=len(todo), ranks=ranks,
                        done=[store.done[i] for i in mine if i in store.done], metric_names=metric_names,
                        line=line, n_pool=n_pool, log_freq=log_freq)
    try:
        scored = score_videos(todo, samples=samples, score=score, model=model, store=store, progress=progress)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f'the videos scored so far are in {path}; run the same command with --resume=True '
                                'to go on') from None
    finally:
        store.close()
        progress.close()
    gathered = ranks.gather([store.done[i] for i in mine if i in store.done] + scored)
    means = None
    if ranks.is_main:
        records = {r['index']: r for part in gathered for r in part}
        store.merge([r for r in {**store.done, **records}.values() if 'failed' not in r])
        means = report([records[i] for i in range(total)], metric_names=metric_names, out_json=out_json,
                       plot_prefix=os.path.splitext(path)[0], writer=writer, total=total)
    writer.close()
    if ranks.is_main:
        check_scored([records[i] for i in range(total)], path)
    return means


def check_scored(records, path):
    """After the report: VideosFailed if any video failed (naming the first), DatasetError
    if no video could be scored."""
    failed = [r for r in records if 'failed' in r]
    if failed:
        raise VideosFailed(f'{len(failed)} of {len(records)} videos failed (first: {failed[0]["name"]}: '
                           f'{failed[0]["failed"]}); they are not in {path}, so --resume=True retries them')
    if not any('metrics' in r for r in records):
        raise DatasetError(f'none of the {len(records)} videos could be scored (each was skipped, see above)')
