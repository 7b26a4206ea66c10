#!/usr/bin/env bash
# API floods during a distribution. The scheduler and agent n1 run with 256
# file descriptors; at a random point of a 24 MiB distribution to three
# agents, three floods start at once and last until it is done:
#   - idle connections (tests/fixtures/flood.py), a random 100 to 150 on
#     each of the scheduler's control and HTTP ports and n1's peer and HTTP
#     ports, from eleven source addresses;
#   - requests (tests/chaos/api_flood.py, seeded): GETs of every API path,
#     keep-alive series, half-sent headers, oversized headers, random bytes
#     to the control and peer ports, connections reset at once;
#   - authenticated admin commands (dataset ls) one after another, each
#     tried up to three times (a handshake that meets a full pre-auth cap is
#     refused like the flood's: the first refusals are counted and printed);
#   - /healthz probes of the scheduler and n1 in rounds every 0.25 s, from
#     just before the floods start until the distribution is done.
# The floods come from other loopback addresses than the agents, the admin
# commands and the probes (127.0.0.1), but for 10 idle connections per port:
# the address of a kubelet probing a node is the node's own, which an
# attacker on the node shares; a new connection takes the place of an idle
# one, so its caps never turn a probe away (docs/CHAOS.md).
# The distribution must complete, byte-identical and never half-published;
# every probe round must get a 200, every admin command must succeed, and
# once the floods end each server must be back to about the descriptors it
# had before (none leaked).
. "$(dirname "$0")/lib.sh"

SIZE=$((24 << 20))
RATE=2000000
AGENTS=(1 2 3)
BOUND=120
FD_LIMIT=256

LIMITED=$T/limited-syncbit
cat >"$LIMITED" <<EOF
#!/bin/sh
ulimit -n $FD_LIMIT || exit 1
exec "$SYNCBIT" "\$@"
EOF
chmod +x "$LIMITED"

mkdir -p "$T/www"
head -c $SIZE /dev/urandom >"$T/www/f.bin"
expect_tree "$T/f.json" "$T/www" f.bin
http_origin "$T/www" || { bad "the HTTP origin starts"; finish; exit 1; }
SYNCBIT=$LIMITED start_scheduler || { bad "scheduler starts"; finish; exit 1; }
N1_HTTP=127.0.0.1:$(free_port)
SYNCBIT=$LIMITED start_agent 1 --http "$N1_HTTP" || { bad "agent n1 starts"; finish; exit 1; }
for n in 2 3; do start_agent "$n" || bad "agent n$n starts"; done
N1_PEER=$(sed -n 's/.* daemon: node n1, .* peers on 127\.0\.0\.1:\([0-9]*\),.*/\1/p' "$T/a1.log" | tail -1)
check "n1's peer port is known" test -n "$N1_PEER"
dirs=()
for n in "${AGENTS[@]}"; do dirs+=("$T/t$n/f"); done
start_watcher "$T/f.json" "${dirs[@]}"
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

rnd 5 30
pct=$R
rnd 100 150
idle=$R
rnd 6 12
threads=$R
rnd 1 1000000
fseed=$R
check "dataset add of a rate-limited 24 MiB HTTP file" \
	add_dataset f "http://127.0.0.1:$HTTP_PORT/m/rate=$RATE,id=f/f.bin" --block-size 512KiB
wait_progress 60 $((SIZE * 3 / 100 * pct)) f "${AGENTS[@]}" || note "the agents did not reach $pct % in 60 s"
fd_sched0=$(fds "$SCHED_PID")
fd_n10=$(fds "${AGENT_PID[1]}")
note "descriptors before the floods: scheduler $fd_sched0, n1 $fd_n10"

# A probe round as a kubelet makes it (failureThreshold 3: three failed
# probes in a row fail it): up to three tries of 3 s each (a kubelet's
# timeoutSeconds is 1; this machine is shared). Only a try that timed out is
# tried again: a refusal (closed or reset without an answer) or an answer
# other than 200 fails the round at once, as does a round of three
# timeouts. Every try that is not a 200 is printed.
probe() { # URL
	local code rc t
	for t in 1 2 3; do
		code=$(curl -s -o /dev/null -m 3 -w '%{http_code}' "$1")
		rc=$?
		[ "$code" = 200 ] && return 0
		echo "  t+$(elapsed)s probe $1: try $t answered ${code:-nothing} (curl exit $rc)" >>"$T/probes"
		[ "$rc" = 28 ] || return 1
	done
	return 1
}
(
	rounds=0 failed=0
	while [ ! -f "$T/stop-probes" ]; do
		probe "http://$SCHED_HTTP/healthz" || failed=$((failed + 1))
		probe "http://$N1_HTTP/healthz" || failed=$((failed + 1))
		rounds=$((rounds + 1))
		sleep 0.25
	done
	echo "$rounds $failed" >"$T/probe.out"
) &
PROBE_PID=$!
PIDS+=("$PROBE_PID")
timeout -k 5 150 python3 "$FIXTURES/flood.py" --count "$idle" --same 10 --sources 11 \
	--ports "$SCHED_PORT,$N1_PEER,$SCHED_HTTP_PORT,${N1_HTTP##*:}" --hold 120 >"$T/idle.out" 2>&1 &
