#!/usr/bin/env bash
# GPU checks for a device session (an H200 lent through the workplace's device tool; see README
# "GPU and several processes"). Run from the repository root on the GPU machine:
#
#     bash bench/device/gpu_checks.sh STAGE [STAGE ...]
#
# Stages (each under its own time limit, each independent of the others' success):
#   tests     the whole test suite with CUDA visible (the `cuda`-marked tests run instead of skipping)
#   smoke     one short PGPE and one gradient run of `glsverify train` on cuda, and a certify on cuda
#   bounds    bench/bounds_speed.py --device cuda (one persistent worker, per-configuration cap)
#   population  bench/population_throughput.py --device cuda (B = 128, P = 1..256)
#   patches   bench/crown_patches.py --device cuda (full CROWN, dense rows against patches)
#   train     bench/train/mnist_gpu.py (MNIST CNN3, same wall-clock budget per method)
#   verify    bench/verify_benchmarks.py --device cuda on the sanity and ACAS Xu folders
#
# Inputs: onnx2torch and highspy (cp312) as wheels in .whl/ (the machine has no registry), the shared data and benchmarks
# copied to .devdata/shared (GLSVERIFY_SHARED). Outputs: $OUT/<stage>.log for every stage and
# $OUT/results.tgz (every results file, re-packed after each stage, so a run stopped at its limit still
# returns what finished). The device tool returns at most 8 files: name at most 6 stages per call.
set -u
OUT=${OUT:-/tmp/gpu_checks_out}
mkdir -p "$OUT" /tmp/gpu_results
export PYTHONUNBUFFERED=1 GLSVERIFY_SHARED=${GLSVERIFY_SHARED:-$PWD/.devdata/shared}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PWD:/tmp/site
else
  export PYTHONPATH=$PWD
fi
limit() { timeout --kill-after=5 "$@"; }
pack() { tar czf "$OUT/results.tgz" -C /tmp/gpu_results . 2>/dev/null; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, onnx, onnxruntime, onnx2torch, scipy; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '')"
  nproc; } > "$OUT/setup.log" 2>&1

for stage in "$@"; do
  start=$(date +%s)
  case "$stage" in
    tests)
      limit "${TESTS_LIMIT:-150}" python3 -m pytest -q -n 12 -p no:cacheprovider -rs --junitxml=/tmp/gpu_results/junit.xml \
        > "$OUT/tests.log" 2>&1 ;;
    smoke)
      { limit 60 python3 -m pytest -q -p no:cacheprovider -m cuda -rs
        limit 60 python3 -m glsverify certify .devdata/shared/benchmarks/acasxu/onnx/ACASXU_run2a_1_1_batch_2000.onnx \
          --vnnlib .devdata/shared/benchmarks/acasxu/vnnlib/prop_1.vnnlib --timeout 60 --device cuda --json; } \
        > "$OUT/smoke.log" 2>&1 ;;
    bounds)
      limit "${BOUNDS_LIMIT:-130}" python3 bench/bounds_speed.py --device cuda --cap 10 --total-cap "${BOUNDS_TOTAL:-100}" \
        --out /tmp/gpu_results > "$OUT/bounds.log" 2>&1 ;;
    population)
      limit "${POPULATION_LIMIT:-90}" python3 bench/population_throughput.py --device cuda --out /tmp/gpu_results \
        > "$OUT/population.log" 2>&1 ;;
    patches)
      limit "${PATCHES_LIMIT:-150}" python3 bench/crown_patches.py --device cuda --cap 30 --out /tmp/gpu_results \
        > "$OUT/patches.log" 2>&1 ;;
    train)
      limit "${TRAIN_LIMIT:-260}" python3 bench/train/mnist_gpu.py --device cuda --out /tmp/gpu_results ${TRAIN_ARGS:-} \
        > "$OUT/train.log" 2>&1 ;;
    verify)
      limit "${VERIFY_LIMIT:-240}" python3 bench/verify_benchmarks.py --benchmarks "$GLSVERIFY_SHARED/benchmarks" \
        --folders ${VERIFY_FOLDERS:-test acasxu} --device cuda --threads 1 --out /tmp/gpu_results > "$OUT/verify.log" 2>&1 ;;
    *) echo "unknown stage $stage" >> "$OUT/setup.log" ;;
  esac
  echo "$stage: exit $? after $(( $(date +%s) - start )) s" >> "$OUT/setup.log"
  pack
done
