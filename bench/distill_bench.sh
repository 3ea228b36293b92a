#!/usr/bin/env bash
# Issue 15's distillation experiment on hymenoptera with the shared MobileNetV2: the teacher is
# configs/hymenoptera.json (MobileNetV2 at 224, head then the top 20% fine-tuned); the student is
# the same recipe at 112x112 (resize 128, about 4x cheaper), trained plain and distilled from the
# teacher (tltrain distill, the defaults T 10 and alpha 0.9 unless DISTILL_ARGS says otherwise)
# over SEEDS (STUDENT_ARGS adds --set options to both students, e.g. a deeper fine-tune). Prints
# each run's best val accuracy (its best.pt, picked over both stages), the means, and predict
# img/s of the three exported models over the 397 hymenoptera images (decode included, best of 3).
# SPLIT=F runs everything (teacher included) on the training images alone, F of them held out as the
# validation set (data.validation_split): for choosing a recipe without the reported val set.
# PREDICT=0 skips the predict timings. bench/distill_select.sh drives it to choose a recipe.
#   bench/distill_bench.sh [SEEDS...]      (default: 1 2 3)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
bench_prepare distill_bench
TLTRAIN_BIN=${TLTRAIN_BIN:-build/tltrain}
seeds=("$@")
((${#seeds[@]})) || seeds=(1 2 3)
read -r -a kd_args <<< "${DISTILL_ARGS:-}"
work=${WORK:-$(mktemp -d)}
mkdir -p "$work"
read -r -a student_args <<< "${STUDENT_ARGS:-}"
split=() teacher_seed=()
if [[ -n ${SPLIT:-} ]]; then
  # The held-out images are drawn by the run's seed: the teacher takes the students' seed, so that
  # it never trained on what they are validated on.
  ((${#seeds[@]} == 1)) || { echo "distill_bench: SPLIT takes one seed (the split is drawn by it)" >&2; exit 2; }
  split=(--set data.val= --set "data.validation_split=$SPLIT")
  teacher_seed=(--set "seed=${seeds[0]}")
fi
teacher=${TEACHER:-$work/teacher${SPLIT:+_split${SPLIT}_seed${seeds[0]}}}  # TEACHER=DIR: a teacher run to reuse (trained if absent)
student=(--set data.image_size=112 --set data.resize=128 ${split[@]+"${split[@]}"} ${student_args[@]+"${student_args[@]}"})
acc() { grep -o 'best val_accuracy: [0-9.]*' "$1" | awk '{print $3}'; }
run() {  # run LOG ARGS...: tltrain ARGS > LOG, failing loudly
  local log=$1; shift
  "$TLTRAIN_BIN" "$@" > "$log" 2>&1 || { tail -n 20 "$log" >&2; exit 1; }
}
if [[ ! -f $teacher/checkpoints/best.pt ]]; then
  run "$teacher.log" fit --config configs/hymenoptera.json ${split[@]+"${split[@]}"} ${teacher_seed[@]+"${teacher_seed[@]}"} \
    --set "output_dir=$teacher"
fi
echo "teacher (224): best val_accuracy $(acc "$teacher.log")"
plain=() kd=()
for seed in "${seeds[@]}"; do
  rm -rf "$work/plain$seed" "$work/kd$seed"
  run "$work/plain$seed.log" fit --config configs/hymenoptera.json "${student[@]}" --set "seed=$seed" --set "output_dir=$work/plain$seed"
  run "$work/kd$seed.log" distill --teacher "$teacher/checkpoints/best.pt" ${kd_args[@]+"${kd_args[@]}"} --config configs/hymenoptera.json \
    "${student[@]}" --set "seed=$seed" --set "output_dir=$work/kd$seed"
  plain+=("$(acc "$work/plain$seed.log")") kd+=("$(acc "$work/kd$seed.log")")
  echo "seed $seed: student (112) ${plain[-1]}, distilled student (112) ${kd[-1]}"
done
mean() { printf '%s\n' "$@" | awk '{s+=$1} END {printf "%.4f", s/NR}'; }
echo "mean over seeds ${seeds[*]}: student $(mean "${plain[@]}"), distilled student $(mean "${kd[@]}")"
[[ ${PREDICT:-1} != 0 ]] || { echo "runs kept in $work"; exit 0; }
first=${seeds[0]}
for m in "$(basename "$teacher")" "plain$first" "kd$first"; do
  run "$work/export_$m.log" export --checkpoint "$work/$m/checkpoints/best.pt" --out "$work/$m.model.pt"
  best=0
  for _ in 1 2 3; do
    t0=$(date +%s.%N)
    "$TLTRAIN_BIN" predict --model "$work/$m.model.pt" "$SHARED/data/hymenoptera/train" "$SHARED/data/hymenoptera/val" \
      --format csv --topk 1 > "$work/predict.csv" 2> "$work/predict.err" || { cat "$work/predict.err" >&2; exit 1; }
    t1=$(date +%s.%N)
    n=$(($(wc -l < "$work/predict.csv") - 1))
    best=$(echo "r = $n / ($t1 - $t0); if (r > $best) r else $best" | bc -l)
  done
  printf 'predict %s: %.1f img/s (%d images)\n' "$m" "$best" "$n"
done
echo "runs kept in $work"
