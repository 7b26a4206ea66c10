# Helpers to run a Syncbit cluster on loopback: a scheduler and agents, each
# with its own data dir, target dir and socket under $T. Sourced after lib.sh.

# start_scheduler: sets SCHED (host:port), SCHED_PID, TOKEN, SCHED_HTTP.
start_scheduler() {
	local port http
	port=${SCHED_PORT:-$(free_port)}
	http=${SCHED_HTTP_PORT:-$(free_port)}
	SCHED_PORT=$port
	SCHED_HTTP_PORT=$http
	SCHED=127.0.0.1:$port
	SCHED_HTTP=127.0.0.1:$http
	mkdir -p "$T/sched"
	"$SYNCBIT" scheduler --listen "$SCHED" --data "$T/sched" --http "$SCHED_HTTP" \
		--log-level "${LOG_LEVEL:-info}" "$@" >>"$T/sched.log" 2>&1 &
	SCHED_PID=$!
	PIDS+=($SCHED_PID)
	TOKEN=$T/sched/join-token
	for _ in $(seq 100); do
		[ -s "$TOKEN" ] && curl -sf -o /dev/null "http://$SCHED_HTTP/healthz" && return 0
		sleep 0.1
	done
	echo "scheduler did not start:" >&2; tail -20 "$T/sched.log" >&2; return 1
}

# start_agent N [flags...]: agent nN with data $T/aN, target $T/tN, socket
# $T/aN.sock; its pid in AGENT_PID[N].
declare -A AGENT_PID
start_agent() {
	local n=$1; shift
	mkdir -p "$T/a$n" "$T/t$n"
	"$SYNCBIT" daemon --scheduler "$SCHED" --listen 127.0.0.1:0 --data "$T/a$n" \
		--target "$T/t$n" --node "n$n" --labels "role=gpu,idx=$n" \
		--token-file "${AGENT_TOKEN:-$TOKEN}" --socket "$T/a$n.sock" --log-level "${LOG_LEVEL:-info}" "$@" \
		>>"$T/a$n.log" 2>&1 &
	AGENT_PID[$n]=$!
	PIDS+=($!)
	for _ in $(seq 100); do
		[ -S "$T/a$n.sock" ] && return 0
		kill -0 "${AGENT_PID[$n]}" 2>/dev/null || break
		sleep 0.1
	done
	echo "agent n$n did not start:" >&2; tail -20 "$T/a$n.log" >&2; return 1
}

# status_field N DATASET KEY: a field of the dataset in agent N's status.
status_field() {
	"$SYNCBIT" status --socket "$T/a$1.sock" --json 2>/dev/null | tail -1 | python3 -c "
import json, sys
st = json.load(sys.stdin)
for d in st['datasets']:
    if d['name'] == '$2':
        v = d.get('$3')
        print(str(v).lower() if isinstance(v, bool) else v)
        break
else:
    print('none')"
}

# wait_ready SECONDS DATASET N...: every agent N has DATASET ready.
wait_ready() {
	local secs=$1 ds=$2; shift 2
	local deadline=$((SECONDS + secs)) n
	for n in "$@"; do
		until "$SYNCBIT" ready "$ds" --socket "$T/a$n.sock" >/dev/null 2>&1; do
			[ $SECONDS -ge $deadline ] && { echo "n$n: $ds not ready after ${secs}s" >&2; return 1; }
			sleep 0.2
		done
	done
}

# add_dataset NAME SOURCE [flags...]
add_dataset() {
	local name=$1 src=$2; shift 2
	"$SYNCBIT" dataset add "$name" "$src" --scheduler "$SCHED" --token-file "$TOKEN" "$@"
}

# stop_cluster: SIGTERM every agent and the scheduler, wait for them, and
# check that each exited cleanly with no sanitizer report in its log.
stop_cluster() {
	local p n
	for n in "${!AGENT_PID[@]}"; do kill -TERM "${AGENT_PID[$n]}" 2>/dev/null; done
	kill -TERM "$SCHED_PID" 2>/dev/null
	for p in "${AGENT_PID[@]}" "$SCHED_PID"; do
		for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
	done
	check "agents and scheduler stop on SIGTERM" sh -c "! kill -0 ${AGENT_PID[*]} $SCHED_PID 2>/dev/null"
	if grep -lE 'AddressSanitizer|LeakSanitizer|runtime error' "$T"/*.log >"$T/.san" 2>/dev/null; then
		bad "no sanitizer reports" "$(cat "$T/.san" | tr '\n' ' '): $(grep -hE -A3 'Sanitizer|runtime error' $(cat "$T/.san") | head -8 | tr '\n' ' ')"
	else
		ok "no sanitizer reports"
	fi
}

# hub_range_bytes PORT REPO: bytes tests/fixtures/hub_server.py on PORT
# served to REPO in answers 206 to a Range (API and CDN alike).
hub_range_bytes() {
	curl -sf "http://127.0.0.1:$1/__stats?repo=$2" | python3 -c "
import json, sys
n = 0
for r in json.load(sys.stdin)['requests']:
    if r['status'] == 206 and r['range']:
        a, b = r['range'][6:].split('-')
        n += int(b) - int(a) + 1
print(n)"
}
