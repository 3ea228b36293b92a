#!/usr/bin/env bash
# Data-parallel benchmark on this machine: 1 rank × 2 threads vs 2 ranks × 1 thread (tltrain
# launch), same global batch, a fine-tune stage without the feature cache so every step
# all-reduces the trainable gradients. Prints images/s and all-reduce ms per step (epoch 2, so
# start-up is excluded). Run from the repository root after building.
#
# Environment:
#   DATA=tiny            tiny: synthetic squares + the test's tiny backbone (seconds);
#                        hymenoptera: ../shared data + MobileNetV2 (minutes; the backbone is made
#                        from the shared weights when missing)
#   BATCH=32             global batch (each of 2 ranks gets BATCH/2)
#   EPOCHS=3
#   OUT=<tmp dir>
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/tltrain
[[ -x $BIN ]] || { echo "dist_bench: $BIN is missing; build first" >&2; exit 1; }
DATA=${DATA:-tiny}
BATCH=${BATCH:-32}
EPOCHS=${EPOCHS:-3}
OUT=${OUT:-$(mktemp -d /tmp/dist_bench.XXXXXX)}
mkdir -p "$OUT"

if [[ $DATA == tiny ]]; then
  [[ -x build/tests/tltrain_tiny_backbone ]] || { echo "dist_bench: build the tests (tltrain_tiny_backbone) first" >&2; exit 1; }
  build/tests/tltrain_tiny_backbone "$OUT/tiny.pt" >/dev/null
  python3 - "$OUT/data" <<'PY'
# 4 classes of noisy solid 64x64 squares as 24-bit BMP (no Python packages needed).
import os, random, struct, sys
root, rng = sys.argv[1], random.Random(0)
def bmp(path, rgb, w=64, h=64):
    row = bytearray()
    for _ in range(w):
        row += bytes(max(0, min(255, c + rng.randint(-20, 20))) for c in reversed(rgb))
    data = bytes(row) * h
    hdr = b"BM" + struct.pack("<IHHI", 54 + len(data), 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, len(data), 2835, 2835, 0, 0)
    open(path, "wb").write(hdr + data)
for split, n in (("train", 64), ("val", 16)):
    for k, rgb in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]):
        d = os.path.join(root, split, f"c{k}"); os.makedirs(d, exist_ok=True)
        for i in range(n):
            bmp(os.path.join(d, f"{i}.bmp"), rgb)
PY
  TRAIN=$OUT/data/train VAL=$OUT/data/val BACKBONE=$OUT/tiny.pt SIZE=64
else
  source bench/common.sh
  bench_prepare dist_bench  # SHARED, BACKBONE (made from the shared weights when missing)
  TRAIN=$SHARED/data/hymenoptera/train VAL=$SHARED/data/hymenoptera/val SIZE=224
fi

cat > "$OUT/bench.json" <<JSON
{"seed": 1, "device": "cpu",
 "data": {"train": "$TRAIN", "val": "$VAL", "batch_size": $BATCH, "image_size": [$SIZE, $SIZE]},
 "model": {"backbone": "$BACKBONE", "head": {"hidden": [64]}},
 "stages": [{"name": "tune", "epochs": $EPOCHS, "trainable": {"fraction": 0.5},
             "optimizer": {"name": "sgd", "lr": 0.001, "momentum": 0.9}}]}
JSON

row() {  # label, run dir
  python3 - "$2/log.jsonl" "$1" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
r = rows[1] if len(rows) > 1 else rows[0]
ar = r.get("allreduce_ms_per_step")
print(f"| {sys.argv[2]} | {r['images_per_s']:.1f} | {'-' if ar is None else f'{ar:.2f}'} | {r['val_accuracy']:.3f} |")
PY
}

$BIN -q fit --config "$OUT/bench.json" --set output_dir="$OUT/one" --set threads.intra_op=2 --set threads.loader=2 >/dev/null
$BIN launch --nproc 2 -- -q fit --config "$OUT/bench.json" --set output_dir="$OUT/two" --set data.batch_size=$((BATCH / 2)) \
  --set threads.intra_op=1 --set threads.loader=1 >/dev/null
echo "dist_bench: $DATA, global batch $BATCH, epoch 2 of $EPOCHS ($(nproc) cores)"
echo "| run | images/s | all-reduce ms/step | val acc |"
echo "|---|---|---|---|"
row "1 rank x 2 threads" "$OUT/one"
row "2 ranks x 1 thread" "$OUT/two"
