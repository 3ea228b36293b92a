#!/usr/bin/env bash
# Quick start: installs, builds, prepares Fashion-MNIST (Debian's dataset-fashion-mnist) as class
# folders, exports MobileNetV2, trains configs/quickstart.json and evaluates it.
# Backbone weights: $TLTRAIN_WEIGHTS (a torchvision state dict) when set, else torchvision's
# ImageNet download when the network allows it, else random init with a loud warning — then
# there is no transfer and accuracy is far lower.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p build/quickstart
[ -d build/quickstart/fashion_mnist/val ] || scripts/prepare_fashion_mnist.py --out build/quickstart/fashion_mnist
bb=build/quickstart/mobilenet_v2.pt
if [ -n "${TLTRAIN_WEIGHTS:-}" ]; then
  scripts/export_backbone.py --arch mobilenet_v2 --weights "$TLTRAIN_WEIGHTS" --out "$bb"
elif ! scripts/export_backbone.py --arch mobilenet_v2 --weights imagenet --out "$bb"; then
  echo "quickstart: no ImageNet download here and TLTRAIN_WEIGHTS is unset: random-init backbone (no transfer)" >&2
  scripts/export_backbone.py --arch mobilenet_v2 --weights none --out "$bb"
fi
run=runs/quickstart
if [ -f "$run/checkpoints/last.pt" ]; then
  run=runs/quickstart-$(date +%Y%m%d-%H%M%S)  # never overwrite an earlier run
fi
./build/tltrain fit --config configs/quickstart.json --set output_dir="$run"
./build/tltrain eval --checkpoint "$run/checkpoints/best.pt"
echo "quickstart: done. Run directory: $run (config.json, log.csv, checkpoints/, eval.json)"
