#!/usr/bin/env bash
# Every GPU check in one go, for a CUDA machine (not part of CI): CUDA runs of the model and
# tracking tests, and the GPU figures of the model and training benchmarks (fp32 and bf16).
# Figures and logs go to $OUT (default /tmp/out). Extra wheels, if any, are installed from .whl/.
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
export OUT_DIR=${OUT:-/tmp/out} OMP_NUM_THREADS=4
mkdir -p "$OUT_DIR"
timeout 180 python3 -m pytest -q -n 4 -p no:cacheprovider -W ignore tests/nets tests/test_saverloader.py \
    tests/tracking/test_track.py tests/tracking/test_engine.py 2>&1 | tail -n 3 | tee "$OUT_DIR/pytest_gpu.txt"
timeout 150 python3 benchmarks/bench_model.py --max_full_gb=60 --repeats=2 2>&1 | tee "$OUT_DIR/bench_model_gpu.txt"
timeout 200 python3 -W ignore benchmarks/bench_train.py --steps=15 --warmup=3 --num_workers=8 2>&1 | tail -n 3 \
    | tee "$OUT_DIR/bench_train_gpu.txt"
timeout 100 python3 -W ignore benchmarks/bench_train.py --steps=15 --warmup=3 --num_workers=8 --amp=bf16 --clips=4 2>&1 \
    | tail -n 3 | tee -a "$OUT_DIR/bench_train_gpu.txt"
