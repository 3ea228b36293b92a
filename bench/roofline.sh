#!/usr/bin/env bash
# Where the limit is: tltrain's achieved GFLOP/s per backbone against this machine's measured
# peaks, all in one run. Prints a markdown table.
#   bench/roofline.sh [ARCH ...]        (default: mobilenet_v2 resnet50 efficientnet_b0)
# 1. bench/reference/flops.py (Debian's torch, same oneDNN and OpenBLAS): GEMM / dense 3x3 /
#    pointwise / depthwise convolution GFLOP/s and copy GB/s on THREADS threads, and each
#    backbone's forward GFLOP per image and per block.
# 2. tltrain, per backbone (build/tests/exported, random weights: speed does not depend on them),
#    N synthetic 320x320 JPEGs at the native size: `fit` of 2 epochs, epoch 2 from log.jsonl:
#      forward  = its validation pass over the same N images (optimized copy, chunks of 8 side
#                 by side): the epoch's seconds minus its training time
#      train    = training the whole network at batch 8 (BatchNorm on batch statistics, as
#                 bench/backbone_speed.sh; lr 0), counted as 3 forwards (forward, input and
#                 weight gradients)
#    Both include decoding on the loader threads, which share the cores.
# 3. MobileNetV2 with the ImageNet weights, the hymenoptera fine-tune (top 20% of blocks, frozen
#    BatchNorm, micro-batches of 8, batch 32) for 2 epochs: counted as one forward of every block
#    plus two of the blocks that train.
# Environment: THREADS=2  N=64  EXPORTED=build/tests/exported  OUT=<tmp dir>
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
bench_prepare roofline
THREADS=${THREADS:-2}
N=${N:-64}
DIR=${EXPORTED:-build/tests/exported}
OUT=${OUT:-$(mktemp -d /tmp/roofline.XXXXXX)}
mkdir -p "$OUT"
archs=("$@")
[[ ${#archs[@]} -gt 0 ]] || archs=(mobilenet_v2 resnet50 efficientnet_b0)
for a in "${archs[@]}"; do
  [[ -f $DIR/$a.pt ]] || { echo "roofline: $DIR/$a.pt is missing: run the suite's export_backbones first (ctest -R export_backbones)" >&2; exit 1; }
done

"$PY" bench/reference/flops.py --threads "$THREADS" "${archs[@]}" > "$OUT/flops.json"
synthetic_jpegs "$OUT/data" "$N"
for a in "${archs[@]}"; do
  cat > "$OUT/$a.json" <<JSON
{"seed": 1, "device": "cpu", "threads": {"intra_op": $THREADS, "loader": $THREADS}, "monitor": "loss",
 "data": {"train": "$OUT/data", "val": "$OUT/data", "batch_size": 8},
 "model": {"backbone": "$DIR/$a.pt"}, "output_dir": "$OUT/run_$a",
 "stages": [{"epochs": 2, "trainable": "all", "feature_cache": false, "batch_norm": "train",
             "optimizer": {"name": "sgd", "lr": 0}}]}
JSON
  build/tltrain fit --config "$OUT/$a.json" > "$OUT/$a.log" 2>&1 || { echo "roofline: $a failed, see $OUT/$a.log" >&2; exit 1; }
done
build/tltrain fit --config configs/hymenoptera.json --set "threads.intra_op=$THREADS" --set "threads.loader=$THREADS" \
  --set 'stages=[{"name": "finetune", "epochs": 2, "trainable": {"fraction": 0.2}, "optimizer": {"name": "sgd", "lr": 1e-4, "momentum": 0.9}}]' \
  --set "output_dir=$OUT/run_finetune" > "$OUT/finetune.log" 2>&1 || { echo "roofline: the fine-tune failed, see $OUT/finetune.log" >&2; exit 1; }

"$PY" - "$OUT" "$N" "${archs[@]}" <<'PY'
import json, math, sys
out, n, archs = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
f = json.load(open(f"{out}/flops.json"))
pk = f["peaks"]
print(f"Peaks on {f['threads']} threads (torch {f['torch']}): GEMM {pk['gemm']:.1f} GFLOP/s, dense 3x3 conv {pk['conv3x3']:.1f}, "
      f"pointwise 1x1 {pk['conv1x1']:.1f}, depthwise 3x3 {pk['depthwise3x3']:.1f}; copy {pk['copy_gbs']:.1f} GB/s.")
print()
print("| backbone | GFLOP/image | depthwise share | pass | images/s | GFLOP/s | % of GEMM peak |")
print("|---|---:|---:|---|---:|---:|---:|")
def last(path):
    return [json.loads(l) for l in open(path)][-1]
for a in archs:
    c = f["archs"][a]
    e = last(f"{out}/run_{a}/log.jsonl")
    train = e["images_per_s"]
    fwd = n / (e["seconds"] - n / train)
    for label, ips, mult in (("forward (validation)", fwd, 1), ("train whole network, batch 8", train, 3)):
        g = ips * c["gflop"] * mult
        print(f"| `{a}` {c['input']}px | {c['gflop']:.2f} | {100 * c['depthwise_share']:.0f}% | {label} | {ips:.1f} | {g:.1f} | {100 * g / pk['gemm']:.0f}% |")
m = f["archs"].get("mobilenet_v2")
if m:
    blocks = m["blocks"]
    k = math.ceil(0.2 * len(blocks) - 1e-9)
    top = sum(b[1] for b in blocks[-k:])
    step = m["gflop"] + 2 * top
    ips = last(f"{out}/run_finetune/log.jsonl")["images_per_s"]
    g = ips * step
    print(f"| `mobilenet_v2` ImageNet, hymenoptera | {step:.2f} (step) | — | fine-tune top {k} blocks ({blocks[-k][0]}..), micro 8, batch 32 | {ips:.1f} | {g:.1f} | {100 * g / pk['gemm']:.0f}% |")
PY
echo
echo "Command: bench/roofline.sh ${archs[*]} (THREADS=$THREADS N=$N); logs in $OUT"
