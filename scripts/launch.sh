#!/usr/bin/env bash
# Starts N local processes of PROGRAM with torchrun's variables (RANK, WORLD_SIZE, LOCAL_RANK,
# LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), so that ardent's programs train data-parallel:
#
#   scripts/launch.sh --nproc 2 build/tools/distill --teacher t.pt --out runs/ard2
#
# Options: --nproc N (required), --master-port P (default: $MASTER_PORT, or a free port),
# --threads T (OMP_NUM_THREADS of each process, default: cores / N, at least 1),
# --max-restarts R (default 0).
# When a process exits with an error or a signal, the others are stopped (SIGTERM, then SIGKILL
# after 10 s) and launch.sh exits with that status, naming the rank; with --max-restarts R it first
# starts all N again, up to R times, as torchrun's elastic agent does, with
# TORCHELASTIC_RESTART_COUNT=1, 2, ... (ardent's programs then resume from their checkpoint). Across machines, run
# PROGRAM under any launcher that sets the same variables (see docs/distributed.md).
set -uo pipefail

usage() { echo "usage: $0 --nproc N [--master-port P] [--threads T] [--max-restarts R] PROGRAM [ARGS...]" >&2; exit 2; }
nproc_=""
max_restarts=0
port="${MASTER_PORT:-}"
threads=""
while [ $# -gt 0 ]; do
  case "$1" in
    --nproc) [ $# -ge 2 ] || usage; nproc_="$2"; shift 2 ;;
    --nproc=*) nproc_="${1#*=}"; shift ;;
    --master-port) [ $# -ge 2 ] || usage; port="$2"; shift 2 ;;
    --master-port=*) port="${1#*=}"; shift ;;
    --threads) [ $# -ge 2 ] || usage; threads="$2"; shift 2 ;;
    --threads=*) threads="${1#*=}"; shift ;;
    --max-restarts) [ $# -ge 2 ] || usage; max_restarts="$2"; shift 2 ;;
    --max-restarts=*) max_restarts="${1#*=}"; shift ;;
    -h|--help) usage ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || usage
[[ "$nproc_" =~ ^[1-9][0-9]*$ ]] || { echo "launch.sh: --nproc is '$nproc_', expected an integer >= 1" >&2; exit 2; }
[[ "$max_restarts" =~ ^[0-9]+$ ]] || { echo "launch.sh: --max-restarts is '$max_restarts', expected an integer >= 0" >&2; exit 2; }

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -z "$port" ]; then
  for _ in $(seq 1 50); do
    candidate=$((20000 + RANDOM % 40000))
    if port_free "$candidate"; then port="$candidate"; break; fi
  done
fi
[[ "$port" =~ ^[0-9]+$ ]] || { echo "launch.sh: no free port found; pass --master-port" >&2; exit 2; }
if [ -z "$threads" ]; then
  cores="$(nproc 2>/dev/null || echo 1)"
  threads=$((cores / nproc_)); [ "$threads" -ge 1 ] || threads=1
fi

pids=()
declare -A rank_of=()
declare -A done_=()
stop_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for _ in $(seq 1 100); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && return
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
}
trap 'echo "launch.sh: interrupted; stopping all ranks" >&2; stop_all; exit 130' INT TERM

# Starts the N ranks, waits for them; returns 0, or the first failure's status after stopping the rest.
run_group() {
  pids=()
  rank_of=()
  done_=()
  for ((rank = 0; rank < nproc_; ++rank)); do
    RANK=$rank WORLD_SIZE=$nproc_ LOCAL_RANK=$rank LOCAL_WORLD_SIZE=$nproc_ MASTER_ADDR=127.0.0.1 \
      MASTER_PORT=$port OMP_NUM_THREADS=$threads TORCHELASTIC_RESTART_COUNT=$restart "$@" &
    pids+=($!)
    rank_of[$!]=$rank
  done
  remaining=$nproc_
  while [ "$remaining" -gt 0 ]; do
    finished=""
    running=()
    for pid in "${pids[@]}"; do [ -n "${done_[$pid]:-}" ] || running+=("$pid"); done
    wait -n -p finished "${running[@]}"
    status=$?
    [ -n "$finished" ] || continue
    done_[$finished]=1
    remaining=$((remaining - 1))
    if [ "$status" -ne 0 ]; then
      how="exited with status $status"
      [ "$status" -gt 128 ] && how="was killed by signal $((status - 128)) ($(kill -l $((status - 128)) 2>/dev/null))"
      echo "launch.sh: rank ${rank_of[$finished]} (pid $finished) $how; stopping the other ranks" >&2
      stop_all
      return "$status"
    fi
  done
  return 0
}

restart=0
while true; do
  status=0
  run_group "$@" || status=$?
  [ "$status" -ne 0 ] && [ "$restart" -lt "$max_restarts" ] || exit "$status"
  restart=$((restart + 1))
  # A fresh port: the failed group's rendezvous port may linger in TIME_WAIT.
  for _ in $(seq 1 50); do
    candidate=$((20000 + RANDOM % 40000))
    if port_free "$candidate"; then port="$candidate"; break; fi
  done
  echo "launch.sh: restarting all $nproc_ ranks (restart $restart of $max_restarts)" >&2
done
