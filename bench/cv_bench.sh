#!/usr/bin/env bash
# issue 14's cv targets, side by side in one run on hymenoptera with the shared MobileNetV2:
# 5-fold cv of the head stage alone against one fit of it (target <= 2x), and 5-fold cv of the
# whole two-stage configs/hymenoptera.json against one fit of it (target <= 5x). Wall seconds of
# the whole command (cv includes its report; fit its final evaluation and report).
#   bench/cv_bench.sh [ROUNDS]     (default 1 round: fit, cv, fit, cv for the two configs)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
bench_prepare cv_bench
TLTRAIN_BIN=${TLTRAIN_BIN:-build/tltrain}
rounds=${1:-1}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
head_stage=$("$PY" -c 'import json,re; t=open("configs/hymenoptera.json").read(); t=re.sub(r"//[^\n]*", "", t); print(json.dumps([json.loads(t)["stages"][0]]))')
wall() {  # wall seconds of "$@", its output in $work/log
  local t0 t1
  t0=$(date +%s.%N)
  "$@" > "$work/log" 2>&1 || { tail -n 20 "$work/log" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}
for r in $(seq "$rounds"); do
  for what in head whole; do
    sets=(--set "output_dir=$work/run")
    [[ $what == head ]] && sets+=(--set "stages=$head_stage")
    rm -rf "$work/run"; f=$(wall "$TLTRAIN_BIN" fit --config configs/hymenoptera.json "${sets[@]}")
    fit_acc=$(grep -o 'best val_accuracy: [0-9.]*' "$work/log" | awk '{print $3}')
    rm -rf "$work/run"; c=$(wall "$TLTRAIN_BIN" cv --folds 5 --config configs/hymenoptera.json "${sets[@]}")
    cv_acc=$(grep '^val_accuracy:' "$work/log")
    printf '%s round %d: fit %.1f s (best val_accuracy %s), 5-fold cv %.1f s (%s): cv/fit %.2f\n' \
      "$what" "$r" "$f" "$fit_acc" "$c" "$cv_acc" "$(echo "$c / $f" | bc -l)"
  done
done
