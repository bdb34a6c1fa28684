#!/usr/bin/env bash
# The Fashion-MNIST reproduction study of docs/reproduction.md, in named parts. Every part skips the
# runs whose outputs exist (and resumes a run whose checkpoint exists), so the study can be run a part
# at a time, across sessions, and rerun to regenerate only the report.
#
#   scripts/reproduce.sh            # every part, then the report
#   scripts/reproduce.sh part1      # the first study: SmallCNN students of the 2-epoch width-32 teacher
#   scripts/reproduce.sh teacher    # the strong teacher: SmallCNN width 64, 5 epochs of Madry AT
#   scripts/reproduce.sh sweep      # teacher strength x method (ARD, RSLAD, Madry AT) x width (8, 16)
#   scripts/reproduce.sh seeds      # ARD against Madry AT at widths 16 and 8 (strong teacher), seeds 1 and 2
#   scripts/reproduce.sh long       # the same comparison (seed 0) continued to 10 epochs
#   scripts/reproduce.sh recipe     # ard against ard_official and ARD at T = 4 (width 16, strong teacher)
#   scripts/reproduce.sh claims     # KD on clean images from the strong teacher, natural training
#   scripts/reproduce.sh pair       # the paper's ResNet18 -> MobileNetV2 pair, reduced (sizes below), 2 seeds
#   scripts/reproduce.sh teacher_autoattack  # the full AutoAttack of both teachers
#   scripts/reproduce.sh report     # docs/reproduction_results.md (both studies) and the plots
#
# Part 2's runs use one thread each (OMP_WAIT_POLICY=PASSIVE); its sizes are the variables below and
# are stated in docs/reproduction.md. Each run holds a lock while it trains, so on a machine with N
# cores N copies of the same command share the work (a run locked by another copy is left to it):
#
#   scripts/reproduce.sh sweep seeds recipe claims & scripts/reproduce.sh sweep seeds recipe claims
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${ARDENT_BUILD_DIR:-$root/build}"
out="${STUDY_DIR:-$root/runs/study}"
out2="${STUDY2_DIR:-$root/runs/study2}"
# Part 2's evaluations, metrics and reports; a rerun into another folder is compared with the committed
# numbers by scripts/study2_compare.py (docs/reproduction.md, "Checking the numbers").
data2="${STUDY2_DATA:-$root/docs/reproduction_data/part2}"
EPSILON=0.1
EPOCHS="${EPOCHS:-2}"          # part 1: the schedule sweep reads epochs 1..EPOCHS of each run's history
WIDTHS="${WIDTHS:-4 8 16}"     # part 1: the capacity sweep (Madry AT against ARD)
MAIN_WIDTH=16                  # part 1: the width of every method's student
EPOCHS2="${EPOCHS2:-5}"        # part 2: epochs of every student
SWEEP_WIDTHS="${SWEEP_WIDTHS:-16 8}"  # part 2: the student widths of the sweep
SEED_WIDTHS="${SEED_WIDTHS:-16 8}"    # part 2: the widths at which ARD and Madry AT get seeds 1 and 2
LONG_EPOCHS="${LONG_EPOCHS:-10}"      # part 2: the long schedule of the key comparison
TEACHER_WIDTH=64               # part 2: the strong teacher
TEACHER_EPOCHS="${TEACHER_EPOCHS:-5}" # about an hour of one core
EVAL_IMAGES="${EVAL_IMAGES:-1000}"
AUTOATTACK_IMAGES="${AUTOATTACK_IMAGES:-200}"
SEED=0
export OMP_WAIT_POLICY=PASSIVE

"$root/scripts/setup.sh"
if ! dpkg-query -W -f='${Status}' python3-matplotlib 2>/dev/null | grep -q "install ok installed"; then
  sudo_cmd=(); [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq && "${sudo_cmd[@]}" apt-get install -y -qq python3-matplotlib >/dev/null
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)" --target distill evaluate train_teacher resnet18_to_mobilenetv2
mkdir -p "$out" "$out2" "$data2"
cd "$root"

