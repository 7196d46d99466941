"""Clips per second of the training data paths, on a generated PointOdyssey-sized fixture.

    .venv/bin/python benchmarks/bench_loader.py [--clips=6] [--reads=20]

Writes a 540x960 sequence (PointOdyssey's resolution) in a temporary folder, then times,
in this one process: the raw PointOdyssey loader at the export configuration (S=36, N=128,
384x512 crops), the export itself (which adds JPEG + H.264 encoding), and ExportDataset
reading those clips back (S=36; clips are read at the size they were exported at).
"""

import contextlib
import io
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from datasets.export import export_clips  # noqa: E402
from datasets.exportdataset import ExportDataset  # noqa: E402
from datasets.pointodysseydataset import PointOdysseyClips  # noqa: E402
from tests.fixtures.pointodyssey import write_sequence  # noqa: E402
from utils import cli  # noqa: E402

S, N, EXPORT_CROP = 36, 128, (384, 512)


def clips_per_second(load, count):
    """Calls load(i) for i < count (after one warm-up call); returns calls per second."""
    load(0)
    start = time.perf_counter()
    for i in range(count):
        load(i)
    return count / (time.perf_counter() - start)


def main(clips=6, reads=20):
    """Print clips/s for the raw loader, the export and ExportDataset."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        write_sequence(os.path.join(tmp, 'pod', 'train', 'seq_000'), T=150, H=540, W=960, N=4000)
        print(f'fixture: 150 frames of 540x960, 4000 tracks ({time.perf_counter() - start:.1f} s)')
        with contextlib.redirect_stdout(io.StringIO()):
            raw = {augs: PointOdysseyClips(os.path.join(tmp, 'pod'), use_augs=augs, S=S, N=N, crop_size=EXPORT_CROP,
                                             seed=0) for augs in (False, True)}
        for augs, dataset in raw.items():
            step = len(dataset) // clips
            rate = clips_per_second(lambda i, d=dataset, s=step: d[i * s], clips)
            print(f'raw PointOdysseyClips, S={S}, 384x512, use_augs={augs}: {rate:.2f} clips/s')

        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            version = 'ae_%d_%d_%dx%d' % (S, N, *EXPORT_CROP)
            os.makedirs(os.path.join(tmp, 'export', version))
            dataset = PointOdysseyClips(os.path.join(tmp, 'pod'), use_augs=True, S=S, N=N, crop_size=EXPORT_CROP,
                                        seed=0)
            export_clips(dataset, os.path.join(tmp, 'export', version), max_iters=clips * 2, seed=0)
        written = len([n for n in os.listdir(os.path.join(tmp, 'export', version)) if n.isdigit()])
        print(f'export (one process): {written} clips written of {clips * 2} steps, '
              f'{clips * 2 / (time.perf_counter() - start):.2f} steps/s')

        for augs in (False, True):
            with contextlib.redirect_stdout(io.StringIO()):
                dataset = ExportDataset(os.path.join(tmp, 'export'), version, S=S, N=N, crop_size=EXPORT_CROP,
                                        use_augs=augs)
            rate = clips_per_second(lambda i, d=dataset: d[i % len(d)], reads)
            print(f'ExportDataset, S={S}, 384x512, use_augs={augs}: {rate:.2f} clips/s')


if __name__ == '__main__':
    cli.run(main)
