#!/usr/bin/env bash
# torchrun launches ardent's tools as scripts/launch.sh does, and its elastic restart
# continues a run exactly (ctest: distributed.torchrun_restart):
#   torchrun.sh PYTHON TEACHER DISTILL LAUNCH_SH WORKDIR   (TEACHER: models/fashion_teacher.pt)
# An uninterrupted 2-process distill run, then the same run in which rank 1 is killed (SIGKILL) in
# the second epoch: torchrun (--max_restarts 1) restarts both workers, which resume from
# <out>/checkpoint.pt on their own (TORCHELASTIC_RESTART_COUNT=1). The students must be the same
# file byte for byte, and so must metrics.csv without its timing columns ("seconds", "cpu_seconds"). The same
# with scripts/launch.sh --max-restarts 1.
set -euo pipefail
python="$1"; teacher="$2"; distill="$3"; launch="$4"; work="$5/torchrun"
rm -rf "$work"; mkdir -p "$work"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE ARDENT_DIST_TIMEOUT=60
unset RANK WORLD_SIZE LOCAL_RANK MASTER_ADDR MASTER_PORT TORCHELASTIC_RESTART_COUNT

if ! "$python" -c "import torch.distributed.run" 2>/dev/null; then
  echo "SKIP: $python has no torch.distributed.run (Debian: python3-torch)"; exit 0
fi
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local candidate
  for _ in $(seq 1 50); do
    candidate=$((20000 + RANDOM % 40000))
    if port_free "$candidate"; then echo "$candidate"; return; fi
  done
  echo "no free port" >&2; exit 1
}
# Debian 12's torchrun (torch 1.13 on Python 3.11) fails at start with "'NoneType' object has no
# attribute 'get'" when --redirects/--tee are single values (Std.NONE is not iterable in 3.11's
# IntFlag); a mapping that names no local rank means "none" and avoids it.
torchrun=("$python" -m torch.distributed.run --nproc_per_node 2 --redirects 9:0 --tee 9:0 --no_python)

run=(--recipe rslad --teacher "$teacher" --width 4 --limit 1024 --batch-size 64 --steps 2
     --epochs 3 --eval-limit 64 --threads 1)

"${torchrun[@]}" --master_port "$(free_port)" --max_restarts 0 "$distill" "${run[@]}" --out "$work/straight" \
  2> "$work/straight.err" || { cat "$work/straight.err"; exit 1; }

# Runs LAUNCHER... with the distill run into OUT and kills rank 1 once epoch 1 is recorded (rank 1
# is found by its RANK among the launcher's children); checks that the group was restarted and
# resumed.
kill_and_restart() {
  local out="$1"; shift
  "$@" "$distill" "${run[@]}" --resume auto --out "$out" 2> "$out.err" &
  local launcher=$! killed="" status=0
  for _ in $(seq 1 1200); do
    if [ -f "$out/metrics.csv" ] && [ "$(wc -l < "$out/metrics.csv")" -ge 2 ]; then
      for pid in $(pgrep -P "$launcher" || true); do
        if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "RANK=1"; then
          kill -KILL "$pid" && killed="$pid"; break
        fi
      done
      [ -n "$killed" ] && break
    fi
    kill -0 "$launcher" 2>/dev/null || break
    sleep 0.05
  done
  wait "$launcher" || status=$?
  cat "$out.err"
  [ -n "$killed" ] || { echo "FAIL: rank 1 was never killed (the run ended first?)"; exit 1; }
  [ "$status" -eq 0 ] || { echo "FAIL: the launcher exited with $status after the restart"; exit 1; }
  grep -q "resuming from $out/checkpoint.pt after epoch" "$out.err" \
    || { echo "FAIL: the restarted workers did not resume from the checkpoint"; exit 1; }
}
kill_and_restart "$work/torchrun" "${torchrun[@]}" --master_port "$(free_port)" --max_restarts 1
kill_and_restart "$work/launch" "$launch" --nproc 2 --threads 1 --max-restarts 1

# The two timing columns (wall-clock "seconds" and "cpu_seconds") differ between any two runs.
without_seconds() { awk -F, 'NR == 1 { for (i = 1; i <= NF; ++i) if ($i == "seconds" || $i == "cpu_seconds") t[i] = 1 }
                            { out = ""; for (i = 1; i <= NF; ++i) if (!(i in t)) out = out (out == "" ? "" : ",") $i; print out }' "$1"; }
[ "$(wc -l < "$work/straight/metrics.csv")" -eq 4 ] || { echo "FAIL: expected a header and 3 epochs"; exit 1; }
for restarted in torchrun launch; do
  cmp "$work/straight/student.pt" "$work/$restarted/student.pt" \
    || { echo "FAIL: the student after $restarted's restart differs from the uninterrupted run's"; exit 1; }
  diff <(without_seconds "$work/straight/metrics.csv") <(without_seconds "$work/$restarted/metrics.csv") \
    || { echo "FAIL: metrics.csv after $restarted's restart differs"; exit 1; }
  echo "$restarted restart: student.pt and metrics.csv (without seconds) identical to the uninterrupted run"
done
