#!/usr/bin/env bash
# The multi-process tests of ardent::distributed, run by ctest:
#   run.sh SCENARIO WORKER LAUNCHER WORKDIR
# SCENARIO: equivalence-ard, equivalence-madry, equivalence-bn, sharding, resume, failure, hang, evaluation,
# stopped, store-silent, unresolvable.
set -euo pipefail
scenario="$1"; worker="$2"; launch="$3"; work="$4/$scenario"
rm -rf "$work"; mkdir -p "$work"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE ARDENT_DIST_TIMEOUT=60
unset RANK WORLD_SIZE LOCAL_RANK MASTER_ADDR MASTER_PORT

case "$scenario" in
  equivalence-ard|equivalence-madry)
    method="${scenario#equivalence-}"
    # One process at batch 8 against two at 4 each: the same global batches, 3 epochs of 6 steps.
    "$worker" train --method "$method" --batch 8 --epochs 3 --out "$work/one"
    "$launch" --nproc 2 "$worker" train --method "$method" --batch 4 --epochs 3 --out "$work/two"
    "$worker" compare "$work/two/student.rank0.pt" "$work/two/student.rank1.pt" 0
    "$worker" compare "$work/one/student.rank0.pt" "$work/two/student.rank0.pt" 1e-4
    ;;
  equivalence-bn)
    # A model with BatchNorm: two processes with synchronised BatchNorm at batch 4 each against one
    # process (LibTorch's own BatchNorm) at 8; per-rank BatchNorm must give other weights (so the
    # first comparison can fail).
    for method in madry ard; do
      "$worker" train --method $method --model bn --sync-bn --batch 8 --epochs 3 --out "$work/$method-one"
      "$launch" --nproc 2 "$worker" train --method $method --model bn --sync-bn --batch 4 --epochs 3 --out "$work/$method-sync"
      "$launch" --nproc 2 "$worker" train --method $method --model bn --batch 4 --epochs 3 --out "$work/$method-per-rank"
      "$worker" compare "$work/$method-sync/student.rank0.pt" "$work/$method-sync/student.rank1.pt" 0
      "$worker" compare "$work/$method-one/student.rank0.pt" "$work/$method-sync/student.rank0.pt" 1e-4
      "$worker" differ "$work/$method-one/student.rank0.pt" "$work/$method-per-rank/student.rank0.pt" 1e-3
    done
    ;;
  sharding)
    "$worker" shard --batch 10 --out "$work/one"
    "$launch" --nproc 2 "$worker" shard --batch 5 --out "$work/two"
    "$launch" --nproc 3 "$worker" shard --batch 4 --out "$work/three"
    "$worker" shards "$work/two" 2 "$work/one"
    "$worker" shard --batch 12 --out "$work/one12"
    "$worker" shards "$work/three" 3 "$work/one12"
    ;;
  resume)
    "$launch" --nproc 2 "$worker" train --method ard --batch 4 --epochs 3 --out "$work/straight"
    "$launch" --nproc 2 "$worker" train --method ard --batch 4 --epochs 1 --out "$work/resumed"
    "$launch" --nproc 2 "$worker" train --method ard --batch 4 --epochs 3 --resume --out "$work/resumed"
    "$worker" compare "$work/straight/student.rank0.pt" "$work/resumed/student.rank0.pt" 0
    # Any world size: resume the 2-process checkpoint in one process at the doubled batch.
    "$worker" train --method ard --batch 8 --epochs 3 --resume --out "$work/resumed"
    ;;
  failure)
    # Rank 1 kills itself at batch 2 of the first epoch; rank 0, started without the launcher (which
    # would stop it), must fail on its own with a message naming rank 1, well within the bound.
    port=$((20000 + RANDOM % 40000))
    export WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port ARDENT_DIST_TIMEOUT=30
    RANK=1 LOCAL_RANK=1 "$worker" train --method ard --batch 4 --epochs 3 --out "$work/run" --kill-rank 1 --kill-batch 2 &
    status=0
    RANK=0 LOCAL_RANK=0 timeout 50 "$worker" train --method ard --batch 4 --epochs 3 --out "$work/run" \
      --kill-rank 1 --kill-batch 2 2> "$work/rank0.err" || status=$?
    wait || true
    cat "$work/rank0.err"
    [ "$status" -ne 0 ] || { echo "rank 0 exited 0 although rank 1 died"; exit 1; }
    [ "$status" -ne 124 ] || { echo "rank 0 hung until the test's bound"; exit 1; }
    grep -q "rank 1" "$work/rank0.err" || { echo "rank 0's error does not name rank 1"; exit 1; }
    # The launcher stops the survivors itself and names the rank.
    unset WORLD_SIZE MASTER_ADDR MASTER_PORT
    status=0
    timeout 50 "$launch" --nproc 2 "$worker" train --method ard --batch 4 --epochs 3 --out "$work/launched" \
      --kill-rank 1 --kill-batch 2 2> "$work/launch.err" || status=$?
    cat "$work/launch.err"
    [ "$status" -ne 0 ] && [ "$status" -ne 124 ] || { echo "launch.sh status $status"; exit 1; }
    grep -q "rank 1 .*killed by signal 9" "$work/launch.err" || { echo "launch.sh did not name rank 1"; exit 1; }
    # A WORLD_SIZE mismatch and an unreachable master give clear messages.
    port=$((20000 + RANDOM % 40000))
    status=0
    MASTER_ADDR=127.0.0.1 MASTER_PORT=$port ARDENT_DIST_TIMEOUT=5 WORLD_SIZE=2 RANK=1 \
      "$worker" train --out "$work/unreachable" 2> "$work/unreachable.err" || status=$?
    cat "$work/unreachable.err"
    [ "$status" -ne 0 ] && grep -q "cannot reach the rendezvous" "$work/unreachable.err"
    ;;
  hang)
    # Rank 1 stays alive (its heartbeat goes on) but stops at batch 2: rank 0 must fail within the
    # bound, naming rank 1 as hung.
    port=$((20000 + RANDOM % 40000))
    export WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port ARDENT_DIST_TIMEOUT=10
    RANK=1 LOCAL_RANK=1 "$worker" train --method ard --batch 4 --epochs 3 --out "$work/run" --hang-rank 1 --hang-batch 2 &
    hung=$!
    status=0
    RANK=0 LOCAL_RANK=0 timeout 50 "$worker" train --method ard --batch 4 --epochs 3 --out "$work/run" \
      --hang-rank 1 --hang-batch 2 2> "$work/rank0.err" || status=$?
    kill "$hung" 2>/dev/null || true
    wait || true
    cat "$work/rank0.err"
    [ "$status" -ne 0 ] || { echo "rank 0 exited 0 although rank 1 hung"; exit 1; }
    [ "$status" -ne 124 ] || { echo "rank 0 hung until the test's bound"; exit 1; }
    grep -q "rank 1 (at collective [0-9]*) alive but hung" "$work/rank0.err" || { echo "rank 0's error does not name rank 1 as hung"; exit 1; }
    ;;
  stopped)
    # A rank stopped by SIGSTOP answers nothing, rank 0's store server included: the other rank must
    # fail within the bound (timeout 10 s), naming the stopped rank as not responding.
    for stopped in 1 0; do
      other=$((1 - stopped))
      port=$((20000 + RANDOM % 40000))
      export WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port ARDENT_DIST_TIMEOUT=10
      RANK=$stopped LOCAL_RANK=$stopped "$worker" train --method ard --batch 4 --epochs 3 --out "$work/run$stopped" \
        --stop-rank "$stopped" --stop-batch 2 2> "$work/stopped$stopped.err" &
      frozen=$!
      status=0
      RANK=$other LOCAL_RANK=$other timeout 60 "$worker" train --method ard --batch 4 --epochs 3 \
        --out "$work/run$stopped" --stop-rank "$stopped" --stop-batch 2 2> "$work/other$stopped.err" || status=$?
      kill -KILL "$frozen" 2>/dev/null || true
      wait || true
      cat "$work/other$stopped.err"
      [ "$status" -ne 0 ] || { echo "rank $other exited 0 although rank $stopped was stopped"; exit 1; }
      [ "$status" -ne 124 ] || { echo "rank $other hung until the test's bound"; exit 1; }
      if [ "$stopped" = 1 ]; then
        grep -q "rank 1 is stopped (SIGSTOP" "$work/other$stopped.err" || { echo "rank 1 not reported as stopped"; exit 1; }
      else
        grep -q "not responding" "$work/other$stopped.err" || { echo "rank 0 not reported as not responding"; exit 1; }
      fi
    done
    unset WORLD_SIZE MASTER_ADDR MASTER_PORT
    ;;
  store-silent)
    # MASTER_PORT served by another program that accepts connections and never answers: rank 1 must
    # fail within the bound instead of blocking in the store's first operation.
    port=$((20000 + RANDOM % 40000))
    python3 -c "
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $port)); s.listen(8); print('listening', flush=True)
peers = []
while True:
    peers.append(s.accept()[0])