part1() {
  train() {  # name recipe width
    local name=$1 recipe=$2 width=$3
    [ -f "$out/$name/student.pt" ] && return 0
    local teacher=()
    case $recipe in natural|madry) ;; *) teacher=(--teacher models/fashion_teacher.pt --teacher-width 32) ;; esac
    "$build/tools/distill" --recipe "$recipe" "${teacher[@]}" --width "$width" --epsilon $EPSILON \
      --epochs "$EPOCHS" --eval-limit "$EVAL_IMAGES" --seed $SEED --out "$out/$name" > "$out/$name.log" 2>&1
    tail -n 1 "$out/$name.log"
  }

  evaluate() {  # name checkpoint width
    local name=$1 checkpoint=$2 width=$3
    [ -f "$out/$name.eval.json" ] && return 0
    "$build/tools/evaluate" --checkpoint "$checkpoint" --width "$width" --suite all --epsilon $EPSILON \
      --steps 20 --limit "$EVAL_IMAGES" --seed $SEED --json "$out/$name.eval.json" > "$out/$name.eval.log" 2>&1
    for eps in 0.025 0.05 0.075 0.15; do
      "$build/tools/evaluate" --checkpoint "$checkpoint" --width "$width" --suite pgd --epsilon $eps --steps 20 \
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
}

# --- part 2 -------------------------------------------------------------------------------------

# claim NAME: true when this copy of the script may make run NAME, which it then holds until
# `release NAME` (or its exit); false while another copy holds it. The lock goes with the process,
# so a killed copy leaves none behind.
declare -A locks
claim() {
  local fd
  exec {fd}>"$out2/$1.lock"
  if flock -n "$fd"; then
    locks[$1]=$fd
    return 0
  fi
  exec {fd}>&-
  return 1
}
release() {
  local fd=${locks[$1]}
  unset "locks[$1]"
  exec {fd}>&-
}
# wait_for NAME: returns once no copy holds NAME.
wait_for() {
  local fd
  exec {fd}>"$out2/$1.lock"
  flock "$fd"
  exec {fd}>&-
}

# evaluate2 NAME MODEL WIDTH: clean, PGD-20, BIM-20, CW-Linf-20, APGD-CE, APGD-T and the worst case.
evaluate2() {
  local name=$1 model=$2 width=$3
  [ -f "$data2/$name.eval.json" ] && return 0
  "$build/tools/evaluate" --checkpoint "$model" --width "$width" --suite study --epsilon $EPSILON --steps 20 \
    --limit "$EVAL_IMAGES" --seed $SEED --threads 1 --json "$data2/$name.eval.json" > "$out2/$name.eval.log" 2>&1
  tail -n 3 "$out2/$name.eval.log"
}

# student NAME RECIPE WIDTH TEACHER SEED [EXTRA...]: one run of the distill example (RUN_EPOCHS epochs,
# default EPOCHS2; resumed when its checkpoint exists); its per-epoch metrics (clean and PGD-20 on
# EVAL_IMAGES test images) and report are copied to docs/reproduction_data/part2, then it is evaluated.
student() {
  local name=$1 recipe=$2 width=$3 teacher=$4 seed=$5; shift 5
  [ -f "$data2/$name.eval.json" ] && return 0
  claim "$name" || { echo "study: $name is being made by another copy"; return 0; }
  student_run "$name" "$recipe" "$width" "$teacher" "$seed" "$@"
  release "$name"
}

student_run() {
  local name=$1 recipe=$2 width=$3 teacher=$4 seed=$5; shift 5
  local args=(--recipe "$recipe" --width "$width" --epsilon $EPSILON --epochs "${RUN_EPOCHS:-$EPOCHS2}" --eval-limit "$EVAL_IMAGES"
              --seed "$seed" --threads 1 --out "$out2/$name" "$@")
  case $teacher in
    weak) args+=(--teacher models/fashion_teacher.pt --teacher-width 32) ;;
    strong) args+=(--teacher models/fashion_teacher_w64.pt --teacher-width $TEACHER_WIDTH) ;;
  esac
  if [ ! -f "$out2/$name/student.pt" ]; then
    local resume=(); [ -f "$out2/$name/checkpoint.pt" ] && resume=(--resume)
    echo "study: training $name"
    "$build/tools/distill" "${args[@]}" "${resume[@]}" > "$out2/$name.log" 2>&1
  fi
  cp "$out2/$name/metrics.csv" "$data2/$name.metrics.csv"
  cp "$out2/$name/report.json" "$data2/$name.report.json"
  evaluate2 "$name" "$out2/$name/student.pt" "$width"
}

