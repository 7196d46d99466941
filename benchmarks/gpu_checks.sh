#!/usr/bin/env bash
# What the lead ran on the lent H100 (not part of CI): CUDA tests and GPU figures.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
export OUT_DIR=${OUT:-/tmp/out} OMP_NUM_THREADS=4
timeout 120 python3 -m pytest -q -n 4 -p no:cacheprovider -W ignore tests/test_model.py tests/test_saverloader.py tests/test_track.py 2>&1 | tail -n 3 | tee $OUT_DIR/pytest_gpu.txt
timeout 150 python3 benchmarks/bench_model.py --max_full_gb=60 --repeats=2 2>&1 | tee $OUT_DIR/bench_model_gpu.txt
timeout 200 python3 -W ignore benchmarks/bench_train.py --steps=15 --warmup=3 --num_workers=8 2>&1 | tail -n 3 | tee $OUT_DIR/bench_train_gpu.txt
timeout 100 python3 -W ignore benchmarks/bench_train.py --steps=15 --warmup=3 --num_workers=8 --amp=bf16 --clips=4 2>&1 | tail -n 3 | tee -a $OUT_DIR/bench_train_gpu.txt
