#!/usr/bin/env bash
# A scheduler restarted while three agents distribute a dataset from a slow
# HTTP origin: killed with -9 early, in the middle and late (70 %), and stopped once
# with SIGTERM (an agent killed -9 while it is away), each time started again
# on the same data directory. Hashes
# the agents reported while it was away, or that it had not saved yet, come
# back from the agents that hold the blocks; every node ends with the
# origin's bytes soon after the last restart, and the origin is not read
# again wholesale.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster.sh"

SIZE=$((64 << 20))
RATE=5000000 # origin bytes per second, all readers together: ~13 s of reads
mkdir -p "$T/www"
head -c $SIZE /dev/urandom >"$T/www/data.bin"
python3 "$FIXTURES/faulty_http.py" --dir "$T/www" >"$T/http.port" 2>"$T/http.log" &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$T/http.port" ] && break; sleep 0.1; done
HTTP_PORT=$(head -1 "$T/http.port")

start_scheduler || { bad "scheduler starts"; finish; exit 1; }
for n in 1 2 3; do start_agent $n || bad "agent n$n starts"; done
check "dataset add of a rate-limited HTTP file" \
	add_dataset big "http://127.0.0.1:$HTTP_PORT/m/rate=$RATE,id=big/data.bin" --block-size 512KiB

# known: "blocks_known blocks" of the dataset as the scheduler sees it.
known() {
	curl -sf "http://$SCHED_HTTP/api/v1/datasets" 2>/dev/null | python3 -c "
import json, sys
for d in json.load(sys.stdin)['datasets']:
    if d['name'] == 'big':
        print(d['blocks_known'], d['blocks'])" 2>/dev/null || echo "0 0"
}

# least_held: the bytes of big the least advanced agent that answers holds
# (0 when none answers; an agent starting again is not waited for, the
# others go on meanwhile). The scheduler's count of known hashes lags what
# the nodes hold (hashes are batched, and re-reported after each restart),
# so the progress that times a stop is the agents' own.
least_held() {
	local n h least=
	for n in 1 2 3; do
		h=$(status_field "$n" big bytes_have 2>/dev/null)
		case "$h" in '' | *[!0-9]*) continue ;; esac
		[ -z "$least" ] || [ "$h" -lt "$least" ] && least=$h
	done
	echo "${least:-0}"
}

# restart_at PERCENT SIGNAL [AGENT]: once every agent holds PERCENT of the
# dataset (or 20 s passed), stop the scheduler with SIGNAL, kill -9 agent
# AGENT too while it is away, and start them again.
KILLS=0 MID=0
restart_at() {
	local pct=$1 sig=$2 agent=${3:-} k=0 b=0 deadline=$((SECONDS + 20)) ready=0 n
	while [ $SECONDS -lt $deadline ]; do
		[ $(($(least_held) * 100)) -ge $((pct * SIZE)) ] && break
		sleep 0.1
	done
	read -r k b <<<"$(known)"
	# Stop it at once: on a loaded machine the few seconds between 90 %
	# and done pass quickly. Nodes that are ready by now count after.
	kill -"$sig" "$SCHED_PID"; wait "$SCHED_PID" 2>/dev/null
	for n in 1 2 3; do "$SYNCBIT" ready big --socket "$T/a$n.sock" >/dev/null 2>&1 && ready=$((ready + 1)); done
	echo "  scheduler stopped with SIG$sig at $k of $b hashes known, $ready of 3 nodes ready${agent:+, n$agent killed too}"
	KILLS=$((KILLS + 1))
	[ "$ready" -lt 3 ] && MID=$((MID + 1))
	if [ -n "$agent" ]; then
		sleep 0.5 # blocks it reads meanwhile are reported to no one
		kill -9 "${AGENT_PID[$agent]}"; wait "${AGENT_PID[$agent]}" 2>/dev/null
	fi
	start_scheduler || bad "scheduler starts again after SIG$sig"
	[ -n "$agent" ] && { start_agent "$agent" || bad "agent n$agent starts again"; }
}

restart_at 10 KILL
restart_at 30 KILL
restart_at 50 TERM 3
restart_at 70 KILL
check "every stop landed mid-distribution ($MID of $KILLS)" test "$MID" = "$KILLS"

t0=$SECONDS
check "all three nodes get the dataset within 60 s of the last restart" wait_ready 60 big 1 2 3 ||
	for n in 1 2 3; do echo "       n$n has $(status_field $n big bytes_have) of $SIZE bytes"; done
echo "  ready $((SECONDS - t0)) s after the last restart; scheduler knows $(known | tr ' ' /) hashes"
for n in 1 2 3; do check "n$n: identical to the origin" cmp "$T/www/data.bin" "$T/t$n/big/data.bin"; done
read -r k b <<<"$(known)"
check "the scheduler knows every block hash again ($k of $b)" test "$b" -gt 0 -a "$k" = "$b"

# Every byte the origin sent for this dataset, aborted reads included. The
# agents lose nothing they held; what a restart may cost is the few blocks
# in flight while the plan is made again, far below a second copy.
curl -sf "http://127.0.0.1:$HTTP_PORT/__stats?id=big" >"$T/stats.json"
origin=$(python3 -c '
import json, sys
print(sum(r["sent"] for r in json.load(open(sys.argv[1]))["requests"] if r["method"] == "GET"))
' "$T/stats.json")
echo "  origin sent $origin bytes for a $SIZE-byte dataset"
check "the origin is not read again wholesale (<= 1.3x)" test "$origin" -le $((SIZE * 13 / 10))

stop_cluster
finish