# autoattack NAME MODEL WIDTH: the standard AutoAttack (APGD-CE, APGD-T, FAB-T, Square) of one model,
# and the study's 20-step suite on the same images, to see what the stronger attacks add.
autoattack() {
  local name=$1 model=$2 width=$3
  if [ ! -f "$data2/$name.autoattack.json" ]; then
    "$build/tools/evaluate" --checkpoint "$model" --width "$width" --suite autoattack --epsilon $EPSILON \
      --limit "$AUTOATTACK_IMAGES" --seed $SEED --threads 1 --json "$data2/$name.autoattack.json" > "$out2/$name.autoattack.log" 2>&1
    tail -n 3 "$out2/$name.autoattack.log"
  fi
  [ -f "$data2/$name.autoattack_images.study.json" ] && return 0
  "$build/tools/evaluate" --checkpoint "$model" --width "$width" --suite study --epsilon $EPSILON --steps 20 \
    --limit "$AUTOATTACK_IMAGES" --seed $SEED --threads 1 --json "$data2/$name.autoattack_images.study.json" \
    >> "$out2/$name.autoattack.log" 2>&1
}

# The strong teacher, trained into models/fashion_teacher_w64.pt, then both teachers evaluated. Like every
# part it skips what is done: the committed teacher, unless STUDY2_DATA points at a rerun's folder
# (whose teacher evaluation does not exist yet); the students that follow then use the retrained one.
teacher() {
  local dir="$out2/teacher_w$TEACHER_WIDTH" lock
  exec {lock}>"$out2/teacher.lock"
  flock "$lock"  # every copy waits for the teacher its students need
  if [ ! -f "$data2/teacher_strong.eval.json" ]; then
    if [ ! -f "$dir/teacher.pt" ]; then
      local resume=(); [ -f "$dir/checkpoint.pt" ] && resume=(--resume)
      echo "study: training the strong teacher (width $TEACHER_WIDTH, $TEACHER_EPOCHS epochs of Madry AT)"
      "$build/tools/train_teacher" --out "$dir" --width $TEACHER_WIDTH --epochs "$TEACHER_EPOCHS" \
        --epsilon $EPSILON --eval-limit "$EVAL_IMAGES" --seed $SEED --threads 1 "${resume[@]}" > "$dir.log" 2>&1
    fi
    cp "$dir/teacher.pt" models/fashion_teacher_w64.pt
    cp "$dir/metrics.csv" models/fashion_teacher_w64.metrics.csv
  fi
  flock -u "$lock"
  claim teacher_strong && { evaluate2 teacher_strong models/fashion_teacher_w64.pt $TEACHER_WIDTH; release teacher_strong; }
  claim teacher_weak && { evaluate2 teacher_weak models/fashion_teacher.pt 32; release teacher_weak; }
  return 0
}

# The full AutoAttack of both teachers, on the first AUTOATTACK_IMAGES test images (its 100-step
# APGD-T and FAB-T with nine target classes and 5,000 Square queries cost too much for 1,000 here).
teacher_autoattack() {
  claim teacher_strong.autoattack &&
    { autoattack teacher_strong models/fashion_teacher_w64.pt $TEACHER_WIDTH; release teacher_strong.autoattack; }
  claim teacher_weak.autoattack && { autoattack teacher_weak models/fashion_teacher.pt 32; release teacher_weak.autoattack; }
  return 0
}

sweep() {
  for width in $SWEEP_WIDTHS; do
    student "madry_w$width" madry "$width" none $SEED
    for teacher in strong weak; do
      student "ard_${teacher}_w$width" ard "$width" $teacher $SEED
      student "rslad_${teacher}_w$width" rslad "$width" $teacher $SEED
    done
  done
}

seeds() {
  for width in $SEED_WIDTHS; do
    for seed in 1 2; do
      student "madry_w${width}_seed$seed" madry "$width" none $seed
      student "ard_strong_w${width}_seed$seed" ard "$width" strong $seed
    done
  done
}

# The key comparison (seed 0) continued to LONG_EPOCHS epochs. Each run starts from a copy of the
# sweep run's checkpoint where there is one, else from scratch: train_loop resumes bit for bit and the
# learning rate is constant, so either way this is exactly the LONG_EPOCHS-epoch run, and its metrics
# hold every epoch.
long() {
  local run recipe width teacher base name
  for run in madry:16:none ard:16:strong madry:8:none ard:8:strong; do
    IFS=: read -r recipe width teacher <<< "$run"
    base="${recipe}_w$width"; [ "$teacher" != none ] && base="${recipe}_${teacher}_w$width"
    name="${base}_e$LONG_EPOCHS"
    [ -f "$data2/$name.eval.json" ] && continue
    claim "$name" || { echo "study: $name is being made by another copy"; continue; }
    if [ ! -f "$out2/$name/checkpoint.pt" ] && [ -f "$out2/$base/checkpoint.pt" ]; then
      mkdir -p "$out2/$name"
      cp "$out2/$base/checkpoint.pt" "$out2/$name/checkpoint.pt"
    fi
    RUN_EPOCHS=$LONG_EPOCHS student_run "$name" "$recipe" "$width" "$teacher" $SEED
    release "$name"
  done
}

