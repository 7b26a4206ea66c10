#!/usr/bin/env bash
# Assignments paced by what the nodes' connections take (scheduler/server_pace.c).
# Each Assign carries its dataset's manifest: here 2,000 blocks, ~64 KiB. A
# real scheduler with the smallest queue bound (--assign-queue 2M) and nodes of
# the load generator (bench/sched-scale: one process, the real handshake,
# Register and heartbeats):
# - 40 nodes join at once, owed 40 datasets each (~2.5 MiB a node, ~100 MiB in
#   all): every node gets every Assign, and the scheduler never had more than
#   the bound and one message queued (nodes waited their turn);
# - 10 nodes stop reading their sockets but go on sending heartbeats, then 40
#   datasets more (5 MiB a node; the namespace's socket buffers take less):
#   the 30 others get all of them; after 0.5 s the 10 are taken as stalled
#   and wait apart (each with at most its share of the bound, 1/64, and a
#   message queued; all of them within a second bound), stay connected, and
#   get the rest once they read again. (Heartbeats of 20 s: a control
#   connection's TCP_USER_TIMEOUT is 2 heartbeats and a slack, and Linux >=
#   5.11 drops a connection whose window stays shut that long; the checks
#   fit well before, even on a loaded machine.)
# - stalled and waiting nodes that disconnect leave nothing behind: the
#   queue empties and the scheduler goes on serving.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster.sh"

GEN=${SCALE_GEN:-$(cd "$HERE/../.." && pwd)/build/bench/sched-scale}
[ -x "$GEN" ] || { bad "load generator built" "$GEN missing: make build/bench/sched-scale"; finish; exit 1; }
BOUND=$((2 << 20))
NODES=40
BLOCKS=2000

# A network namespace of its own whose TCP buffers stay at a few hundred KiB
# (loopback's autotuning grows them to many MiB): what the scheduler queues
# is then what a busy node's socket cannot take.
NS=sb-pace-$$
ip netns add "$NS" || { bad "a network namespace"; finish; exit 1; }
CLEANUPS+=("ip netns del $NS")
ip netns exec "$NS" ip link set lo up
ip netns exec "$NS" sysctl -qw net.ipv4.tcp_rmem="4096 131072 262144" \
	net.ipv4.tcp_wmem="4096 16384 262144"
in_ns() { ip netns exec "$NS" "$@"; }

SCHED=127.0.0.1:7400
SCHED_HTTP=127.0.0.1:7401
TOKEN=$T/sched/join-token
# ip execs the scheduler: $! is its pid.
ip netns exec "$NS" "$SYNCBIT" scheduler --listen "$SCHED" --data "$T/sched" --http "$SCHED_HTTP" \
	--heartbeat-ms 20000 --refresh 0 --assign-queue 2M >>"$T/sched.log" 2>&1 &
SCHED_PID=$!
PIDS+=($SCHED_PID)
started() { [ -s "$TOKEN" ] && in_ns curl -sf -o /dev/null "http://$SCHED_HTTP/healthz"; }
for _ in $(seq 100); do started && break; sleep 0.1; done
started || { bad "scheduler starts" "$(tail -5 "$T/sched.log")"; finish; exit 1; }