IDLE_PID=$!
PIDS+=("$IDLE_PID")
timeout -k 5 150 python3 "$CHAOS/api_flood.py" --seed "$fseed" --seconds 120 --threads "$threads" \
	--http "$SCHED_HTTP,$N1_HTTP" --tcp "$SCHED,127.0.0.1:$N1_PEER" >"$T/api.out" 2>&1 &
API_PID=$!
PIDS+=("$API_PID")
(
	# A refused handshake is retried twice, as an operator would; the
	# first refusals are counted apart.
	ok=0 failed=0 retried=0
	while [ ! -f "$T/stop-admin" ]; do
		for try in 1 2 3; do
			if timeout 20 "$SYNCBIT" dataset ls --scheduler "$SCHED" --token-file "$TOKEN" >/dev/null 2>>"$T/admin.err"; then
				ok=$((ok + 1))
				break
			fi
			[ "$try" = 1 ] && retried=$((retried + 1))
			[ "$try" = 3 ] && failed=$((failed + 1))
			sleep 0.5
		done
		sleep 0.2
	done
	echo "$ok $failed $retried" >"$T/admin.out"
) &
ADMIN_PID=$!
PIDS+=("$ADMIN_PID")
inject "floods start at $(($(progress f "${AGENTS[@]}") * 100 / (SIZE * 3))) % held: $idle idle connections on each of 4 ports, $threads request threads (seed $fseed), admin commands in a loop"
for _ in $(seq 100); do grep -q '^opened' "$T/idle.out" && break; sleep 0.1; done
note "$(cat "$T/idle.out")"

check "node ls works under the floods" timeout 20 "$SYNCBIT" node ls --scheduler "$SCHED" --token-file "$TOKEN"
check "every node has f within ${BOUND}s under the floods" wait_ready $BOUND f "${AGENTS[@]}" ||
	for n in "${AGENTS[@]}"; do echo "       n$n holds $(status_field "$n" f bytes_have 2>/dev/null) of $SIZE bytes"; done
check "the idle connections were held throughout" kill -0 "$IDLE_PID"
touch "$T/stop-probes"
wait "$PROBE_PID"
read -r probe_rounds probe_failed <"$T/probe.out"
note "health probe rounds: $probe_rounds, failed: $probe_failed; tries without a 200: $(cat "$T/probes" 2>/dev/null | wc -l)"
[ -s "$T/probes" ] && note "$(head -20 "$T/probes")"
check "/healthz of the scheduler and of n1 answers 200 in every probe round under the floods" \
	test "${probe_rounds:-0}" -gt 0 -a "${probe_failed:-1}" = 0

touch "$T/stop-admin"
kill -TERM "$IDLE_PID" "$API_PID" 2>/dev/null
wait "$ADMIN_PID" "$IDLE_PID" "$API_PID" 2>/dev/null
inject "floods end"
note "request flood: $(cat "$T/api.out")"
read -r admin_ok admin_failed admin_retried <"$T/admin.out"
note "admin commands refused at the first try (the pre-auth caps, see docs/CHAOS.md): $admin_retried of $((admin_ok + admin_failed))"
check "every admin command under the floods succeeded within 3 tries ($admin_ok ok, $admin_failed failed)" \
	test "${admin_ok:-0}" -gt 0 -a "${admin_failed:-1}" = 0 || head -3 "$T/admin.err"
check "the request flood got answers" sh -c "awk '{ n = \$4 } END { exit !(n > 0) }' '$T/api.out'"
back_to() {
	local pid=$1 before=$2 now
	for _ in $(seq 100); do
		now=$(fds "$pid")
		[ "$now" -le $((before + 16)) ] && return 0
		sleep 0.2
	done
	echo "$now descriptors open, $before before the floods"
	return 1
}
check "the scheduler's descriptors come back ($fd_sched0 before)" back_to "$SCHED_PID" "$fd_sched0"
check "n1's descriptors come back ($fd_n10 before)" back_to "${AGENT_PID[1]}" "$fd_n10"
stop_watcher
same_trees "$T/f.json" f "${AGENTS[@]}"
stop_cluster
verify_all f "${AGENTS[@]}"
chaos_finish
