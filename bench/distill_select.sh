#!/usr/bin/env bash
# Chooses issue 15's distillation recipe without the reported val set: each candidate student
# recipe below is trained plain and distilled on hymenoptera's training images alone, 25% of them
# held out (bench/distill_bench.sh with SPLIT=0.25, one teacher trained on the same 75%), and the
# candidate whose distilled student gains the most over its plain twin is printed for the real run:
#   STUDENT_ARGS="<the chosen --set options>" bench/distill_bench.sh 1 2 3
#   bench/distill_select.sh [SEED]      (default: 1; it also draws the held-out 25%)
set -euo pipefail
cd "$(dirname "$0")/.."
seed=${1:-1}
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
# Candidates are chosen from the distillation literature, not from hymenoptera's val set:
#   patient: the teacher labels many augmented views of each image (20 cached views, 20 head
#            epochs without early stopping: "a good teacher is patient and consistent").
#   deeper:  the student's top half of the backbone fine-tunes for 10 epochs at SGD 1e-4, where the
#            teacher's per-view targets can move features, not just the head.
declare -A candidates=(
  [patient]="--set stages[0].feature_cache.views=20 --set stages[0].epochs=20 --set stages[0].early_stopping.patience=20"
  [deeper]="--set stages[1].trainable.fraction=0.5 --set stages[1].epochs=10"
)
best="" best_gain=""
for name in patient deeper; do
  out=$(WORK="$work/$name" TEACHER="$work/teacher_seed$seed" SPLIT=0.25 PREDICT=0 STUDENT_ARGS="${candidates[$name]}" \
        bash bench/distill_bench.sh "$seed")
  echo "$out" | sed "s/^/$name: /"
  read -r plain kd < <(echo "$out" | sed -n 's/^mean over seeds.*: student \([0-9.]*\), distilled student \([0-9.]*\)$/\1 \2/p')
  gain=$(echo "$kd - $plain" | bc -l)
  echo "$name: distilled - plain = $gain (held-out 25% of train)"
  if [[ -z $best_gain ]] || (($(echo "$gain > $best_gain" | bc -l))); then best=$name best_gain=$gain; fi
done
echo "chosen: $best (gain $best_gain): STUDENT_ARGS=\"${candidates[$best]}\" bash bench/distill_bench.sh 1 2 3"
