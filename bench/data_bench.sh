#!/usr/bin/env bash
# Data loader benchmark: tltrain's training pipeline vs torchvision ImageFolder + DataLoader with
# the same transforms, the same workers and batch size, plus OpenCV decode-only as the ceiling.
# Two transform sets: "crop" = RandomResizedCrop 224 + horizontal flip + normalize (torchvision's
# ImageNet recipe), "keras" = the seeds' ImageDataGenerator set (centre crop, rotation, shifts,
# shear, zoom, flip). All five run interleaved ROUNDS times on one machine and the medians are
# compared, so a busy neighbour skews all of them alike.
# torchvision runs under Debian's PyTorch 1.13 and, when bench/torch2_reference.sh's venv is ready
# (or TORCH2_PY names one), under PyTorch 2.x too; the ratios are against the faster of the two.
#   bench/data_bench.sh [WORKERS] [SECONDS] [ROUNDS]     (defaults 2, 10, 3)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
bench_prepare data_bench  # the config's backbone (its preprocessing) is made when missing
WORKERS=${1:-2}
SECS=${2:-10}
ROUNDS=${3:-3}
BIN=${TLTRAIN_BIN:-build/tltrain}
CONFIG=${CONFIG:-configs/hymenoptera.json}
ROOT=${ROOT:-$SHARED/data/hymenoptera/train}

# The config's own augmentation is the Keras set; these overrides make it torchvision's recipe.
CROP=(--set data.augment.random_resized_crop=true --set data.augment.rotation_range=0
      --set data.augment.width_shift_range=0 --set data.augment.height_shift_range=0
      --set data.augment.shear_range=0 --set data.augment.zoom_range=0
      --set data.augment.horizontal_flip=true --set data.augment.vertical_flip=false
      --set 'data.augment.order=["crop","flip"]')
KERAS=(--set data.augment.random_resized_crop=false --set data.augment.rotation_range=40
       --set data.augment.width_shift_range=0.2 --set data.augment.height_shift_range=0.2
       --set data.augment.shear_range=0.2 --set data.augment.zoom_range=0.2
       --set data.augment.horizontal_flip=true --set data.augment.vertical_flip=false
       --set 'data.augment.order=["crop","affine","flip"]')
ours() { "$BIN" bench data --config "$CONFIG" --threads "$WORKERS" --seconds "$SECS" "$@"; }
theirs() { /usr/bin/python3 bench/reference/torchvision_loader.py "$ROOT" --workers "$WORKERS" --seconds "$SECS" "$@"; }
PY2=$(torch2_py)
theirs2() { [[ -z "$PY2" ]] && echo "0 images/s" && return; "$PY2" bench/reference/torchvision_loader.py "$ROOT" --workers "$WORKERS" --seconds "$SECS" "$@"; }
rate() { tee -a /dev/stderr | sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p'; }
decode=() ours_crop=() theirs_crop=() ours_keras=() theirs_keras=() theirs2_crop=() theirs2_keras=()
for ((r = 1; r <= ROUNDS; r++)); do
  echo "round $r/$ROUNDS" >&2
  decode+=("$(ours --decode-only | rate)")
  ours_crop+=("$(ours "${CROP[@]}" | rate)")
  theirs_crop+=("$(theirs --augment crop | rate)")
  ours_keras+=("$(ours "${KERAS[@]}" | rate)")
  theirs_keras+=("$(theirs --augment keras | rate)")
  theirs2_crop+=("$(theirs2 --augment crop | rate)")
  theirs2_keras+=("$(theirs2 --augment keras | rate)")
done

v2=$([[ -n "$PY2" ]] && "$PY2" -c "import torch, torchvision; print(torch.__version__, torchvision.__version__)" 2>/dev/null || true)
/usr/bin/python3 - "$WORKERS" "${decode[*]}" "${ours_crop[*]}" "${theirs_crop[*]}" "${ours_keras[*]}" "${theirs_keras[*]}" \
  "${theirs2_crop[*]}" "${theirs2_keras[*]}" "$v2" <<'PY'
import statistics, sys
workers = int(sys.argv[1])
decode, oc, tc, ok, tk, tc2, tk2 = (statistics.median(map(float, a.split())) for a in sys.argv[2:9])
v2 = sys.argv[9]
print(f"\n| transforms ({workers} workers, batch 32, 224x224, median of runs) | torchvision (torch 1.13) img/s | "
      f"torchvision (torch {v2 or '2.x: not run'}) img/s | tltrain img/s | tltrain / the faster torchvision |")
print("|---|---:|---:|---:|---:|")
print(f"| RandomResizedCrop + flip (torchvision recipe) | {tc:.1f} | {tc2:.1f} | {oc:.1f} | **{oc / max(tc, tc2):.2f}x** |")
print(f"| Keras set: centre crop, rotation, shift, shear, zoom, flip | {tk:.1f} | {tk2:.1f} | {ok:.1f} | **{ok / max(tk, tk2):.2f}x** |")
tc = max(tc, tc2)
print(f"\nOpenCV full decode only (read + cv::imdecode, no transforms): {decode:.1f} images/s = "
      f"{decode / tc:.2f}x torchvision's crop pipeline.")
print(f"tltrain's crop pipeline runs at {100 * oc / decode:.0f}% of the decode-only rate, the Keras set at {100 * ok / decode:.0f}%.")
PY
