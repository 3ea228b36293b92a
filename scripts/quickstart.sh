#!/usr/bin/env bash
# Quick start: installs, builds, and runs the main job on an offline default.
# Backbone weights: torchvision's ImageNet download when the network allows it, else the file
# in $TLTRAIN_WEIGHTS, else random init (with a loud warning: then there is no transfer).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p build/quickstart
bb=build/quickstart/mobilenet_v2.pt
if [ ! -s "$bb" ]; then
  if [ -n "${TLTRAIN_WEIGHTS:-}" ]; then
    scripts/export_backbone.py --arch mobilenet_v2 --weights "$TLTRAIN_WEIGHTS" --out "$bb"
  elif ! scripts/export_backbone.py --arch mobilenet_v2 --weights imagenet --out "$bb"; then
    echo "quickstart: no ImageNet download here and TLTRAIN_WEIGHTS unset: using a random-init backbone" >&2
    scripts/export_backbone.py --arch mobilenet_v2 --weights none --out "$bb"
  fi
fi
./build/tltrain inspect "$bb"
