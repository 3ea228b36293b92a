#!/usr/bin/env bash
# Training-speed benchmark, all on this machine in one go:
#   (a) Python eager fine-tuning (bench/reference/finetune_speed.py), batch 32 and --micro 8;
#   (b) tltrain fine-tuning, the same stage (top 20% of MobileNetV2, SGD 1e-4, no feature cache);
#   (c) tltrain head-only stage with the feature cache vs without.
# Prints a markdown table. Run from anywhere; needs build/tltrain and ../shared (data, weights).
#
# Environment (defaults sized for ~10 minutes on 2 busy cores):
#   E=3               epochs of the fine-tune runs, Python and tltrain (tltrain epoch 1 is skipped when E > 1)
#   HEAD_EPOCHS=10    epochs of the head-only stage in (c)
#   CACHE_VIEWS=5     feature_cache views in (c) (0: one un-augmented view)
#   THREADS=2         torch intra-op threads (Python) / threads.intra_op (tltrain)
#   WORKERS=2         DataLoader workers (Python) / threads.loader (tltrain)
#   SHARED=../shared  DATA=$SHARED/data/hymenoptera  WEIGHTS=$SHARED/models/mobilenet_v2_imagenet.pth
#   OUT=<tmp dir>     where the runs' logs are kept
#   TLTRAIN_BIN=build/tltrain  the binary to measure
#   TORCH2_PY=<python>  PyTorch 2.x from PyPI (default: bench/torch2_reference.sh's venv when
#                     ready): (a) again with it, eager and under torch.compile; "" leaves it out
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/common.sh
BIN=${TLTRAIN_BIN:-build/tltrain}  # another build to compare, e.g. one saved before a refactor
bench_prepare train_bench
E=${E:-3}
HEAD_EPOCHS=${HEAD_EPOCHS:-10}
CACHE_VIEWS=${CACHE_VIEWS:-5}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-2}
DATA=${DATA:-$SHARED/data/hymenoptera}
OUT=${OUT:-$(mktemp -d /tmp/train_bench.XXXXXX)}
CONFIG=configs/hymenoptera.json
mkdir -p "$OUT"
TORCH2_PY=$(torch2_py)


now() { date +%s.%N; }
# jsonl_stat FILE what [skip_first]: what = ips (mean images_per_s) | secs (sum of seconds)
jsonl_stat() {
  "$PY" - "$@" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
skip = len(sys.argv) > 3 and sys.argv[3] == "skip" and len(rows) > 1
rows = rows[1:] if skip else rows
key = {"ips": "images_per_s", "secs": "seconds"}[sys.argv[2]]
vals = [r[key] for r in rows]
print(f"{(sum(vals) / len(vals) if sys.argv[2] == 'ips' else sum(vals)):.3f}")
EOF
}
json_field() { "$PY" -c 'import json,sys; print(f"{json.load(open(sys.argv[1]))[sys.argv[2]]:.3f}")' "$1" "$2"; }
ratio() { "$PY" -c 'import sys; a, b = map(float, sys.argv[1:]); print(f"{a / b:.2f}" if b else "n/a")' "$1" "$2"; }

# tltrain fit with the data, threads and output dir set; stages given as JSON in $1; run dir in $2.
tl_fit() {
  local stages=$1 run=$2
  "$BIN" fit --config "$CONFIG" \
    --set "stages=$stages" \
    --set "data.train=$DATA/train" --set "data.val=$DATA/val" \
    --set "model.backbone=$BACKBONE" \
    --set "output_dir=$run" \
    --set "threads.intra_op=$THREADS" --set "threads.loader=$WORKERS"
}

echo "train_bench: logs in $OUT (E=$E HEAD_EPOCHS=$HEAD_EPOCHS CACHE_VIEWS=$CACHE_VIEWS THREADS=$THREADS WORKERS=$WORKERS)" >&2

# (a) Python fine-tuning.
for micro in 0 8; do
  echo "train_bench: python fine-tune, micro $micro" >&2
  "$PY" bench/reference/finetune_speed.py --config "$CONFIG" --weights "$WEIGHTS" --data "$DATA/train" \
    --epochs "$E" --batch 32 --micro "$micro" --threads "$THREADS" --workers "$WORKERS" \
    >"$OUT/py_micro$micro.json" 2>"$OUT/py_micro$micro.err"
done

# (a') the same under PyTorch 2.x, eager and compiled.
py2_runs=()
if [[ -n "$TORCH2_PY" ]]; then
  for mode in eager compile; do
    for micro in 0 8; do
      echo "train_bench: PyTorch 2.x ($mode) fine-tune, micro $micro" >&2
      "$TORCH2_PY" bench/reference/finetune_speed.py --config "$CONFIG" --weights "$WEIGHTS" --data "$DATA/train" \
        --epochs "$E" --batch 32 --micro "$micro" --threads "$THREADS" --workers "$WORKERS" $([[ $mode == compile ]] && echo --compile) \
        >"$OUT/py2_${mode}_micro$micro.json" 2>"$OUT/py2_${mode}_micro$micro.err"
      py2_runs+=("${mode}_micro$micro")
    done
  done
