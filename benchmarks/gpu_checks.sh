#!/usr/bin/env bash
# Every GPU check, for a CUDA machine (not part of CI), in three parts that each fit in about
# ten minutes: `bash benchmarks/gpu_checks.sh tests`, `... bench`, `... learning` (no argument:
# all three in turn).
#   tests:    CUDA runs of the model, tracking and confidence tests;
#   bench:    GPU figures of the model, the delta block and precisions, the confidence cost, and
#             training steps in fp32 against bf16;
#   learning: benchmarks/bench_learning.py with a GPU budget (larger batches, more steps).
# Figures and logs go to $OUT (default /tmp/out). Extra wheels, if any, are installed from .whl/.
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site
fi
export OUT_DIR=${OUT:-/tmp/out} OMP_NUM_THREADS=4
mkdir -p "$OUT_DIR"
parts=${1:-tests bench learning}

if [[ " $parts " == *" tests "* ]]; then
    timeout 240 python3 -m pytest -q -n 4 -p no:cacheprovider -W ignore tests/nets tests/test_saverloader.py \
        tests/tracking/test_track.py tests/tracking/test_engine.py tests/tracking/test_confidence.py 2>&1 \
        | tail -n 3 | tee "$OUT_DIR/pytest_gpu.txt"
fi
if [[ " $parts " == *" bench "* ]]; then
    timeout 120 python3 benchmarks/bench_model.py --max_full_gb=60 --repeats=2 2>&1 | tee "$OUT_DIR/bench_model_gpu.txt"
    timeout 150 python3 -W ignore benchmarks/bench_efficiency.py --device=cuda 2>&1 | tee "$OUT_DIR/bench_efficiency_gpu.txt"
    timeout 90 python3 -W ignore benchmarks/bench_track.py --device=cuda --cases=confidence 2>&1 | grep confidence \
        | tee "$OUT_DIR/bench_confidence_cost_gpu.txt"
    timeout 200 python3 -W ignore benchmarks/bench_train.py --steps=15 --warmup=3 --num_workers=8 --amp=fp32,bf16 2>&1 \
        | tail -n 4 | tee "$OUT_DIR/bench_train_gpu.txt"
fi
if [[ " $parts " == *" learning "* ]]; then
    timeout 560 python3 -W ignore benchmarks/bench_learning.py --device=cuda --out_dir=/tmp/bench_learning \
        --minutes=5 --B=8 --evals=5 --num_workers=6 2>&1 | grep -v 'step 0' | tail -n 12 | tee "$OUT_DIR/learning_gpu.txt"
    cp /tmp/bench_learning/learning.json /tmp/bench_learning/learning.png "$OUT_DIR/" 2>/dev/null
fi
