#!/usr/bin/env bash
# One call on the lent GPU machine (no network): install the carried wheels, run the CUDA
# tests, the profile and the bench. Logs go to $OUT. Usage: bash benchmarks/gpu_session.sh
#   [tests[ -k EXPR]] [tests-each FILE] ["profile[ ARGS]"] ["accuracy[ ARGS]"] ["scan[ ARGS]"]
#   ["norm[ ARGS]"] ["long-scan ARGS"] [sizes[ CASES]]
#   ["bench MODELS..."] ["split-conv ARGS"] [train-runs] [compare[BUDGET_S]] ["cpu-speed ARGS"]
#   [train-gap[STEPS]]
#   (default: tests profile bench; BENCH_ARGS: more bench options, e.g. --variant-timeout). tests: every CUDA test file, full log in tests.log;
#   tests-each: each test of FILE in its own process (a CUDA error poisons its process);
#   sizes: benchmarks/gpu_kernel_sizes.py; scan: benchmarks/gpu_short_scan.py (ARGS after
#   it, e.g. "scan --sweep": short_scan's backward at each warps x stages); norm:
#   benchmarks/gpu_gated_norm.py; long-scan: benchmarks/gpu_long_scan.py (ARGS after it, e.g.
#   "long-scan --sweep");
#   split-conv: benchmarks/gpu_split_conv.py. train-runs: benchmarks/gpu_train_runs.py
#   (2 GPUs); compare: recipes/gpu_compare_vs_bs_roformer.yaml (2 GPUs side by side).
#   train-gap: stock msst-train, one short epoch each of the shipped bsmamba2 config and
#   BS-RoFormer 256x6 on a small rendered set, their median step (train_gap.log) to set
#   beside the bench's step.
#   cpu-speed: benchmarks/cpu_speed.py on the host's CPU, pinned to cores 0-1, 2 threads
#   (THREADS=n CORES=0-15 for others), freed memory kept.
#   A step written "old:STEP" runs STEP on the package in .old/ (a copy of an earlier
#   commit's bsmamba2_plugin, e.g. `mkdir -p .old && git archive HEAD bsmamba2_plugin |
#   tar -x -C .old`, carried with the call) instead of the checkout's: before/after in one
#   call; its logs start with "old-".
set -o pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
# into the machine's own environment (a throwaway one): msst's console scripts, our entry
# point and our .pth startup hook only work from an installed distribution. Build ours here
# first: rm -f .whl/bsmamba2_plugin-*.whl && pip wheel --no-deps -w .whl .
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    .whl/*.whl || exit 1
export PYTHONUNBUFFERED=1
# Triton's autotuning results: the ~2 min first-step autotuning of a fresh machine is
# skipped when an earlier call's results are carried in .triton_autotune/ (copy the
# triton_autotune.tar.gz this script leaves in $OUT there; same GPU kind, same kernels)
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-/tmp/triton_cache}
mkdir -p "$TRITON_CACHE_DIR"
[ -f .triton_autotune/triton_autotune.tar.gz ] && \
    tar -xzf .triton_autotune/triton_autotune.tar.gz -C "$TRITON_CACHE_DIR"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)'
[ $# -gt 0 ] || set -- tests profile bench
# CUDA_TESTS=... runs a subset of the files (a full run may need two calls of 10 minutes)
CUDA_TESTS=${CUDA_TESTS:-"tests/test_kernel_cuda.py tests/test_bimamba2_fused.py
    tests/test_short_scan.py tests/test_kernel_sizes_cuda.py tests/test_kernel_limits.py
    tests/test_gated_norm.py tests/test_compile.py tests/test_long_scan.py"}
n=0; p=0
for step in "$@"; do
  # python3 -P: the package comes from PYTHONPATH alone (not from the working directory)
  case $step in
    old:*) step=${step#old:}; tag=old-; export PYTHONPATH=$PWD/.old:$PWD ;;
    *) tag=; export PYTHONPATH=$PWD ;;
  esac
  case $step in
    tests-each*) file=${step#tests-each }
              for id in $(python3 -P -m pytest -q --collect-only "$file" | grep "::"); do
                timeout ${TESTS_TIMEOUT:-300} python3 -P -m pytest -q -p no:cacheprovider \
                    "$id" 2>&1 | grep -E "^E  |passed|failed|error" | tail -4 | cut -c1-300 \
                    | sed "s|^|${id#*::}: |"
              done 2>&1 | tee "$OUT/${tag}tests_each.log" ;;
    tests*) sel=${step#tests}; timeout ${TESTS_TIMEOUT:-300} python3 -P -m pytest -q -rA --durations=0 \
             $CUDA_TESTS ${sel:+-k "$sel"} 2>&1 | tee "$OUT/${tag}tests.log" | tail -15 ;;
    profile*) opts=${step#profile}; p=$((p + 1)); timeout 150 python3 -P \
              benchmarks/gpu_profile.py $opts 2>&1 | tee "$OUT/${tag}profile-$p.log" ;;
    bench*) models=${step#bench}; n=$((n + 1)); timeout ${BENCH_TIMEOUT:-560} python3 -P -m bsmamba2_plugin.cli \
              bench ${models:+--models $models} $BENCH_ARGS --json "$OUT/${tag}bench-$n.json" 2>&1 \
              | tee "$OUT/${tag}bench-$n.log" ;;
    sizes*) cases=${step#sizes}; timeout 580 python3 -P benchmarks/gpu_kernel_sizes.py $cases \
              2>&1 | tee "$OUT/${tag}sizes.log" ;;
    split-conv*) opts=${step#split-conv}; PYTHONPATH=$PYTHONPATH:$PWD/benchmarks timeout 200 \
              python3 -P benchmarks/gpu_split_conv.py $opts 2>&1 | tee "$OUT/${tag}split_conv.log" ;;
    train-runs*) opts=${step#train-runs}; timeout 580 python3 -P benchmarks/gpu_train_runs.py \
              --work /tmp/runs --out "$OUT/train_runs" $opts 2>&1 | tee "$OUT/train_runs.log" \
              | grep -v "it/s\]" ;;
    compare*) budget=${step#compare}; timeout 565 python3 -P -m bsmamba2_plugin.cli recipe run \
              gpu_compare_vs_bs_roformer --workdir /tmp/cmp ${budget:+--set budget_seconds=$budget} \
              2>&1 | tee "$OUT/compare.log" | grep -v "it/s\]"
              cp /tmp/cmp/report/summary.md /tmp/cmp/report/training.md "$OUT/" 2>/dev/null
              tar -czf "$OUT/compare.tar.gz" -C /tmp/cmp --exclude='*.ckpt' --exclude=data \
                  --exclude='*.wav' . ;;
    cpu-speed*) opts=${step#cpu-speed}; cores=${CORES:-0,1}
              { lscpu | grep -E "Model name|^CPU\(s\)|L2|L3"; grep -o 'amx_[a-z0-9]*' /proc/cpuinfo \
                | sort -u | tr '\n' ' '; echo; } | tee "$OUT/cpu_speed.log"
              (cd benchmarks && timeout ${CPU_TIMEOUT:-560} taskset -c "$cores" python3 cpu_speed.py \
                --threads ${THREADS:-2} --malloc keep $opts) 2>&1 | grep -v "Warning\|qweight = " \
                | tee -a "$OUT/cpu_speed.log" ;;
    train-gap*) steps=${step#train-gap}; steps=${steps:-40}; gap=/tmp/gap
              # stock msst-train for `steps` steps (one epoch) of bsmamba2 (shipped config)
              # and BS-RoFormer 256x6 (only bsmamba2 for old:), median step from its log
              [ -d $gap/data/train ] || python3 -P -m bsmamba2_plugin.cli make-dataset \
                  $gap/data --tracks 8 --valid-tracks 1 --seconds 20 --seed 1 --workers 16 \
                  --overwrite > /dev/null
              for m in ${GAP_MODELS:-bsmamba2 bs_roformer}; do
                [ -n "$tag" ] && [ $m != bsmamba2 ] && continue
                cfg=configs/config_musdb18_$m.yaml
                [ $m = bs_roformer ] && cfg=configs/config_musdb18_bs_roformer_256x6.yaml
                sed -e "s/^  num_steps: .*/  num_steps: $steps/" \
                    -e "s/^  num_epochs: .*/  num_epochs: 1/" $cfg > $gap/$m.yaml
                rm -rf $gap/$tag$m
                echo "msst-train $m ($tag${tag:+code in .old, }$steps steps):"
                timeout 240 msst-train --model_type $m --config_path $gap/$m.yaml \
                    --data_path $gap/data/train --valid_path $gap/data/valid --dataset_type 1 \
                    --results_path $gap/$tag$m --num_workers 8 --seed 1 --device_ids 0 2>&1 \
                    | grep -i "median step\|error\|traceback" | cut -c1-400
                cp $gap/$tag$m/train_timing.jsonl "$OUT/${tag}train_timing_$m.jsonl"
              done 2>&1 | tee -a "$OUT/${tag}train_gap.log" ;;
    scan*) opts=${step#scan}; timeout 300 python3 -P benchmarks/gpu_short_scan.py $opts 2>&1 \
              | tee "$OUT/${tag}short_scan.log" ;;
    long-scan*) opts=${step#long-scan}; PYTHONPATH=$PYTHONPATH:$PWD/benchmarks timeout 300 \
              python3 -P benchmarks/gpu_long_scan.py $opts 2>&1 | tee "$OUT/${tag}long_scan.log" ;;
    norm*) opts=${step#norm}; PYTHONPATH=$PYTHONPATH:$PWD/benchmarks timeout 200 python3 -P \
              benchmarks/gpu_gated_norm.py $opts 2>&1 | tee "$OUT/${tag}gated_norm.log" ;;
    accuracy*) opts=${step#accuracy}; p=$((p + 1))
              timeout 200 python3 -P benchmarks/gpu_kernel_vs_reference.py --skip-timing \
                  $opts 2>&1 | tee "$OUT/${tag}accuracy-$p.log" ;;
  esac
done
(cd "$TRITON_CACHE_DIR" && find . -name '*.autotune.json' | tar -czf "$OUT/triton_autotune.tar.gz" -T -)
