#!/usr/bin/env bash
# tltrain tune against the shipped recipe on one config, in one run: `fit` as shipped, then
# `tune --budget B --trials N --fit`; each side's val accuracy is its best.pt's eval.json (the
# user's validation set, which the search never reads). Prints a markdown row.
#   bench/tune_bench.sh CONFIG [BUDGET, default 20m] [TRIALS, default 27]
# Env: WORK (default /tmp/tune_bench).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
config=$1 budget=${2:-20m} trials=${3:-27}
[[ -x build/tltrain ]] || { echo "tune_bench: build/tltrain is missing; build it first" >&2; exit 1; }
work=${WORK:-/tmp/tune_bench}/$(basename "$config" .json)
rm -rf "$work"
mkdir -p "$work"
t0=$(date +%s)
build/tltrain fit --config "$config" --set output_dir="$work/shipped" >"$work/fit.log" 2>&1
t1=$(date +%s)
build/tltrain tune --config "$config" --budget "$budget" --trials "$trials" --fit --set output_dir="$work/tuned" >"$work/tune.log" 2>&1
t2=$(date +%s)
best=$(/usr/bin/python3 -c 'import json, sys; t = json.load(open(sys.argv[1])); b = t["best"]; c = t["candidates"][b["candidate"]]
print("cand %d rung %d holdout %.4f: %s" % (b["candidate"], b["rung"], b["value"], ", ".join("%s %s" % (k, ("%.3g" % v) if isinstance(v, float) else v) for k, v in c.items())))' "$work/tuned/tune/tune.json")
searched=$(/usr/bin/python3 -c 'import json, sys; t = json.load(open(sys.argv[1])); print(len([r for r in t["results"] if not r.get("carried")]), t["status"], "%.0f" % t["seconds"])' "$work/tuned/tune/tune.json")
echo "| config | shipped val acc | fit s | tuned val acc | tune + fit s | runs, status, search s | winner |"
echo "|---|---:|---:|---:|---:|---|---|"
echo "| $(basename "$config") | $(eval_accuracy "$work/shipped/eval.json") | $((t1 - t0)) | $(eval_accuracy "$work/tuned/tune/best/eval.json") | $((t2 - t1)) | $searched | $best |"
