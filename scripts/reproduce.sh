#!/usr/bin/env bash
# The Fashion-MNIST reproduction study of docs/reproduction.md. Trains SmallCNN students from the
# shipped robust teacher (models/fashion_teacher.pt) with every method, evaluates them, and writes
# the tables and plots. Sizes are chosen to fit two cores in about thirty minutes; change them with
# the variables below (and the docs' numbers with them).
#
#   scripts/reproduce.sh            # everything: training, evaluation, docs/reproduction_results.md, plots
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${ARDENT_BUILD_DIR:-$root/build}"
out="${STUDY_DIR:-$root/runs/study}"
EPSILON=0.1
EPOCHS="${EPOCHS:-2}"          # the schedule sweep reads epochs 1..EPOCHS of each run's history
WIDTHS="${WIDTHS:-4 8 16}"     # the capacity sweep (Madry AT against ARD)
MAIN_WIDTH=16                  # the width of every method's student
EVAL_IMAGES="${EVAL_IMAGES:-1000}"
SEED=0

"$root/scripts/setup.sh"
if ! dpkg-query -W -f='${Status}' python3-matplotlib 2>/dev/null | grep -q "install ok installed"; then
  sudo_cmd=(); [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq && "${sudo_cmd[@]}" apt-get install -y -qq python3-matplotlib >/dev/null
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target distill evaluate
mkdir -p "$out"
cd "$root"

train() {  # name recipe width
  local name=$1 recipe=$2 width=$3
  [ -f "$out/$name/student.pt" ] && return 0
  local teacher=()
  case $recipe in natural|madry) ;; *) teacher=(--teacher models/fashion_teacher.pt --teacher-width 32) ;; esac
  "$build/examples/distill" --recipe "$recipe" "${teacher[@]}" --width "$width" --epsilon $EPSILON \
    --epochs "$EPOCHS" --eval-limit "$EVAL_IMAGES" --seed $SEED --out "$out/$name" > "$out/$name.log" 2>&1
  tail -n 1 "$out/$name.log"
}

evaluate() {  # name checkpoint width
  local name=$1 checkpoint=$2 width=$3
  [ -f "$out/$name.eval.json" ] && return 0
  "$build/examples/evaluate" --checkpoint "$checkpoint" --width "$width" --suite all --epsilon $EPSILON \
    --steps 20 --limit "$EVAL_IMAGES" --seed $SEED --json "$out/$name.eval.json" > "$out/$name.eval.log" 2>&1
  for eps in 0.025 0.05 0.075 0.15; do
    "$build/examples/evaluate" --checkpoint "$checkpoint" --width "$width" --suite pgd --epsilon $eps --steps 20 \
      --limit "$EVAL_IMAGES" --seed $SEED --json "$out/$name.pgd_$eps.json" >> "$out/$name.eval.log" 2>&1
  done
}

# Every method at the main width.
for recipe in natural madry kd ard rslad; do
  train "${recipe}_w$MAIN_WIDTH" $recipe $MAIN_WIDTH
done
# The capacity sweep: Madry AT and ARD at each width.
for width in $WIDTHS; do
  for recipe in madry ard; do
    train "${recipe}_w$width" $recipe "$width"
  done
done

evaluate teacher models/fashion_teacher.pt 32
for dir in "$out"/*/; do
  name=$(basename "$dir")
  width=${name##*_w}
  evaluate "$name" "$dir/student.pt" "$width"
done

# Debian's python, which has python3-matplotlib (another python3 may come first on PATH).
/usr/bin/python3 "$root/scripts/study_report.py" "$out" "$root/docs"
echo "wrote docs/reproduction_results.md and docs/images/*.png"
