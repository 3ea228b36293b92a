#!/usr/bin/env bash
# Quick start: installs, builds, prepares Fashion-MNIST (Debian's dataset-fashion-mnist) as class
# folders, exports MobileNetV2, trains and evaluates it.
# Pretrained weights are looked for by scripts/find_weights.sh ($TLTRAIN_WEIGHTS, torchvision's
# cache file, the download, ../shared/models/); with them configs/quickstart.json fine-tunes an
# ImageNet backbone. Without any, configs/quickstart-scratch.json trains every layer from scratch
# (BatchNorm in training mode): a frozen random backbone would learn nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p build/quickstart

rc=0
found=$(scripts/find_weights.sh) || rc=$?
if [ "$rc" -eq 0 ]; then
  source=${found%%$'\t'*} weights=${found#*$'\t'}
  echo "quickstart: pretrained ImageNet weights from $source: $weights"
  [ -d build/quickstart/fashion_mnist/val ] || scripts/prepare_fashion_mnist.py --out build/quickstart/fashion_mnist
  scripts/export_backbone.py --arch mobilenet_v2 --weights "$weights" --out build/quickstart/mobilenet_v2.pt
  config=configs/quickstart.json
elif [ "$rc" -eq 1 ]; then
  cat >&2 <<'MSG'
quickstart: ======================================================================
quickstart: NO PRETRAINED WEIGHTS: none in $TLTRAIN_WEIGHTS, torchvision's cache,
quickstart: the download or ../shared/models. Training MobileNetV2 FROM SCRATCH
quickstart: (configs/quickstart-scratch.json: every layer trainable, BatchNorm in
quickstart: training mode, 32x32 images). This is not transfer learning; for that,
quickstart: set TLTRAIN_WEIGHTS=/path/to/mobilenet_v2-b0353104.pth and run again.
quickstart: ======================================================================
MSG
  [ -d build/quickstart/fashion_mnist_scratch/val ] ||
    scripts/prepare_fashion_mnist.py --out build/quickstart/fashion_mnist_scratch --train-per-class 1000 --val-per-class 100
  scripts/export_backbone.py --arch mobilenet_v2 --weights none --out build/quickstart/mobilenet_v2_scratch.pt
  config=configs/quickstart-scratch.json
else
  exit "$rc"
fi

name=$(basename "$config" .json)
run=runs/$name
if [ -f "$run/checkpoints/last.pt" ]; then
  run=runs/$name-$(date +%Y%m%d-%H%M%S)  # never overwrite an earlier run
fi
./build/tltrain fit --config "$config" --set output_dir="$run"
./build/tltrain eval --checkpoint "$run/checkpoints/best.pt"
echo "quickstart: done ($config). Run directory: $run (config.json, log.csv, checkpoints/, eval.json, report.html)"
