#!/usr/bin/env bash
# One call on the lent GPU machine (no network): install the carried wheels, run the CUDA
# tests, the profile and the bench. Logs go to $OUT. Usage: bash benchmarks/gpu_session.sh
#   [tests[ -k EXPR]] [profile] [accuracy] ["bench MODELS..."]   (default: tests profile bench)
set -o pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'
[ $# -gt 0 ] || set -- tests profile bench
n=0
for step in "$@"; do
  case $step in
    tests*) sel=${step#tests}; timeout 300 python3 -m pytest -q tests/test_kernel_cuda.py \
             tests/test_bimamba2_fused.py ${sel:+-k "$sel"} 2>&1 | tee "$OUT/tests.log" \
             | tail -15 ;;
    profile) timeout 150 python3 benchmarks/gpu_profile.py 2>&1 | tee "$OUT/profile.log" ;;
    bench*) models=${step#bench}; n=$((n + 1)); timeout 330 python3 -m bsmamba2_plugin.cli \
              bench ${models:+--models $models} --json "$OUT/bench-$n.json" 2>&1 \
              | tee "$OUT/bench-$n.log" ;;
    accuracy) timeout 200 python3 benchmarks/gpu_kernel_vs_reference.py --skip-timing 2>&1 \
              | tee "$OUT/accuracy.log" ;;
  esac
done