admin() { in_ns "$SYNCBIT" "$@" --scheduler "$SCHED" --token-file "$TOKEN"; }
# metric NAME: its value on /metrics.
metric() { in_ns curl -sf "http://$SCHED_HTTP/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
wait_until() {
	local deadline=$((SECONDS + $1)); shift
	until "$@"; do [ $SECONDS -ge $deadline ] && return 1; sleep 0.2; done
}
# metric_is NAME VALUE: it has that value (else the value seen is in $SEEN).
metric_is() { SEEN=$(metric "$1"); [ "$SEEN" = "$2" ]; }
# One sparse file of BLOCKS 4 KiB blocks per dataset; the listing reads none.
add_sets() {
	local prefix=$1 count=$2 blocks=${3:-$BLOCKS} i
	for i in $(seq 0 $((count - 1))); do
		mkdir -p "$T/src/$prefix$i"
		truncate -s $((blocks * 4096)) "$T/src/$prefix$i/data.bin"
		admin dataset add "$prefix$i" "$T/src/$prefix$i" --block-size 4KiB >/dev/null || return 1
	done
}
check "40 datasets of $BLOCKS blocks defined" add_sets d 40

coproc GENP { exec ip netns exec "$NS" "$GEN" --scheduler "$SCHED" --token-file "$TOKEN" --nodes $NODES \
	--bind-addrs 1 --dial-window $NODES --origin-rate 0 --peer-rate 0 2>"$T/gen.log"; }
GEN_PID=$GENP_PID
PIDS+=($GEN_PID)
exec {GEN_OUT}<&"${GENP[0]}" {GEN_IN}>&"${GENP[1]}"
gen() { echo "$*" >&"${GEN_IN}"; }
# expect PREFIX SECONDS: read the generator's lines until one starts with PREFIX.
expect() {
	local deadline=$((SECONDS + $2))
	while [ $SECONDS -lt $deadline ]; do
		IFS= read -r -t $((deadline - SECONDS)) REPLY_LINE <&"${GEN_OUT}" || return 1
		[[ "$REPLY_LINE" == "$1"* ]] && return 0
	done
	return 1
}
# assigned PREFIX COUNT NODES: every one of NODES nodes got the Assign of PREFIX0..PREFIX(COUNT-1).
assigned() {
	local i
	for i in $(seq 0 $(($2 - 1))); do
		gen "wait-assign $1$i $3"
		expect "assigned $1$i" 60 || { echo "no Assign of $1$i to $3 nodes" >&2; return 1; }
	done
}
expect started 30 || bad "the load generator starts" "$(tail -3 "$T/gen.log")"

check "a burst of $NODES joins: every node gets all 40 Assigns" assigned d 40 $NODES
peak=$(metric syncbit_assign_queued_peak_bytes)
msg=$((BLOCKS * 32 + 4096))
if [ -n "$peak" ] && [ "$peak" -gt 0 ] && [ "$peak" -le $((BOUND + msg)) ]; then
	ok "at most the bound and one message queued at once ($peak bytes; bound $BOUND)"
else
	bad "at most the bound and one message queued at once" "peak ${peak:-none}, bound $BOUND"
fi
waits=$(metric syncbit_assign_waits_total)
if [ "${waits:-0}" -gt 0 ]; then
	ok "nodes waited their turn ($waits waits) instead of the whole burst being queued"
else
	bad "nodes waited their turn" "syncbit_assign_waits_total ${waits:-none}"
fi
check "the queue empties" wait_until 10 metric_is syncbit_assign_queued_bytes 0 || echo "       syncbit_assign_queued_bytes: $SEEN" >&2
check "no node waits once all is sent" metric_is syncbit_assign_waiting_nodes 0 || echo "       syncbit_assign_waiting_nodes: $SEEN" >&2

gen "deaf 10"
expect deaf 10 && [ "$REPLY_LINE" = "deaf 10" ] || bad "10 nodes stop reading" "$REPLY_LINE"
msg=$((4000 * 32 + 4096))
check "40 datasets more, of 4,000 blocks (5 MiB a node)" add_sets e 40 4000
check "the 30 nodes that read get all 40 new Assigns" assigned e 40 30
check "the 10 that do not are taken as stalled" wait_until 15 metric_is syncbit_assign_stalled_nodes 10 || echo "       syncbit_assign_stalled_nodes: $SEEN" >&2
check "... and wait for their own queue to drain" wait_until 10 metric_is syncbit_assign_waiting_nodes 10 || echo "       syncbit_assign_waiting_nodes: $SEEN" >&2
check "stalled nodes are not in the bound" wait_until 10 metric_is syncbit_assign_queued_bytes 0 || echo "       syncbit_assign_queued_bytes: $SEEN" >&2
stalled=$(metric syncbit_assign_stalled_bytes)
if [ -n "$stalled" ] && [ "$stalled" -gt 0 ] && [ "$stalled" -le $BOUND ]; then
	ok "what they hold is within a second bound ($stalled bytes)"
else
	bad "what they hold is within a second bound" "${stalled:-none} bytes"
fi
peak=$(metric syncbit_assign_queued_peak_bytes)
if [ -n "$peak" ] && [ "$peak" -le $((BOUND + msg)) ]; then
	ok "still at most the bound and one message ($peak bytes)"
else
	bad "still at most the bound and one message" "peak ${peak:-none}"
fi
grep -q "sim-.*connection lost" "$T/sched.log" &&
	bad "no node was dropped" "$(grep -m3 "sim-.*connection lost" "$T/sched.log")"
connected=$(in_ns curl -sf "http://$SCHED_HTTP/metrics" | awk '$1 == "syncbit_nodes{state=\"connected\"}" {print $2}')
[ "$connected" = $NODES ] && ok "nodes that do not read but send heartbeats stay connected" ||
	bad "nodes that do not read but send heartbeats stay connected" "connected: ${connected:-none}"
grep -q "bytes of assignments not taken for 500 ms; it waits apart" "$T/sched.log" &&
	ok "the scheduler logs each stalled node" || bad "the scheduler logs each stalled node"

gen hear
expect hearing 10 || bad "they read again"
check "once they read, every node has all 80 Assigns" assigned e 40 $NODES
check "nothing stalled" wait_until 10 metric_is syncbit_assign_stalled_nodes 0 || echo "       syncbit_assign_stalled_nodes: $SEEN" >&2
check "... nor held for stalled nodes" metric_is syncbit_assign_stalled_bytes 0 || echo "       syncbit_assign_stalled_bytes: $SEEN" >&2
check "nothing waits" wait_until 10 metric_is syncbit_assign_waiting_nodes 0 || echo "       syncbit_assign_waiting_nodes: $SEEN" >&2
check "nothing queued" wait_until 10 metric_is syncbit_assign_queued_bytes 0 || echo "       syncbit_assign_queued_bytes: $SEEN" >&2

# Stalled and waiting nodes that go away.
gen "deaf 10"
expect deaf 10 || bad "10 nodes stop reading again"
check "40 datasets more" add_sets f 40 4000
check "the 30 readers get them" assigned f 40 30
check "the 10 are stalled and waiting" wait_until 15 metric_is syncbit_assign_waiting_nodes 10 || echo "       syncbit_assign_waiting_nodes: $SEEN" >&2
gen quit
wait "$GEN_PID" 2>/dev/null
# A closed node leaves the queue of waiting ones at its next run (at most
# a quarter of a second), not at once.
check "every node gone, nothing stalled" wait_until 15 metric_is syncbit_assign_stalled_nodes 0 || echo "       syncbit_assign_stalled_nodes: $SEEN" >&2
check "... nothing waits" wait_until 10 metric_is syncbit_assign_waiting_nodes 0 || echo "       syncbit_assign_waiting_nodes: $SEEN" >&2
check "... nothing queued" wait_until 10 metric_is syncbit_assign_queued_bytes 0 || echo "       syncbit_assign_queued_bytes: $SEEN" >&2
check "... nor held for stalled nodes" metric_is syncbit_assign_stalled_bytes 0 || echo "       syncbit_assign_stalled_bytes: $SEEN" >&2
check "the scheduler still answers" admin dataset ls
stop_cluster
finish
