#!/usr/bin/env bash
# The suite's per-architecture check (tests/exported_test.cpp, Exported/EveryArch) for the
# backbones too big for the suite's fixture (docs/backbones.md marks them ¹): export with random
# weights, inspect every layer, train one step end to end with `fit`, export a model (its
# self-check compares it with the checkpoint). One architecture at a time, files removed after
# each: the largest need about 2.5 GB per copy and a run writes three.
#   bench/giants_check.sh [ARCH ...]    (default: the nine giants)
set -euo pipefail
TLTRAIN_BIN=${TLTRAIN_BIN:-build/tltrain}
PY=/usr/bin/python3
[[ -x "$TLTRAIN_BIN" ]] || { echo "giants_check: $TLTRAIN_BIN is missing; build it first" >&2; exit 1; }
archs=("$@")
[[ ${#archs[@]} -gt 0 ]] || archs=(regnet_x_32gf regnet_y_32gf regnet_y_128gf wide_resnet101_2 efficientnet_v2_l convnext_large vit_l_16 vit_l_32 vit_h_14)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PY" - "$work/data" <<'EOF'
import os, sys, numpy as np
from PIL import Image
rng = np.random.default_rng(0)
for c in ("a", "b"):
    os.makedirs(f"{sys.argv[1]}/{c}", exist_ok=True)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (80, 80, 3), dtype=np.uint8)).save(f"{sys.argv[1]}/{c}/{i}.png")
EOF
failed=0
for arch in "${archs[@]}"; do
  t0=$(date +%s)
  "$PY" scripts/export_backbone.py --arch "$arch" --weights none --out "$work/$arch.pt" > "$work/log" 2>&1 || { echo "$arch: export failed: $(tail -n 1 "$work/log")"; failed=1; continue; }
  layers=$("$TLTRAIN_BIN" inspect --layers "$work/$arch.pt" | grep -c '^ *[0-9]')
  # ViT and MaxViT run at the size they were exported for; the rest at 64 (as the suite's test).
  case $arch in vit*|maxvit*) size=224 ;; *) size=64 ;; esac
  cat > "$work/$arch.json" <<EOF
{"seed": 1, "device": "cpu", "monitor": "loss",
 "data": {"train": "$work/data", "batch_size": 4, "image_size": [$size, $size], "resize": $size},
 "model": {"backbone": "$work/$arch.pt"}, "output_dir": "$work/run",
 "stages": [{"epochs": 1, "trainable": "all", "feature_cache": false, "batch_norm": "train",
             "optimizer": {"name": "sgd", "lr": 0.001}}]}
EOF
  if "$TLTRAIN_BIN" fit --config "$work/$arch.json" > "$work/log" 2>&1 &&
     "$TLTRAIN_BIN" export --checkpoint "$work/run/checkpoints/last.pt" --out "$work/model.pt" > "$work/export.log" 2>&1; then
    echo "$arch: ok — $layers layers, one step at ${size}px, $(grep -o 'self-check max |diff| [^)]*' "$work/export.log"), $(( $(date +%s) - t0 )) s"
  else
    echo "$arch: FAILED: $(tail -n 2 "$work/log" "$work/export.log" 2>/dev/null | tr '\n' ' ')"
    failed=1
  fi
  rm -rf "$work/run" "$work/$arch.pt" "$work/model.pt"
done
exit $failed