fi

# (b) tltrain fine-tuning (micro_batch left at its default: 8 on CPU).
echo "train_bench: tltrain fine-tune" >&2
FT_STAGES='[{"name":"finetune","epochs":'"$E"',"trainable":{"fraction":0.2},"optimizer":{"name":"sgd","lr":1e-4,"momentum":0.9},"feature_cache":false}]'
t0=$(now)
tl_fit "$FT_STAGES" "$OUT/tl_finetune" >"$OUT/tl_finetune.out" 2>&1
t1=$(now)
TL_FT_WALL=$("$PY" -c "print(f'{$t1 - $t0:.1f}')")

# (c) head-only stage, feature cache vs none.
head_stages() {  # $1: the feature_cache value
  echo '[{"name":"head","epochs":'"$HEAD_EPOCHS"',"trainable":"head","optimizer":{"name":"adam","lr":1e-3},"feature_cache":'"$1"'}]'
}
echo "train_bench: tltrain head stage with the feature cache" >&2
t0=$(now)
tl_fit "$(head_stages '{"enabled":true,"views":'"$CACHE_VIEWS"'}')" "$OUT/tl_head_cache" >"$OUT/tl_head_cache.out" 2>&1
t1=$(now)
echo "train_bench: tltrain head stage without the feature cache" >&2
tl_fit "$(head_stages false)" "$OUT/tl_head_nocache" >"$OUT/tl_head_nocache.out" 2>&1
t2=$(now)
CACHE_WALL=$("$PY" -c "print(f'{$t1 - $t0:.1f}')")
NOCACHE_WALL=$("$PY" -c "print(f'{$t2 - $t1:.1f}')")

PY32=$(json_field "$OUT/py_micro0.json" images_per_s)
PY8=$(json_field "$OUT/py_micro8.json" images_per_s)
PY32E=$(json_field "$OUT/py_micro0.json" images_per_s_epochs_after_first)
PY8E=$(json_field "$OUT/py_micro8.json" images_per_s_epochs_after_first)
TL=$(jsonl_stat "$OUT/tl_finetune/log.jsonl" ips skip)
PY2_ROWS=""
for run in "${py2_runs[@]}"; do
  f=$OUT/py2_$run.json
  ver=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["torch"])' "$f")
  label=${run/_micro0/, batch 32}
  PY2_ROWS+="| PyTorch $ver ${label/_micro8/, micro 8} | $(json_field "$f" images_per_s) | $(json_field "$f" images_per_s_epochs_after_first) | $(ratio "$TL" "$(json_field "$f" images_per_s)") |"$'\n'
done
CACHE_SECS=$(jsonl_stat "$OUT/tl_head_cache/log.jsonl" secs)
NOCACHE_SECS=$(jsonl_stat "$OUT/tl_head_nocache/log.jsonl" secs)

cat <<EOF

### Training speed — $(nproc) cores visible, threads $THREADS, loader $WORKERS, $(date -u +%Y-%m-%dT%H:%MZ)

Fine-tuning MobileNetV2, top 20% of blocks (features.15..18), BN frozen, SGD 1e-4, batch 32, $E epoch(s), $DATA/train:

| run | images/s (first batch skipped) | images/s per epoch, epochs 2..E | tltrain / this |
|---|---:|---:|---:|
| Python eager, batch 32 | $PY32 | $PY32E | $(ratio "$TL" "$PY32") |
| Python eager, micro 8 | $PY8 | $PY8E | $(ratio "$TL" "$PY8") |
${PY2_ROWS}| tltrain fit (micro_batch default 8), epochs 2..E of log.jsonl | — | $TL | 1.00 |

tltrain fine-tune command wall time (incl. startup and per-epoch validation): ${TL_FT_WALL} s

Head-only stage, $HEAD_EPOCHS epochs, no early stopping:

| run | sum of log.jsonl seconds (train + val) | command wall time, s |
|---|---:|---:|
| feature_cache views $CACHE_VIEWS | $CACHE_SECS | $CACHE_WALL |
| feature_cache false | $NOCACHE_SECS | $NOCACHE_WALL |
| cache speedup (false / cache) | $(ratio "$NOCACHE_SECS" "$CACHE_SECS") | $(ratio "$NOCACHE_WALL" "$CACHE_WALL") |

(log.jsonl seconds leave out building the cache; the wall time includes it.) Logs: $OUT
EOF
