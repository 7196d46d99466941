"""A benchmark's bad argument is one line naming it, before any work (no data made, no model
loaded)."""

import pytest

BAD_ARGUMENTS = [
    ('benchmarks/bench_track.py', '--repeats=0', '--repeats must be an integer of at least 1; got 0'),
    ('benchmarks/bench_train.py', '--rounds=0', '--rounds must be an integer of at least 1; got 0'),
    ('benchmarks/bench_train.py', '--amp=fp8', "--amp must be one of '', 'fp32', 'bf16', 'fp16'; got 'fp8'"),
    ('benchmarks/fit_confidence.py', '--query_mode=foo', "--query_mode must be one of 'first', 'strided'; got 'foo'"),
    ('benchmarks/bench_confidence.py', '--N=0', '--N must be an integer of at least 1; got 0'),
]


@pytest.mark.parametrize('script, argument, message', BAD_ARGUMENTS)
def test_a_bad_benchmark_argument_is_one_line_before_any_work(tmp_path, run_script, script, argument, message):
    out = run_script(script, argument, cwd=tmp_path)
    assert out.returncode == 1 and out.stderr == f'error: {message}\n'
    assert list(tmp_path.iterdir()) == []  # nothing made
