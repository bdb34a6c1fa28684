#!/usr/bin/env bash
# Data-parallel ARD throughput on this machine: for the SmallCNN and MobileNetV2 students, one
# process x 1 thread, one process x 2 threads and two processes x 1 thread, in one run, printed as
# the Markdown table of docs/performance.md.
#
#   benchmarks/distributed_scaling.sh [BUILD_DIR]      (needs the ard_throughput target built)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
program="$build/benchmarks/ard_throughput"
[ -x "$program" ] || { echo "build it first: cmake --build $build --target ard_throughput" >&2; exit 1; }
export OMP_WAIT_POLICY=PASSIVE
unset RANK WORLD_SIZE LOCAL_RANK MASTER_ADDR MASTER_PORT

measure() {  # model global_batch steps config -> images/s and all-reduce share
  local model="$1" batch="$2" steps="$3" config="$4" line
  case "$config" in
    1x1) line="$(OMP_NUM_THREADS=1 "$program" --model "$model" --batch "$batch" --steps "$steps" --threads 1)" ;;
    1x2) line="$(OMP_NUM_THREADS=2 "$program" --model "$model" --batch "$batch" --steps "$steps" --threads 2)" ;;
    2x1) line="$("$root/scripts/launch.sh" --nproc 2 --threads 1 "$program" --model "$model" --batch "$batch" \
                 --steps "$steps" --threads 1)" ;;
  esac
  echo "$line" >&2
  echo "$line" | sed -E 's/.*images_per_s=([0-9.]+) .*allreduce_share=([0-9.]+) allreduce_wait_share=([0-9.]+).*/\1 \2 \3/'
}

echo "| student | global batch | 1 process x 1 thread | 1 process x 2 threads | 2 processes x 1 thread | 2x1 / 1x1 | all-reduce share of a 2x1 step |"
echo "|---|---|---|---|---|---|---|"
for spec in "small_cnn 64 20" "mobilenet_v2 32 4"; do
  read -r model batch steps <<< "$spec"
  read -r one _ < <(measure "$model" "$batch" "$steps" 1x1)
  read -r two_threads _ < <(measure "$model" "$batch" "$steps" 1x2)
  read -r two_procs share hidden < <(measure "$model" "$batch" "$steps" 2x1)
  ratio="$(awk -v a="$two_procs" -v b="$one" 'BEGIN { printf "%.2f", a / b }')"
  pct="$(awk -v s="$share" -v w="$hidden" 'BEGIN { printf "%.1f%% (%.1f%% not hidden)", 100 * s, 100 * w }')"
  echo "| $model | $batch | $one img/s | $two_threads img/s | $two_procs img/s | ${ratio}x | $pct |"
done
