#!/usr/bin/env bash
# The Deploy table (issue 16): one hymenoptera model (configs/hymenoptera.json) shipped three ways,
# TorchScript fp32, ONNX run by OpenCV DNN, int8 TorchScript, measured one after the other in one
# run: file size, val accuracy (tltrain predict's top class against the image's folder), predict
# images/s (the val set REPEAT times, decoding included) and serve requests/s at concurrency 32
# (wrk on loopback, bench/post_image.lua). Prints a markdown table.
#   bench/deploy_bench.sh [SECONDS per serve point, default 15]
# Env: TLTRAIN_BIN (default build/tltrain), WORK (default a fresh temp folder), CHECKPOINT (a
#      trained checkpoint to ship instead of training one), REPEAT (default 3), CALIBRATION (default 256).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
bench_prepare deploy_bench
TLTRAIN_BIN=${TLTRAIN_BIN:-build/tltrain}
secs=${1:-15}
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
repeat=${REPEAT:-3}
val=$SHARED/data/hymenoptera/val
image=$(find "$val" -name '*.jpg' | sort | head -n 1)
port=18191
run() {  # run LOG ARGS...: tltrain ARGS > LOG, failing loudly
  local log=$1; shift
  "$TLTRAIN_BIN" "$@" > "$log" 2>&1 || { tail -n 20 "$log" >&2; exit 1; }
}
ck=${CHECKPOINT:-$work/run/checkpoints/best.pt}
if [[ ! -f $ck ]]; then
  echo "deploy_bench: training configs/hymenoptera.json into $work/run" >&2
  run "$work/fit.log" fit --config configs/hymenoptera.json --set "output_dir=$work/run"
fi
run "$work/export_fp32.log" export --checkpoint "$ck" --out "$work/model.pt"
run "$work/export_onnx.log" export --checkpoint "$ck" --out "$work/model.onnx" --format onnx
run "$work/export_int8.log" export --checkpoint "$ck" --out "$work/model.int8.pt" --quantize int8 --calibration "${CALIBRATION:-256}"

# Accuracy from predict's JSON: the top class against the folder the image is in.
accuracy() {
  "$PY" -c '
import json, os, sys
rows = json.load(open(sys.argv[1]))
ok = sum(r["top"][0]["class"] == os.path.basename(os.path.dirname(r["path"])) for r in rows if "error" not in r)
print(f"{ok / len(rows):.4f} ({ok}/{len(rows)})")' "$1"
}
predict_rate() {  # MODEL: best of 3, images/s over REPEAT passes of val
  local inputs=() best=0
  for _ in $(seq "$repeat"); do inputs+=("$val"); done
  for _ in 1 2 3; do
    local t0 t1
    t0=$(date +%s.%N)
    "$TLTRAIN_BIN" predict --model "$1" --format json "${inputs[@]}" > "$work/predict_rate.json" 2>/dev/null
    t1=$(date +%s.%N)
    best=$(awk -v n="$(grep -c '"path"' "$work/predict_rate.json")" -v t="$(echo "$t1 - $t0" | bc)" -v b="$best" \
      'BEGIN {r = n / t; print (r > b ? r : b)}')
  done
  printf '%.1f' "$best"
}
pid=
trap '[ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null' EXIT
serve_rate() {  # MODEL: requests/s at c=32 after a warm-up, and non-2xx answers
  "$TLTRAIN_BIN" serve --model "$1" --port "$port" > "$work/serve.log" 2>&1 &
  pid=$!
  wait_up "$port"
  wrk -t2 -c8 -d3s -s bench/post_image.lua "http://127.0.0.1:$port/predict" -- "$image" > /dev/null
  local out
  out=$(wrk -t2 -c32 -d"${secs}s" --timeout 10s -s bench/post_image.lua "http://127.0.0.1:$port/predict" -- "$image")
  kill -TERM "$pid"
  wait "$pid" || true
  pid=
  echo "$(awk '/^Requests\/sec:/ {printf "%.1f", $2}' <<<"$out") | $(awk '/Non-2xx/ {print $NF}' <<<"$out" | grep . || echo 0)"
}

echo "checkpoint: $ck; val: $val ($(find "$val" -type f | wc -l) files), predict over $repeat passes, serve $secs s at c=32 with $image"
echo "$(nproc) cores, $(date -u +%F); int8: $(grep -o 'int8 ([a-z0-9]* engine) calibrated on [0-9]* images' "$work/export_int8.log")"
echo
echo "| format | runtime | file size | val accuracy | predict images/s | serve requests/s (c=32) | non-2xx |"
echo "|---|---|---|---|---|---|---|"
for spec in "TorchScript fp32|LibTorch|model.pt" "ONNX (opset 10)|OpenCV DNN|model.onnx" "TorchScript int8|LibTorch quantized|model.int8.pt"; do
  IFS='|' read -r name runtime file <<<"$spec"
  "$TLTRAIN_BIN" predict --model "$work/$file" --format json "$val" > "$work/$file.predict.json" 2>/dev/null
  size=$(awk -v b="$(stat -c %s "$work/$file")" 'BEGIN {printf "%.1f MiB", b / 1048576}')
  echo "| $name | $runtime | $size | $(accuracy "$work/$file.predict.json") | $(predict_rate "$work/$file") | $(serve_rate "$work/$file") |"
done
echo
echo "files kept in $work"
