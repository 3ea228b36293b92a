#!/usr/bin/env bash
# The CUDA checks of issue 15, for a machine with an NVIDIA GPU: builds tltrain against an official
# LibTorch with CUDA (scripts/build_libtorch2.sh: PyPI's torch wheel in a venv), runs the CUDA tests
# (tests/cuda_test.cpp: a CUDA step equals the CPU step, fp16 with loss scaling trains, an fp16 run
# on the squares reaches >= 95%; they skip without CUDA), the data-parallel tests (on NCCL once the
# NCCL process group is in; Gloo today) and a short training benchmark on the tiny backbone and,
# with ../shared, on hymenoptera at fp32 / bf16 / fp16. Prints every figure; exits non-zero when a
# test fails.
#   scripts/gpu_check.sh [--no-build]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build-lt2}
export BUILD_DIR=$build
[ "${1:-}" = --no-build ] || bash scripts/build_libtorch2.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "gpu_check: nvidia-smi is missing"
"$build/tests/tltrain_tests" --gtest_filter='Cuda.*:Distributed.*:MixedPrecision.*:LossScaler.*'
if [ -d ../shared/data/hymenoptera ]; then
  [ -f build/backbones/mobilenet_v2_imagenet.pt ] || { mkdir -p build/backbones &&
    /usr/bin/python3 scripts/export_backbone.py --arch mobilenet_v2 --weights ../shared/models/mobilenet_v2_imagenet.pth \
      --out build/backbones/mobilenet_v2_imagenet.pt; }
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  for p in fp32 bf16 fp16; do
    t0=$(date +%s.%N)
    "$build/tltrain" fit --config configs/hymenoptera.json --set device=cuda --set "precision=$p" --set "output_dir=$work/$p" \
      > "$work/$p.log" 2>&1 || { tail -n 20 "$work/$p.log"; exit 1; }
    t1=$(date +%s.%N)
    printf 'gpu_check hymenoptera %s: fit %.1f s, %s\n' "$p" "$(echo "$t1 - $t0" | bc)" "$(grep -o 'best val_accuracy: [0-9.]*' "$work/$p.log")"
    grep 'stage 2 epoch' "$work/$p.log" | tail -n 1
  done
else
  echo "gpu_check: ../shared is absent: no hymenoptera benchmark"
fi
