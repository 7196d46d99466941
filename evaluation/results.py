"""The per-video results file of an evaluation: append-only JSON lines, safe to resume.

The first line holds the run's settings, ``{"config": {...}}``; every later line is one
finished video, ``{"index": i, "name": ..., "metrics": {...}, "curves": {...}}`` or
``{"index": i, "name": ..., "skipped": reason}``. A line is written whole and flushed to
disk as soon as its video is done, so a killed run leaves only whole lines (at worst a
torn last line, which reading ignores and appending cuts off).

One process appends to the file itself. Under torchrun each rank appends to its own part
file, ``<path>.rank<r>``; when the run ends, rank 0 writes every video, in index order,
to ``<path>`` and removes the parts. Resuming reads ``<path>`` and any part files, so a
run may be resumed with another number of ranks.

The file is valid JSON lines: a metric that is not a finite number (NaN: undefined for
that video) is written as ``null``. A run without --resume refuses to replace an earlier
run's file (``refuse_earlier_results``) unless told to with --overwrite.
"""

import glob
import json
import math
import os

from utils.errors import PipsError
from utils.files import atomic_path


class ResultsError(PipsError, ValueError):
    """The results file is unreadable or was written with other settings."""


def valid_json(value):
    """``value`` with every float that is not finite (NaN, inf) replaced by None, through
    dicts and lists, so that it is written as valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: valid_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [valid_json(item) for item in value]
    return value


def json_text(value, **options):
    """``value`` as JSON text, non-finite floats written as null."""
    return json.dumps(valid_json(value), allow_nan=False, **options)


def refuse_earlier_results(paths):
    """ResultsError if any of ``paths`` (a results file, its parts, --out_json) exists: a
    run without --resume must not replace an earlier run's results unasked."""
    for path in paths:
        if path and os.path.exists(path):
            raise ResultsError(f'{path}: holds the results of an earlier run; pass --resume=True to go on from '
                               'them, --overwrite=True to replace them, or write elsewhere (--out_json, --results)')


def part_paths(path):
    """The rank part files of ``path`` that exist."""
    return sorted(glob.glob(glob.escape(path) + '.rank*'))


def whole_lines(path):
    """(the complete lines of ``path``, the byte length they take); a torn last line is left out."""
    with open(path, 'rb') as f:
        data = f.read()
    end = data.rfind(b'\n') + 1
    return data[:end].decode('utf-8').splitlines(), end


def read_file(path, config):
    """{index: record} from one results file; ResultsError if it is not ours or was
    written with settings other than ``config``."""
    lines, _ = whole_lines(path)
    records = {}
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ResultsError(f'{path}: line {number} is not JSON ({exc})') from exc
        if number == 1:
            check_config(path, entry.get('config') if isinstance(entry, dict) else None, config)
        elif not isinstance(entry, dict) or 'index' not in entry:
            raise ResultsError(f'{path}: line {number} is not a per-video result')
        else:
            records[entry['index']] = valid_json(entry)  # files of older versions hold bare NaN
    return records


def check_config(path, found, config):
    if found is None:
        raise ResultsError(f'{path}: not a results file (its first line holds no "config")')
    if found != config:
        diff = ', '.join(f'{key} {found.get(key)!r} there, {config.get(key)!r} now'
                         for key in sorted(set(found) | set(config)) if found.get(key) != config.get(key))
        raise ResultsError(f'{path}: written with other settings ({diff}); pass --overwrite=True instead of '
                           '--resume=True to start over, or write elsewhere')


def normalised(config):
    """``config`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(config))


class ResultsFile:
    """Per-video records of one run, on disk as described in the module docstring.

    ``done`` holds the records read back when resuming (every rank reads them all).
    """

    def __init__(self, path, config, ranks, resume):
        self.path = path
        self.config = normalised(config)
        self.ranks = ranks
        self.done = {}
        if resume:
            for name in [path] * os.path.exists(path) + part_paths(path):
                self.done.update(read_file(name, self.config))
            ranks.barrier()  # everyone has read before anyone appends
        elif ranks.is_main:
            for name in [path] * os.path.exists(path) + part_paths(path):
                os.remove(name)
        ranks.barrier()  # the old files are gone before anyone writes
        self.own_path = path if ranks.world == 1 else f'{path}.rank{ranks.rank}'
        self.file = self._open()

    def _open(self):
        """Open this process's file for appending, first cutting off a torn last line."""
        folder = os.path.dirname(os.path.abspath(self.own_path))
        os.makedirs(folder, exist_ok=True)
        if os.path.exists(self.own_path):
            lines, end = whole_lines(self.own_path)
            with open(self.own_path, 'r+b') as f:
                f.truncate(end)
            if lines:
                return open(self.own_path, 'a')
        f = open(self.own_path, 'w')
        self._write_line(f, {'config': self.config})
        return f

    @staticmethod
    def _write_line(f, entry):
        f.write(json_text(entry) + '\n')
        f.flush()
        os.fsync(f.fileno())

    def append(self, record):
        """Write one finished video's record, whole and flushed."""
        self._write_line(self.file, record)

    def close(self):
        self.file.close()

    def merge(self, records):
        """Rank 0: write all ``records`` (every video), in index order, to the results file
        (atomically), and remove the part files."""
        with atomic_path(self.path) as tmp_path, open(tmp_path, 'w') as f:
            for entry in [{'config': self.config}] + sorted(records, key=lambda r: r['index']):
                f.write(json_text(entry) + '\n')
        for name in part_paths(self.path):
            os.remove(name)
