#!/usr/bin/env bash
# Data loader benchmark: tltrain's training pipeline vs torchvision ImageFolder + DataLoader with
# the same transforms (RandomResizedCrop 224 + horizontal flip + normalize), the same workers and
# batch size, plus OpenCV decode-only as the ceiling. One run, one machine; run from the repo root.
#   bench/data_bench.sh [WORKERS] [SECONDS]     (defaults 2 and 10)
set -euo pipefail
WORKERS=${1:-2}
SECONDS_=${2:-10}
BIN=${TLTRAIN_BIN:-build/tltrain}
CONFIG=${CONFIG:-configs/hymenoptera.json}
ROOT=${ROOT:-../shared/data/hymenoptera/train}
[ -d "$ROOT" ] || { echo "no $ROOT: the benchmark needs ../shared (see ../shared/README.md)"; exit 1; }
[ -x "$BIN" ] || { echo "no $BIN: build first (cmake --build build)"; exit 1; }

rate() { sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p'; }
decode=$("$BIN" bench data --config "$CONFIG" --threads "$WORKERS" --seconds "$SECONDS_" --decode-only | tee /dev/stderr | rate)
ours=$("$BIN" bench data --config "$CONFIG" --threads "$WORKERS" --seconds "$SECONDS_" | tee /dev/stderr | rate)
theirs=$(/usr/bin/python3 bench/reference/torchvision_loader.py "$ROOT" --workers "$WORKERS" --seconds "$SECONDS_" | tee /dev/stderr | rate)

/usr/bin/python3 - "$decode" "$ours" "$theirs" "$WORKERS" <<'PY'
import sys
decode, ours, theirs, workers = map(float, sys.argv[1:5])
print(f"\n| pipeline ({int(workers)} workers, batch 32, 224x224) | images/s | vs torchvision |")
print("|---|---:|---:|")
print(f"| torchvision ImageFolder + DataLoader | {theirs:.1f} | 1.00x |")
print(f"| tltrain training pipeline | {ours:.1f} | {ours / theirs:.2f}x |")
print(f"| OpenCV decode only (ceiling) | {decode:.1f} | {decode / theirs:.2f}x |")
print(f"\ntltrain reaches {100 * ours / decode:.0f}% of the decode-only ceiling.")
PY
