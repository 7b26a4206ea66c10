#!/usr/bin/env bash
# Connection exhaustion: a scheduler and an agent limited to 256 file
# descriptors each, with ~600 stalled TCP connections (one byte sent, then
# nothing: idle ones never reach the servers, which defer connections until
# their first bytes) held against the
# scheduler's control port, the agent's peer port and both HTTP ports. While
# they are held, the agent's /healthz answers, admin commands work, and a new
# agent registers and gets a dataset from the flooded one (it dials the
# flooded peer port). Afterwards /metrics counts the refusals and the logs
# hold a few summary lines, not one line per connection.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster.sh"

FD_LIMIT=256
FLOOD_PER_PORT=150 # four ports: 600 connections
FLOOD_SAME=30      # of those per port from 127.0.0.1, where this test's clients come from
FLOOD_SOURCES=11   # the others from 127.0.0.2 .. 127.0.0.12
LOG_LINES_MAX=20

# The scheduler and agent n1 start through this wrapper: a shell that sets
# the limit and execs syncbit, so the pid the helpers record is syncbit's.
LIMITED=$T/limited-syncbit
cat >"$LIMITED" <<EOF
#!/bin/sh
ulimit -n $FD_LIMIT || exit 1
exec "$SYNCBIT" "\$@"
EOF
chmod +x "$LIMITED"

# metric_sum FILE NAME: the sum of every sample of metric NAME in FILE.
metric_sum() {
	awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $2 } END { print s + 0 }' "$1"
}

# node_connected NAME: the scheduler lists node NAME as connected.
node_connected() {
	timeout 10 "$SYNCBIT" node ls --scheduler "$SCHED" --token-file "$TOKEN" --json 2>/dev/null |
		tail -1 | python3 -c "
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if any(n['name'] == '$1' and n['connected'] for n in d['nodes']) else 1)" 2>/dev/null
}

SRC=$T/src
mkdir -p "$SRC/sub"
head -c $((3 << 20)) /dev/urandom >"$SRC/a.bin"
echo small >"$SRC/sub/b.txt"

