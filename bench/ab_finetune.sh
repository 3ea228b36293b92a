#!/usr/bin/env bash
# Two tltrain builds in turn on train_bench.sh's fine-tune stage (top 20% of MobileNetV2, SGD,
# no feature cache, 3 epochs), N rounds, so that drift of the machine hits both alike:
#   bench/ab_finetune.sh OLD_BINARY NEW_BINARY [N=4]
# Prints images/s (epochs 2..3 of log.jsonl) per run and the means. Needs ../shared.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
bench_prepare ab_finetune
A=${1:?usage: bench/ab_finetune.sh OLD_BINARY NEW_BINARY [N]} B=${2:?usage: bench/ab_finetune.sh OLD_BINARY NEW_BINARY [N]}
N=${3:-4}
DATA=${DATA:-$SHARED/data/hymenoptera}
OUT=${OUT:-$(mktemp -d /tmp/ab_finetune.XXXXXX)}
mkdir -p "$OUT"
FT='[{"name":"finetune","epochs":3,"trainable":{"fraction":0.2},"optimizer":{"name":"sgd","lr":1e-4,"momentum":0.9},"feature_cache":false}]'
for i in $(seq "$N"); do
  for side in A B; do
    bin=$A; [[ $side == B ]] && bin=$B
    run=$OUT/${side}_$i
    "$bin" fit --config configs/hymenoptera.json --set "stages=$FT" --set "data.train=$DATA/train" --set "data.val=$DATA/val" \
      --set "model.backbone=$BACKBONE" --set "output_dir=$run" --set threads.intra_op=2 --set threads.loader=2 >"$run.out" 2>&1
    "$PY" -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][1:]; print(sys.argv[2], sum(x['images_per_s'] for x in r)/len(r))" \
      "$run/log.jsonl" "$side"
  done
done | tee "$OUT/ips.txt"
"$PY" - "$OUT/ips.txt" <<'PYEOF'
import sys
v = {"A": [], "B": []}
for line in open(sys.argv[1]):
    side, ips = line.split()
    v[side].append(float(ips))
a, b = (sum(v[k]) / len(v[k]) for k in "AB")
print(f"mean images/s: old {a:.1f}, new {b:.1f}, new / old {b / a:.3f}")
PYEOF
