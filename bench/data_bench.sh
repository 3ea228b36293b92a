#!/usr/bin/env bash
# Data loader benchmark: tltrain's training pipeline vs torchvision ImageFolder + DataLoader with
# the same transforms (RandomResizedCrop 224 + horizontal flip + normalize), the same workers and
# batch size, plus OpenCV decode-only as the ceiling. The three run interleaved ROUNDS times on one
# machine and the medians are compared, so a busy neighbour skews all three alike.
#   bench/data_bench.sh [WORKERS] [SECONDS] [ROUNDS]     (defaults 2, 10, 3; run from the repo root)
set -euo pipefail
WORKERS=${1:-2}
SECS=${2:-10}
ROUNDS=${3:-3}
BIN=${TLTRAIN_BIN:-build/tltrain}
CONFIG=${CONFIG:-configs/hymenoptera.json}
ROOT=${ROOT:-../shared/data/hymenoptera/train}
[ -d "$ROOT" ] || { echo "no $ROOT: the benchmark needs ../shared (see ../shared/README.md)"; exit 1; }
[ -x "$BIN" ] || { echo "no $BIN: build first (cmake --build build)"; exit 1; }

rate() { sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p'; }
decode=() ours=() theirs=()
for ((r = 1; r <= ROUNDS; r++)); do
  echo "round $r/$ROUNDS" >&2
  decode+=("$("$BIN" bench data --config "$CONFIG" --threads "$WORKERS" --seconds "$SECS" --decode-only | tee -a /dev/stderr | rate)")
  ours+=("$("$BIN" bench data --config "$CONFIG" --threads "$WORKERS" --seconds "$SECS" | tee -a /dev/stderr | rate)")
  theirs+=("$(/usr/bin/python3 bench/reference/torchvision_loader.py "$ROOT" --workers "$WORKERS" --seconds "$SECS" | tee -a /dev/stderr | rate)")
done

/usr/bin/python3 - "$WORKERS" "${decode[*]}" "${ours[*]}" "${theirs[*]}" <<'PY'
import statistics, sys
workers = int(sys.argv[1])
decode, ours, theirs = (statistics.median(map(float, a.split())) for a in sys.argv[2:5])
print(f"\n| pipeline ({workers} workers, batch 32, 224x224, median of runs) | images/s | vs torchvision |")
print("|---|---:|---:|")
print(f"| torchvision ImageFolder + DataLoader | {theirs:.1f} | 1.00x |")
print(f"| tltrain training pipeline | {ours:.1f} | {ours / theirs:.2f}x |")
print(f"| OpenCV decode only (ceiling) | {decode:.1f} | {decode / theirs:.2f}x |")
print(f"\ntltrain reaches {100 * ours / decode:.0f}% of the decode-only ceiling.")
PY
