#!/usr/bin/env bash
# After bench/tune_bench.sh CONFIG: the shipped config and the search's best_config.json, each
# trained again with other seeds (the search itself is not rerun), so that the gain is set against
# the spread a seed alone gives; then the paired McNemar test of seed 42's two evaluations.
#   bench/tune_seeds.sh CONFIG [SEEDS, default "1 2"]
# Env: WORK (default /tmp/tune_bench), as tune_bench.sh used.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
config=$1 seeds=${2:-1 2}
work=${WORK:-/tmp/tune_bench}/$(basename "$config" .json)
best=$work/tuned/tune/best_config.json
[[ -f "$best" && -f "$work/shipped/eval.json" ]] || { echo "tune_seeds: run bench/tune_bench.sh $config first" >&2; exit 1; }
shipped=("$(eval_accuracy "$work/shipped/eval.json")") tuned=("$(eval_accuracy "$work/tuned/tune/best/eval.json")")
for s in $seeds; do
  build/tltrain fit --config "$config" --set seed="$s" --set output_dir="$work/shipped_s$s" >"$work/shipped_s$s.log" 2>&1
  build/tltrain fit --config "$best" --set seed="$s" --set output_dir="$work/tuned_s$s" >"$work/tuned_s$s.log" 2>&1
  shipped+=("$(eval_accuracy "$work/shipped_s$s/eval.json")") tuned+=("$(eval_accuracy "$work/tuned_s$s/eval.json")")
done
stats() { /usr/bin/python3 -c 'import statistics as s, sys; v = [float(x) for x in sys.argv[1:]]; print("%s: mean %.4f, sd %.4f" % (" ".join(sys.argv[1:]), s.mean(v), s.stdev(v)))' "$@"; }
echo "seeds: the config's own, then $seeds"
echo "shipped val acc $(stats "${shipped[@]}")"
echo "tuned   val acc $(stats "${tuned[@]}")"
echo "config's seed, A shipped and B tuned: $(/usr/bin/python3 bench/mcnemar.py "$work/shipped/eval.json" "$work/tuned/tune/best/eval.json")"
