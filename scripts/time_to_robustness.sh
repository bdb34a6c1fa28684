#!/usr/bin/env bash
# Time to a robust student (docs/performance.md): ARD and Madry AT trained with PGD-10, FGSM-RS,
# N-FGSM and warm-started PGD-3, SmallCNN students of width 16 on Fashion-MNIST at eps 0.1, three
# seeds each; then the study suite (PGD-20, BIM-20, CW-Linf-20, APGD-CE, APGD-T, worst case) on
# 1,000 test images for each final student, and the report and plot (scripts/time_to_robustness.py).
#
#   scripts/time_to_robustness.sh                 # everything; resumable: finished runs are skipped,
#                                                 # an interrupted one continues from its checkpoint
#                                                 # (--resume starts fresh where there is none)
#   METHODS="ard_pgd10 ard_nfgsm" SEEDS="0" scripts/time_to_robustness.sh    # a part of it
#
# The training budget: EPOCHS epochs over the first LIMIT training images (6 x 20,000 by default).
# Two runs at a time, one thread each (both cores busy, no oversubscription). CPU seconds are the
# training's (cpu_seconds in metrics.csv: the process's CPU time of each epoch, evaluation excluded).
# Outputs: runs under $TTR_RUNS (default runs/ttr), results (metrics, evaluations) under
# docs/performance_data/time_to_robustness/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${ARDENT_BUILD_DIR:-$root/build}"
# The programs the runs use (TTR_BIN: a copy, so that a rebuild during the runs changes nothing).
bin="${TTR_BIN:-$build/tools}"
runs="${TTR_RUNS:-$root/runs/ttr}"
data="$root/docs/performance_data/time_to_robustness"
teacher="$root/models/fashion_teacher.pt"
EPOCHS="${EPOCHS:-6}"
LIMIT="${LIMIT:-20000}"
CURVE_IMAGES="${CURVE_IMAGES:-500}"   # per-epoch PGD-20 (the curves)
EVAL_IMAGES="${EVAL_IMAGES:-1000}"    # the final study suite
SEEDS="${SEEDS:-0 1 2}"
METHODS="${METHODS:-ard_pgd10 ard_fgsm_rs ard_nfgsm ard_warm3 madry_pgd10 madry_fgsm_rs madry_nfgsm madry_warm3}"
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$runs" "$data"

# The distill flags of a method.
flags() {
  case "$1" in
    ard_*) echo "--recipe ard --teacher $teacher --teacher-width 32" ;;
    madry_*) echo "--recipe madry" ;;
  esac
  case "$1" in
    *_pgd10) echo "--attack pgd --steps 10" ;;
    *_fgsm_rs) echo "--attack fgsm-rs" ;;
    *_nfgsm) echo "--attack n-fgsm" ;;
    *_warm3) echo "--attack pgd --warm-start 3" ;;
  esac
}

# One run and its evaluation; skipped when its evaluation is committed.
run() {
  local method=$1 seed=$2 name="$1_s$2"
  [ -f "$data/$name.eval.json" ] && return 0
  local out="$runs/$name"
  mkdir -p "$out"
  # shellcheck disable=SC2046
  "$bin/distill" $(flags "$method") --width 16 --epsilon 0.1 --epochs "$EPOCHS" --limit "$LIMIT" \
    --eval-limit "$CURVE_IMAGES" --seed "$seed" --threads 1 --out "$out" --resume >> "$out.log" 2>&1
  cp "$out/metrics.csv" "$data/$name.metrics.csv"
  "$bin/evaluate" --checkpoint "$out/student.pt" --width 16 --suite study --epsilon 0.1 --steps 20 \
    --limit "$EVAL_IMAGES" --seed 0 --threads 1 --json "$data/$name.eval.json.tmp" > "$out.eval.log" 2>&1
  mv "$data/$name.eval.json.tmp" "$data/$name.eval.json"
  echo "$name: $(tail -n 1 "$out.eval.log")"
}

# ARD's methods first, seed after seed, then Madry AT's: a partial run answers the main question first.
jobs_list=()
for recipe in ard madry; do
  for seed in $SEEDS; do
    for method in $METHODS; do
      [[ $method == "${recipe}_"* ]] && jobs_list+=("$method $seed")
    done
  done
done
# Two at a time.
for ((i = 0; i < ${#jobs_list[@]}; i += 2)); do
  # shellcheck disable=SC2086
  run ${jobs_list[i]} &
  if ((i + 1 < ${#jobs_list[@]})); then
    # shellcheck disable=SC2086
    run ${jobs_list[i + 1]} &
  fi
  wait
done
/usr/bin/python3 "$root/scripts/time_to_robustness.py" "$data" "$root/docs/images/time_to_robustness.png"
