#!/usr/bin/env bash
# The deploy study of docs/deploy.md: on Fashion-MNIST at eps 0.1, from the shipped teacher,
#   1. the float ARD student (distill's defaults: PGD-10, T = 30, one epoch on all 60,000 images, seed 0);
#   2. its post-training int8 version and a quantization-aware ARD student of the same budget, for each
#      seed in SEEDS (the deploy tool; 1,000 test images, Square-5000, transfer APGD-CE / APGD-T-100);
#   3. the shipped teacher quantized after training.
# Each deploy run's exports are then run in ONNX Runtime on the same test images (<name>.onnxruntime.txt).
# Resumable: a step whose report is committed under docs/performance_data/deploy/ is skipped.
#   scripts/deploy_study.sh                 # everything (one thread; about an hour on an idle core)
#   SEEDS="0" LIMIT=200 scripts/deploy_study.sh   # a part of it
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${ARDENT_BUILD_DIR:-$root/build}"
bin="${STUDY_BIN:-$build/tools}"   # a copy keeps a rebuild during the runs from changing them
runs="${STUDY_RUNS:-$root/runs/deploy_study}"
data="$root/docs/performance_data/deploy"
teacher="$root/models/fashion_teacher.pt"
SEEDS="${SEEDS:-0 1 2}"
LIMIT="${LIMIT:-1000}"
export OMP_WAIT_POLICY=PASSIVE
mkdir -p "$runs" "$data"

common=(--calibration 1000 --limit "$LIMIT" --queries 5000 --apgd-steps 100 --epsilon 0.1
        --latency-engines onednn --latency-runs 20 --threads 1)

if [ ! -f "$runs/float_ard/student.pt" ]; then
  "$bin/distill" --teacher "$teacher" --teacher-width 32 --width 16 --recipe ard --epochs 1 --steps 10 \
    --epsilon 0.1 --seed 0 --eval-limit 1000 --threads 1 --out "$runs/float_ard" --overwrite \
    > "$runs/float_ard.log" 2>&1
fi
# ONNX Runtime on the run's exports and test images (skipped where node or onnxruntime-node is missing).
onnx_check() {
  node "$root/tests/onnx/check_onnxruntime.js" "$runs/$1" > "$data/$1.onnxruntime.txt" 2>&1 ||
    echo "(exit $?: not checked or failed)" >> "$data/$1.onnxruntime.txt"
}

for seed in $SEEDS; do
  [ -f "$data/seed$seed.json" ] && continue
  "$bin/deploy" --student "$runs/float_ard/student.pt" --width 16 --out "$runs/seed$seed" \
    --qat-teacher "$teacher" --qat-teacher-width 32 --qat-epochs 1 --qat-steps 10 --seed "$seed" \
    "${common[@]}" > "$runs/seed$seed.log" 2>&1
  cp "$runs/seed$seed/report.json" "$data/seed$seed.json"
  onnx_check "seed$seed"
  echo "seed $seed: $(grep "^| worst case" "$runs/seed$seed.log" || true)"
done
if [ ! -f "$data/teacher.json" ]; then
  "$bin/deploy" --student "$teacher" --width 32 --out "$runs/teacher" "${common[@]}" > "$runs/teacher.log" 2>&1
  cp "$runs/teacher/report.json" "$data/teacher.json"
  onnx_check teacher
fi
/usr/bin/python3 "$root/scripts/deploy_study.py" "$data"
