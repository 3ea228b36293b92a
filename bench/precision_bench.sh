#!/usr/bin/env bash
# Issue 15's mixed-precision figures on hymenoptera with the shared MobileNetV2: the two-stage
# configs/hymenoptera.json trained with precision fp32 and bf16 side by side, per seed: wall
# seconds of the whole fit, the fine-tune stage's training img/s (its log.jsonl) and the best
# val accuracy. bf16 autocast covers the training forward; the cache, validation and eval stay fp32.
# Then the whole network trained for 2 epochs (every layer, SGD 1e-4) both ways: its img/s.
#   bench/precision_bench.sh [SEEDS...]     (default: 42 1 2; "--whole": only the whole-network part)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
bench_prepare precision_bench
TLTRAIN_BIN=${TLTRAIN_BIN:-build/tltrain}
seeds=("$@")
((${#seeds[@]})) || seeds=(42 1 2)
[[ ${seeds[0]} == --whole ]] && seeds=()
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
grep -o 'avx512_bf16\|amx_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ' | sed 's/^/cpu bf16 features: /; s/$/\n/'
for seed in ${seeds[@]+"${seeds[@]}"}; do
  for p in fp32 bf16; do
    rm -rf "$work/run"
    t0=$(date +%s.%N)
    "$TLTRAIN_BIN" fit --config configs/hymenoptera.json --set "seed=$seed" --set "precision=$p" --set "output_dir=$work/run" \
      > "$work/log" 2>&1 || { tail -n 20 "$work/log" >&2; exit 1; }
    t1=$(date +%s.%N)
    acc=$(grep -o 'best val_accuracy: [0-9.]*' "$work/log" | awk '{print $3}')
    ips=$("$PY" -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; t=[e["images_per_s"] for e in r if e["stage"]==2]; print("%.1f" % (sum(t)/len(t)))' "$work/run/log.jsonl")
    printf 'seed %s %s: fit %.1f s, fine-tune %s img/s, best val_accuracy %s\n' "$seed" "$p" "$(echo "$t1 - $t0" | bc)" "$ips" "$acc"
  done
done
whole='[{"name": "all", "epochs": 2, "trainable": "all", "optimizer": {"name": "sgd", "lr": 1e-4, "momentum": 0.9}}]'
for p in fp32 bf16 fp32 bf16; do
  rm -rf "$work/run"
  "$TLTRAIN_BIN" fit --config configs/hymenoptera.json --set "precision=$p" --set "output_dir=$work/run" --set "stages=$whole" \
    > "$work/log" 2>&1 || { tail -n 20 "$work/log" >&2; exit 1; }
  ips=$("$PY" -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; print(" ".join("%.1f" % e["images_per_s"] for e in r))' "$work/run/log.jsonl")
  printf 'whole network %s: %s img/s (epochs 1, 2), best val_accuracy %s\n' "$p" "$ips" "$(grep -o 'best val_accuracy: [0-9.]*' "$work/log" | awk '{print $3}')"
done