" > "$work/silent.out" &
    silent=$!
    for _ in $(seq 50); do grep -q listening "$work/silent.out" 2>/dev/null && break; sleep 0.1; done
    status=0
    MASTER_ADDR=127.0.0.1 MASTER_PORT=$port ARDENT_DIST_TIMEOUT=5 WORLD_SIZE=2 RANK=1 \
      timeout 60 "$worker" train --out "$work/silent" 2> "$work/silent.err" || status=$?
    kill "$silent" 2>/dev/null || true
    wait || true
    cat "$work/silent.err"
    [ "$status" -ne 0 ] && [ "$status" -ne 124 ] || { echo "status $status"; exit 1; }
    grep -q "is not responding" "$work/silent.err" || { echo "no 'not responding' message"; exit 1; }
    ;;
  unresolvable)
    status=0
    MASTER_ADDR=no-such-host.invalid MASTER_PORT=29999 ARDENT_DIST_TIMEOUT=5 WORLD_SIZE=2 RANK=1 \
      timeout 60 "$worker" train --out "$work/unresolvable" 2> "$work/unresolvable.err" || status=$?
    cat "$work/unresolvable.err"
    [ "$status" -ne 0 ] && [ "$status" -ne 124 ] || { echo "status $status"; exit 1; }
    grep -q "MASTER_ADDR 'no-such-host.invalid' does not resolve" "$work/unresolvable.err" || { echo "no resolve message"; exit 1; }
    ;;
  evaluation)
    "$worker" eval --out "$work/one"
    "$launch" --nproc 2 "$worker" eval --out "$work/two"
    "$launch" --nproc 3 "$worker" eval --out "$work/three"
    "$worker" reports "$work/one/report.json" "$work/two/report.json"
    "$worker" reports "$work/one/report.json" "$work/three/report.json"
    ;;
  *) echo "unknown scenario $scenario" >&2; exit 2 ;;
esac
echo "$scenario: passed"
