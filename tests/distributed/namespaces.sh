#!/usr/bin/env bash
# Two hosts on one machine (ctest: distributed.namespaces): two network namespaces joined by a veth
# pair, each with an address of its own, one rank in each. Rank 1 finds rank 0 by name
# (MASTER_ADDR=ardent-rank0, resolved through the namespace's own hosts file, /etc/netns/NS/hosts)
# and each rank's Gloo binds to its namespace's address (ARDENT_GLOO_HOST). The student must equal
# the one-process run's to 1e-6. Traffic stays in the two namespaces; they and the hosts files are
# removed whatever happens. Needs root (ip netns); skipped with a message where it cannot run.
#   namespaces.sh WORKER WORKDIR
set -euo pipefail
worker="$1"; work="$2/namespaces"
rm -rf "$work"; mkdir -p "$work"
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE ARDENT_DIST_TIMEOUT=60
unset RANK WORLD_SIZE LOCAL_RANK MASTER_ADDR MASTER_PORT ARDENT_GLOO_HOST

id="$$"
ns0="ardent_rank0_$id" ns1="ardent_rank1_$id"
veth0="ard0_$id" veth1="ard1_$id"
veth0="${veth0:0:15}" veth1="${veth1:0:15}"  # interface names: at most 15 characters
# An address block the test owns inside its namespaces (RFC 5737's TEST-NET-2: never routed).
addr0=198.51.100.1 addr1=198.51.100.2
cleanup() {
  ip netns pids "$ns0" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
  ip netns pids "$ns1" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
  ip netns del "$ns0" 2>/dev/null || true   # deleting a namespace deletes its end of the veth pair
  ip netns del "$ns1" 2>/dev/null || true
  ip link del "$veth0" 2>/dev/null || true
  rm -rf "/etc/netns/$ns0" "/etc/netns/$ns1"
}
trap cleanup EXIT INT TERM

if ! command -v ip > /dev/null; then echo "SKIP: no 'ip' command (Debian: iproute2)"; exit 0; fi
if ! ip netns add "$ns0" 2> "$work/netns.err"; then
  echo "SKIP: cannot create network namespaces here ($(head -1 "$work/netns.err")); needs root and CAP_SYS_ADMIN"
  exit 0
fi
ip netns add "$ns1"
if ! ip link add "$veth0" type veth peer name "$veth1" 2> "$work/veth.err"; then
  echo "SKIP: cannot create a veth pair here ($(head -1 "$work/veth.err"))"; exit 0
fi
ip link set "$veth0" netns "$ns0"
ip link set "$veth1" netns "$ns1"
ip -n "$ns0" addr add "$addr0/24" dev "$veth0"
ip -n "$ns1" addr add "$addr1/24" dev "$veth1"
for ns in "$ns0" "$ns1"; do ip -n "$ns" link set lo up; done
ip -n "$ns0" link set "$veth0" up
ip -n "$ns1" link set "$veth1" up
# `ip netns exec NS` bind-mounts /etc/netns/NS/hosts over /etc/hosts for the command it runs.
mkdir -p "/etc/netns/$ns0" "/etc/netns/$ns1"
printf '127.0.0.1 localhost\n%s ardent-rank0\n%s ardent-rank1\n' "$addr0" "$addr1" | tee "/etc/netns/$ns0/hosts" \
  > "/etc/netns/$ns1/hosts"
resolved="$(ip netns exec "$ns1" getent hosts ardent-rank0 | awk '{ print $1 }')"
[ "$resolved" = "$addr0" ] || { echo "FAIL: ardent-rank0 resolves to '$resolved' in $ns1, expected $addr0"; exit 1; }

# The reference: one process at batch 8 (outside the namespaces).
"$worker" train --method ard --batch 8 --epochs 2 --out "$work/one"
port=29500  # free by construction: nothing else listens inside a namespace made just now
export WORLD_SIZE=2 MASTER_PORT=$port
ip netns exec "$ns0" env RANK=0 LOCAL_RANK=0 MASTER_ADDR="$addr0" ARDENT_GLOO_HOST="$addr0" \
  "$worker" train --method ard --batch 4 --epochs 2 --out "$work/two" 2> "$work/rank0.err" &
rank0=$!
status=0
ip netns exec "$ns1" env RANK=1 LOCAL_RANK=0 MASTER_ADDR=ardent-rank0 ARDENT_GLOO_HOST="$addr1" \
  "$worker" train --method ard --batch 4 --epochs 2 --out "$work/two" 2> "$work/rank1.err" || status=$?
wait "$rank0" || status=$?
cat "$work/rank0.err" "$work/rank1.err"
[ "$status" -eq 0 ] || { echo "FAIL: a rank exited with status $status"; exit 1; }
"$worker" compare "$work/two/student.rank0.pt" "$work/two/student.rank1.pt" 0
"$worker" compare "$work/one/student.rank0.pt" "$work/two/student.rank0.pt" 1e-6
echo "namespaces: rank 0 at $addr0 and rank 1 at $addr1 (found as ardent-rank0) trained the one-process student"
