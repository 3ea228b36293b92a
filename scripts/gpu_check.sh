#!/usr/bin/env bash
# The CUDA checks of issue 15, for a machine with an NVIDIA GPU: builds tltrain against an official
# LibTorch with CUDA (scripts/build_libtorch2.sh: PyPI's torch wheel in a venv), runs the CUDA tests
# (tests/cuda_test.cpp: a CUDA step equals the CPU step, fp16 with loss scaling trains, an fp16 run
# on the squares reaches >= 95%; batches copied on the side stream arrive intact; they skip without
# CUDA), the data-parallel tests (2 ranks on NCCL equal 1 rank when the machine has 2 GPUs; the CPU
# ones over Gloo) and, with ../shared, hymenoptera at fp32 / bf16 / fp16 and fp32 with the copy on
# the compute stream (TLTRAIN_COPY_OVERLAP=0) to show what overlap gains. Prints every figure; exits
# non-zero when a test fails.
#   scripts/gpu_check.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build-lt2}
export BUILD_DIR=$build
[ "${1:-}" = --no-build ] || bash scripts/build_libtorch2.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "gpu_check: nvidia-smi is missing"
"$build/tests/tltrain_tests" --gtest_filter='Cuda.*:Distributed.*:MixedPrecision.*:LossScaler.*:DataLoader.DeviceBatches*'
if [ -d ../shared/data/hymenoptera ]; then
  [ -f build/backbones/mobilenet_v2_imagenet.pt ] || { mkdir -p build/backbones &&
    /usr/bin/python3 scripts/export_backbone.py --arch mobilenet_v2 --weights ../shared/models/mobilenet_v2_imagenet.pth \
      --out build/backbones/mobilenet_v2_imagenet.pt; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  for run in fp32 bf16 fp16 fp32-no-overlap; do
    p=${run%%-*}
    overlap=1
    [ "$run" = "${run%-no-overlap}" ] || overlap=0
    t0=$(date +%s.%N)
    TLTRAIN_COPY_OVERLAP=$overlap "$build/tltrain" fit --config configs/hymenoptera.json --set device=cuda --set "precision=$p" \
      --set "output_dir=$work/$run" > "$work/$run.log" 2>&1 || { tail -n 20 "$work/$run.log"; exit 1; }
    t1=$(date +%s.%N)
    printf 'gpu_check hymenoptera %s: fit %.1f s, %s\n' "$run" "$(echo "$t1 - $t0" | bc)" "$(grep -o 'best val_accuracy: [0-9.]*' "$work/$run.log")"
    grep 'stage 2 epoch' "$work/$run.log" | tail -n 1
  done
else
  echo "gpu_check: ../shared is absent: no hymenoptera benchmark"
fi
