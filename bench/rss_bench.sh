#!/usr/bin/env bash
# Peak memory of `tltrain fit` at 1x and TIMES x the data set (a copy made of links: every image
# TIMES times under new names, train and val alike), in RAM and with the feature cache over a
# small budget (it then lives in a memory-mapped file). Prints a markdown table of
# bench/peak_memory.py's figures: the high-water mark of resident memory, the private
# (anonymous) part, the file-backed part, and the wall time.
#   bench/rss_bench.sh [--set KEY=VALUE ...]   (the overrides go to every run)
# Environment: CONFIG=configs/hymenoptera.json  TIMES=10  BUDGET_MB=16  REPEAT=3  OUT=<tmp dir>
# Each point runs REPEAT times (one run moved by ~50 MiB between trials): the table gives the
# medians and every run's private figure; OUT/<label>.<k>.trace has each run's samples over time.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
bench_prepare rss_bench
CONFIG=${CONFIG:-configs/hymenoptera.json}
TIMES=${TIMES:-10}
BUDGET_MB=${BUDGET_MB:-16}
REPEAT=${REPEAT:-3}
OUT=${OUT:-$(mktemp -d /tmp/rss_bench.XXXXXX)}
mkdir -p "$OUT"
SETS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --set) SETS+=(--set "$2"); shift 2 ;;
    *) echo "rss_bench: unknown argument '$1' (only --set KEY=VALUE)" >&2; exit 2 ;;
  esac
done

# The config's data folders, as tltrain resolves them (relative to the current folder).
read -r TRAIN VAL < <("$PY" - "$CONFIG" <<'PY'
import json, os, re, sys
text = re.sub(r"^\s*//.*$|\s//[^\"\n]*$", "", open(sys.argv[1]).read(), flags=re.M)
d = json.loads(text)["data"]
print(os.path.abspath(d["train"]), os.path.abspath(d["val"]))
PY
)
"$PY" - "$TRAIN" "$VAL" "$OUT/x$TIMES" "$TIMES" <<'PY'
import os, sys
train, val, root, times = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
for split, src in (("train", train), ("val", val)):
    for cls in sorted(os.listdir(src)):
        if not os.path.isdir(os.path.join(src, cls)):
            continue
        os.makedirs(os.path.join(root, split, cls), exist_ok=True)
        for f in sorted(os.listdir(os.path.join(src, cls))):
            for k in range(times):
                dst = os.path.join(root, split, cls, f"{k}_{f}")
                if not os.path.lexists(dst):
                    os.symlink(os.path.join(src, cls, f), dst)
PY

run() {  # label, data root or "", extra --set; REPEAT runs, the median of each column
  local label=$1 data=$2; shift 2
  local sets=("${SETS[@]}" --set "output_dir=$OUT/run_$label")
  [[ -n $data ]] && sets+=(--set "data.train=$data/train" --set "data.val=$data/val")
  local k ms=()
  for ((k = 1; k <= REPEAT; k++)); do
    rm -rf "$OUT/run_$label"
    bench/peak_memory.py --trace "$OUT/$label.$k.trace" build/tltrain fit --config "$CONFIG" "${sets[@]}" "$@" \
      > "$OUT/$label.$k.log" 2> "$OUT/$label.$k.err"
    ms+=("$(tail -1 "$OUT/$label.$k.err")")
  done
  local train=${data:+$data/train}
  local imgs; imgs=$(find -L "${train:-$TRAIN}" -type f | wc -l)
  "$PY" - "$label" "$imgs" "${ms[@]}" <<'PY'
import json, statistics, sys
label, imgs, ms = sys.argv[1], sys.argv[2], [json.loads(m) for m in sys.argv[3:]]
med = {k: statistics.median(m[k] for m in ms) for k in ("hwm_mib", "anon_mib", "file_mib", "seconds")}
runs = ", ".join("%.0f" % m["anon_mib"] for m in ms)
print("| %s | %s | %.0f | %.0f (%s) | %.0f | %.0f |" % (label, imgs, med["hwm_mib"], med["anon_mib"], runs, med["file_mib"], med["seconds"]))
PY
}
echo "| run | training images | peak RSS MiB | peak private MiB (each run) | peak file-backed MiB | wall s |"
echo "|---|---:|---:|---:|---:|---:|"
run 1x ""
run "${TIMES}x" "$OUT/x$TIMES"
run "1x_budget${BUDGET_MB}" "" --set "feature_cache_memory_mb=$BUDGET_MB"
run "${TIMES}x_budget${BUDGET_MB}" "$OUT/x$TIMES" --set "feature_cache_memory_mb=$BUDGET_MB"
echo
echo "Command: bench/rss_bench.sh ${SETS[*]:-}  (CONFIG=$CONFIG TIMES=$TIMES BUDGET_MB=$BUDGET_MB REPEAT=$REPEAT); logs in $OUT"