recipe() {
  student ard_official_strong_w16 ard_official 16 strong $SEED
  student ard_t4_strong_w16 ard 16 strong $SEED --temperature 4
}

claims() {
  student kd_strong_w16 kd 16 strong $SEED
  student natural_w16 natural 16 none $SEED
}

# The paper's architecture pair at a size two cores afford (resnet18_to_mobilenetv2 on Fashion-MNIST):
# a ResNet18 of width PAIR_TEACHER_WIDTH (channels w, 2w, 4w, 8w; the paper: 64) trained by Madry AT,
# distilled by ARD into a MobileNetV2 of width multiplier PAIR_MULTIPLIER (the paper: 1), against the
# same MobileNetV2 by Madry AT; PAIR_LIMIT training images, PAIR_EPOCHS epochs, SGD at 0.1 as the paper.
PAIR_TEACHER_WIDTH="${PAIR_TEACHER_WIDTH:-16}"
PAIR_MULTIPLIER="${PAIR_MULTIPLIER:-0.25}"
PAIR_LIMIT="${PAIR_LIMIT:-5000}"
PAIR_EPOCHS="${PAIR_EPOCHS:-5}"
PAIR_SEEDS="${PAIR_SEEDS:-0 1}"  # of the two students; the teacher is trained once, with seed 0

# pair_run NAME RECIPE SEED [EXTRA...]: one run of resnet18_to_mobilenetv2 (resumed when its
# checkpoint exists), with its metrics, report and final evaluation copied to docs/reproduction_data/part2.
pair_run() {
  local name=$1 recipe=$2 seed=$3; shift 3
  [ -f "$data2/$name.eval.json" ] && return 0
  claim "$name" || { echo "study: $name is being made by another copy"; return 0; }
  local dir="$out2/$name" resume=()
  [ -f "$dir/checkpoint.pt" ] && resume=(--resume)
  echo "study: training $name"
  "$build/tools/resnet18_to_mobilenetv2" --dataset fashion-mnist --recipe "$recipe" \
    --teacher-width "$PAIR_TEACHER_WIDTH" --width-multiplier "$PAIR_MULTIPLIER" --epsilon $EPSILON \
    --epochs "$PAIR_EPOCHS" --limit "$PAIR_LIMIT" --eval-limit "$EVAL_IMAGES" --final-eval --seed "$seed" --threads 1 \
    --out "$dir" "$@" "${resume[@]}" > "$dir.log" 2>&1
  cp "$dir/metrics.csv" "$data2/$name.metrics.csv"
  cp "$dir/report.json" "$data2/$name.report.json"
  cp "$dir/eval.json" "$data2/$name.eval.json"
  tail -n 2 "$dir.log"
  release "$name"
}

# seed_suffix SEED: how a run's name says its seed ("" for SEED, else "_seed<k>", as in `seeds`).
seed_suffix() {
  [ "$1" = $SEED ] || echo "_seed$1"
}

pair() {
  pair_run pair_teacher teacher $SEED
  local seed
  for seed in $PAIR_SEEDS; do
    pair_run "pair_madry$(seed_suffix "$seed")" madry "$seed"
  done
  wait_for pair_teacher  # made by another copy, perhaps
  [ -f "$out2/pair_teacher/teacher.pt" ] || { echo "study: no pair teacher ($out2/pair_teacher/teacher.pt)" >&2; return 1; }
  for seed in $PAIR_SEEDS; do
    pair_run "pair_ard$(seed_suffix "$seed")" ard "$seed" --teacher "$out2/pair_teacher/teacher.pt" --teacher-format ardent
  done
}

report() {
  # Debian's python, which has python3-matplotlib (another python3 may come first on PATH).
  /usr/bin/python3 "$root/scripts/study_report.py" "$out" "$root/docs"
  /usr/bin/python3 "$root/scripts/study2_report.py" "$data2" "$root/docs"
  echo "wrote docs/reproduction_results.md and docs/images/*.png"
}

parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(part1 teacher sweep seeds long recipe claims pair teacher_autoattack report)
for part in "${parts[@]}"; do
  case $part in
    part1|teacher|sweep|seeds|long|recipe|claims|pair|teacher_autoattack|report) "$part" ;;
    *) echo "reproduce.sh: unknown part '$part' (part1, teacher, sweep, seeds, long, recipe, claims, pair," \
            "teacher_autoattack, report)" >&2; exit 2 ;;
  esac
done