SYNCBIT=$LIMITED start_scheduler || { bad "scheduler starts"; finish; exit 1; }
N1_HTTP=127.0.0.1:$(free_port)
SYNCBIT=$LIMITED start_agent 1 --http "$N1_HTTP" || { bad "agent n1 starts"; finish; exit 1; }
check "the scheduler runs with $FD_LIMIT descriptors" grep -Eq "^Max open files +$FD_LIMIT " "/proc/$SCHED_PID/limits"
check "agent n1 runs with $FD_LIMIT descriptors" grep -Eq "^Max open files +$FD_LIMIT " "/proc/${AGENT_PID[1]}/limits"
check "dataset add" add_dataset small "$SRC" --block-size 1MiB
check "n1 gets the dataset" wait_ready 60 small 1
N1_PEER=$(sed -n 's/.* daemon: node n1, .* peers on 127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$T/a1.log" | tail -1)
check "n1's peer port is known" test -n "$N1_PEER"

# ---- idle connections, never a byte sent: the kernel holds them back ----
timeout -k 5 30 python3 "$FIXTURES/flood.py" --count "$FLOOD_PER_PORT" --same "$FLOOD_SAME" --sources "$FLOOD_SOURCES" \
	--ports "$N1_PEER,${N1_HTTP##*:}" --hold 3 >"$T/idle.out" 2>&1 &
IDLE_PID=$!
PIDS+=("$IDLE_PID")
for _ in $(seq 100); do grep -q '^opened' "$T/idle.out" && break; sleep 0.1; done
check "an idle flood opened $((FLOOD_PER_PORT * 2)) connections" grep -qx "opened $((FLOOD_PER_PORT * 2))" "$T/idle.out"
sleep 1
curl -sf -m 5 "http://$N1_HTTP/metrics" >"$T/idle.metrics"
check "under it nothing is pending at n1's peer port" test "$(metric_sum "$T/idle.metrics" syncbit_handshakes_pending)" = 0
check "nor refused" test "$(metric_sum "$T/idle.metrics" syncbit_handshakes_refused_total)" = 0
check "nor refused at its HTTP port" test "$(metric_sum "$T/idle.metrics" syncbit_http_connections_refused_total)" = 0
kill -TERM "$IDLE_PID" 2>/dev/null
wait "$IDLE_PID" 2>/dev/null

# ---- the flood: stalled connections, one byte sent and nothing more ----
timeout -k 5 150 python3 "$FIXTURES/flood.py" --stall --count "$FLOOD_PER_PORT" --same "$FLOOD_SAME" --sources "$FLOOD_SOURCES" \
	--ports "$SCHED_PORT,$N1_PEER,$SCHED_HTTP_PORT,${N1_HTTP##*:}" --hold 120 >"$T/flood.out" 2>&1 &
FLOOD_PID=$!
PIDS+=("$FLOOD_PID")
for _ in $(seq 100); do grep -q '^opened' "$T/flood.out" && break; sleep 0.1; done
check "the flood opened $((FLOOD_PER_PORT * 4)) connections" grep -qx "opened $((FLOOD_PER_PORT * 4))" "$T/flood.out"
sleep 1 # the servers take the flood in

code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$N1_HTTP/healthz")
check "agent /healthz answers 200 within 2 s under the flood" test "$code" = 200
code=$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$SCHED_HTTP/healthz")
check "scheduler /healthz answers 200 within 2 s under the flood" test "$code" = 200
check "node ls works under the flood" timeout 20 "$SYNCBIT" node ls --scheduler "$SCHED" --token-file "$TOKEN"
check "dataset ls works under the flood" timeout 20 "$SYNCBIT" dataset ls --scheduler "$SCHED" --token-file "$TOKEN"

# n0 sorts before n1, so n0 dials n1's flooded peer port for the blocks: a
# late joiner reads nothing from the origin.
start_agent 0 || bad "agent n0 starts"
registered=0
for _ in $(seq 60); do node_connected n0 && { registered=1; break; }; sleep 0.5; done
check "a new agent registers under the flood" test $registered = 1
check "the new agent gets the dataset under the flood" wait_ready 60 small 0
check "... byte-identical" diff -r "$SRC" "$T/t0/small"
check "the flood was held throughout" kill -0 "$FLOOD_PID"

# ---- afterwards: counted and summarised ----
curl -sf -m 5 "http://$SCHED_HTTP/metrics" >"$T/sched.metrics"
curl -sf -m 5 "http://$N1_HTTP/metrics" >"$T/n1.metrics"
check "scheduler /metrics: the family is declared" \
	grep -qx '# TYPE syncbit_handshakes_refused_total counter' "$T/sched.metrics"
check "scheduler /metrics: refused handshakes counted" \
	test "$(metric_sum "$T/sched.metrics" syncbit_handshakes_refused_total)" -gt 0
check "scheduler /metrics: refused HTTP connections counted" \
	test "$(metric_sum "$T/sched.metrics" syncbit_http_connections_refused_total)" -gt 0
check "agent /metrics: refused handshakes counted" \
	test "$(metric_sum "$T/n1.metrics" syncbit_handshakes_refused_total)" -gt 0
check "agent /metrics: refused HTTP connections counted" \
	test "$(metric_sum "$T/n1.metrics" syncbit_http_connections_refused_total)" -gt 0
check "agent /metrics: a reason label" \
	grep -Eq '^syncbit_handshakes_refused_total\{reason="[a-z_]+"\} [0-9]+$' "$T/n1.metrics"

kill -TERM "$FLOOD_PID" 2>/dev/null
wait "$FLOOD_PID" 2>/dev/null
for log in sched a1; do
	n=$(grep -c 'refused' "$T/$log.log")
	check "$log.log: refusals are logged (1..$LOG_LINES_MAX lines, $n)" \
		test "$n" -ge 1 -a "$n" -lt "$LOG_LINES_MAX"
done

stop_cluster
finish
