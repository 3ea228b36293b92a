#!/usr/bin/env bash
# Eval and training images/s of every exported backbone, for docs/backbones.md's table.
#   bench/backbone_speed.sh [ARCH ...]     (default: every ARCH.pt in the suite's fixture folder)
# Run from the repository root after the suite (ctest makes build/tests/exported). Per
# architecture, at its native input size, on N synthetic images (BENCH_IMAGES, default 24):
#   train img/s = one epoch training the whole network (batches of 8, SGD), log.jsonl's
#                 images_per_s; its first step includes warm-up
#   eval img/s  = the validation pass after it over the same images (model::predict in chunks
#                 of 8, what eval runs): the epoch's seconds minus its training time
# Both include decoding (small against these networks). Random weights: speed does not depend
# on them, but a random backbone under inference-mode BatchNorm can compute constant features,
# which training refuses; BatchNorm on batch statistics avoids that, and lr 0 keeps the deepest
# nets' huge random activations from diverging. Prints one markdown row per architecture.
set -euo pipefail
TLTRAIN_BIN=${TLTRAIN_BIN:-build/tltrain}
DIR=${EXPORTED:-build/tests/exported}
N=${BENCH_IMAGES:-24}
BATCH=${BENCH_BATCH:-8}  # efficientnet_b7 at 600x600 needs more than 24 GB at 8 with batch statistics
PY=/usr/bin/python3
source "$(dirname "$0")/common.sh"  # synthetic_jpegs
[[ -x "$TLTRAIN_BIN" ]] || { echo "backbone_speed: $TLTRAIN_BIN is missing; build it first" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
synthetic_jpegs "$work/data" "$N"
archs=("$@")
if [[ ${#archs[@]} -eq 0 ]]; then
  for f in "$DIR"/*.meta.json; do archs+=("$(basename "$f" .meta.json)"); done
fi
echo "| architecture | eval img/s | train img/s |"
echo "|---|---:|---:|"
for arch in "${archs[@]}"; do
  run=$work/run_$arch
  cat > "$work/$arch.json" <<EOF
{"seed": 1, "device": "cpu", "threads": {"intra_op": 0, "loader": 0}, "monitor": "loss",
 "data": {"train": "$work/data", "val": "$work/data", "batch_size": $BATCH},
 "model": {"backbone": "$DIR/$arch.pt"}, "output_dir": "$run",
 "stages": [{"epochs": 1, "trainable": "all", "feature_cache": false, "batch_norm": "train",
             "optimizer": {"name": "sgd", "lr": 0}}]}
EOF
  if ! "$TLTRAIN_BIN" fit --config "$work/$arch.json" > "$work/$arch.log" 2>&1; then
    echo "| \`$arch\` | failed: $(tail -n 1 "$work/$arch.log") | |"
    continue
  fi
  "$PY" - "$work/$arch.log" "$run/log.jsonl" "$arch" "$N" <<'EOF'
import json, re, sys
log, jsonl, arch = sys.argv[1:4]
e = [json.loads(l) for l in open(jsonl)][-1]
n = int(sys.argv[4])
train = e["images_per_s"]
val_secs = e["seconds"] - n / train
evals = n / val_secs if val_secs > 0 else float("nan")
print(f"| `{arch}` | {evals:.1f} | {train:.1f} |")
EOF
  rm -rf "$run"
done
