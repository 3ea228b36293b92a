#!/usr/bin/env bash
# Data loader benchmark: tltrain's training pipeline vs torchvision ImageFolder + DataLoader with
# the same transforms, the same workers and batch size, plus OpenCV decode-only as the ceiling.
# Two transform sets: "crop" = RandomResizedCrop 224 + horizontal flip + normalize (torchvision's
# ImageNet recipe), "keras" = the seeds' ImageDataGenerator set (centre crop, rotation, shifts,
# shear, zoom, flip). All five run interleaved ROUNDS times on one machine and the medians are
# compared, so a busy neighbour skews all of them alike.
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
rate() { tee -a /dev/stderr | sed -n 's/.*: \([0-9.]*\) images\/s.*/\1/p'; }
decode=() ours_crop=() theirs_crop=() ours_keras=() theirs_keras=()
for ((r = 1; r <= ROUNDS; r++)); do
  echo "round $r/$ROUNDS" >&2
  decode+=("$(ours --decode-only | rate)")
  ours_crop+=("$(ours "${CROP[@]}" | rate)")
  theirs_crop+=("$(theirs --augment crop | rate)")
  ours_keras+=("$(ours "${KERAS[@]}" | rate)")
  theirs_keras+=("$(theirs --augment keras | rate)")
done

/usr/bin/python3 - "$WORKERS" "${decode[*]}" "${ours_crop[*]}" "${theirs_crop[*]}" "${ours_keras[*]}" "${theirs_keras[*]}" <<'PY'
import statistics, sys
workers = int(sys.argv[1])
decode, oc, tc, ok, tk = (statistics.median(map(float, a.split())) for a in sys.argv[2:7])
print(f"\n| transforms ({workers} workers, batch 32, 224x224, median of runs) | torchvision img/s | tltrain img/s | tltrain / torchvision |")
print("|---|---:|---:|---:|")
print(f"| RandomResizedCrop + flip (torchvision recipe) | {tc:.1f} | {oc:.1f} | **{oc / tc:.2f}x** |")
print(f"| Keras set: centre crop, rotation, shift, shear, zoom, flip | {tk:.1f} | {ok:.1f} | **{ok / tk:.2f}x** |")
print(f"\nOpenCV full decode only (read + cv::imdecode, no transforms): {decode:.1f} images/s = "
      f"{decode / tc:.2f}x torchvision's crop pipeline.")
print(f"tltrain's crop pipeline runs at {100 * oc / decode:.0f}% of the decode-only rate, the Keras set at {100 * ok / decode:.0f}%.")
PY
