#!/usr/bin/env bash
# tltrain vs its Python reference on one config, for several seeds: accuracy and wall time.
#   bench/recipe_compare.sh [--set KEY=VALUE ...]     (the --set overrides go to both sides)
# For each seed: `$TLTRAIN_BIN fit --config $CONFIG --set seed=S ...` (default build/tltrain) and
# `bench/reference/recipe.py --config $CONFIG --seed S ...`, each timed as a whole command;
# best/final val accuracy from tltrain's log.jsonl and recipe.py's JSON. Prints a markdown table.
#
# Environment: SEEDS="1 2 3"  CONFIG=configs/hymenoptera.json  THREADS=2  WORKERS=2
#   SHARED=../shared  WEIGHTS=$SHARED/models/mobilenet_v2_imagenet.pth
#   DATA=<dir with train/ and val/>  (default: the config's own data paths)   OUT=<tmp dir>
# recipe.py also runs under PyTorch 2.x when bench/torch2_reference.sh's venv is ready (or TORCH2_PY
# names one; "" leaves it out): its wall time gets its own columns, and tltrain's is held against
# the faster Python.
# Smoke test: DATA=/tmp/tiny SEEDS=1 bench/recipe_compare.sh --set 'stages[0].epochs=1' --set 'stages[1].epochs=1'
set -euo pipefail
cd "$(dirname "$0")/.."

source bench/common.sh
BIN=${TLTRAIN_BIN:-build/tltrain}  # another build to compare, e.g. one saved before a refactor
bench_prepare recipe_compare
SEEDS=${SEEDS:-1 2 3}
CONFIG=${CONFIG:-configs/hymenoptera.json}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-2}
OUT=${OUT:-$(mktemp -d /tmp/recipe_compare.XXXXXX)}
mkdir -p "$OUT"
PY2=$(torch2_py)


# Overrides shared by both sides: the command line's --set pairs, threads, and DATA if given.
SETS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --set) SETS+=(--set "$2"); shift 2 ;;
    --set=*) SETS+=(--set "${1#--set=}"); shift ;;
    *) echo "recipe_compare: unknown argument '$1' (only --set KEY=VALUE)" >&2; exit 2 ;;
  esac
done
SETS+=(--set "threads.intra_op=$THREADS" --set "threads.loader=$WORKERS")
if [[ -n "${DATA:-}" ]]; then SETS+=(--set "data.train=$DATA/train" --set "data.val=$DATA/val"); fi

now() { date +%s.%N; }
RESULTS=$OUT/results.tsv
: >"$RESULTS"
echo "recipe_compare: logs in $OUT (seeds $SEEDS, threads $THREADS, workers $WORKERS)" >&2
for S in $SEEDS; do
  echo "recipe_compare: seed $S — tltrain" >&2
  t0=$(now)
  "$BIN" fit --config "$CONFIG" "${SETS[@]}" --set "seed=$S" --set "output_dir=$OUT/tl_seed$S" \
    >"$OUT/tl_seed$S.out" 2>&1 || { echo "recipe_compare: tltrain failed, see $OUT/tl_seed$S.out" >&2; exit 1; }
  t1=$(now)
  echo "recipe_compare: seed $S — python recipe" >&2
  bench/reference/recipe.py --config "$CONFIG" --weights "$WEIGHTS" --seed "$S" \
    --threads "$THREADS" --workers "$WORKERS" "${SETS[@]}" --json-out "$OUT/py_seed$S.json" \
    >"$OUT/py_seed$S.out" 2>&1 || { echo "recipe_compare: recipe.py failed, see $OUT/py_seed$S.out" >&2; exit 1; }
  t2=$(now)
  if [[ -n "$PY2" ]]; then
    echo "recipe_compare: seed $S — python recipe, PyTorch 2.x" >&2
    "$PY2" bench/reference/recipe.py --config "$CONFIG" --weights "$WEIGHTS" --seed "$S" \
      --threads "$THREADS" --workers "$WORKERS" "${SETS[@]}" --json-out "$OUT/py2_seed$S.json" \
      >"$OUT/py2_seed$S.out" 2>&1 || { echo "recipe_compare: recipe.py (2.x) failed, see $OUT/py2_seed$S.out" >&2; exit 1; }
  fi
  t3=$(now)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$S" "$OUT/tl_seed$S/log.jsonl" "$OUT/py_seed$S.json" \
    "$("$PY" -c "print($t1 - $t0)")" "$("$PY" -c "print($t2 - $t1)")" "$OUT/py2_seed$S.json" "$("$PY" -c "print($t3 - $t2)")" >>"$RESULTS"
done

"$PY" - "$RESULTS" "$CONFIG" "$THREADS" "$WORKERS" <<'EOF'
import json, os, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
print(f"\n### tltrain vs Python reference — {sys.argv[2]}, threads {sys.argv[3]}, loader/workers {sys.argv[4]}, "
      f"{os.cpu_count()} cores visible\n")
print("| seed | tltrain best val_acc | tltrain final val_acc | tltrain wall s | Python 1.13 best val_acc | "
      "Python 1.13 final val_acc | Python 1.13 wall s | Python 2.x best val_acc | Python 2.x wall s | tltrain / faster Python wall |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
acc = []
for seed, log, pyj, tl_wall, py_wall, py2j, py2_wall in rows:
    hist = [json.loads(l) for l in open(log) if l.strip()]
    vals = [h["val_accuracy"] for h in hist if h.get("val_accuracy") is not None]
    py = json.load(open(pyj))
    py2 = json.load(open(py2j)) if os.path.exists(py2j) else None
    w2 = float(py2_wall) if py2 else float("inf")
    r = (max(vals), vals[-1], float(tl_wall), py["best_val_accuracy"], py["final_val_accuracy"], float(py_wall),
         py2["best_val_accuracy"] if py2 else float("nan"), w2)
    acc.append(r)
    print(f"| {seed} | {r[0]:.4f} | {r[1]:.4f} | {r[2]:.1f} | {r[3]:.4f} | {r[4]:.4f} | {r[5]:.1f} | {r[6]:.4f} | {r[7]:.1f} | "
          f"{r[2] / min(r[5], r[7]):.2f} |")
mean = [sum(r[i] for r in acc) / len(acc) for i in range(8)]
print(f"| mean | {mean[0]:.4f} | {mean[1]:.4f} | {mean[2]:.1f} | {mean[3]:.4f} | {mean[4]:.4f} | {mean[5]:.1f} | {mean[6]:.4f} | "
      f"{mean[7]:.1f} | {mean[2] / min(mean[5], mean[7]):.2f} |")
print("\nWall time = the whole command (startup, data scan, feature cache, training, validation); "
      "best = max val_accuracy over all epochs, final = the last epoch's.")
EOF
echo "Logs: $OUT"
