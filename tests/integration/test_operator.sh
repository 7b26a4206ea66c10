#!/usr/bin/env bash
# What an operator sees without asking for it: the logs at the default
# level (startup lines, dataset state changes, a refused handshake named on
# both sides), /healthz of an agent cut off from its scheduler longer than
# --scheduler-grace, and status saying why it is not connected.
. "$(dirname "$0")/lib.sh"

PORT=$(free_port) SCHED=127.0.0.1:$PORT
A=(--scheduler "$SCHED" --token-file "$T/sched/join-token")
"$SYNCBIT" scheduler --listen "$SCHED" --data "$T/sched" >"$T/sched.log" 2>&1 &
PIDS+=($!); SPID=$!
for _ in $(seq 100); do [ -s "$T/sched/join-token" ] && break; sleep 0.05; done
python3 -c "print('ab' * 32)" >"$T/wrong-token"; chmod 600 "$T/wrong-token"

# agent N TOKEN [flags...]: no --log-level, so the default level shows.
agent() {
	local n=$1 token=$2; shift 2
	mkdir -p "$T/t$n"
	"$SYNCBIT" daemon --scheduler "$SCHED" --listen 127.0.0.1:0 --data "$T/a$n" --target "$T/t$n" \
		--node "n$n" --labels "role=gpu,idx=$n" --token-file "$token" --socket "$T/a$n.sock" \
		"$@" >"$T/a$n.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 100); do [ -S "$T/a$n.sock" ] && return 0; sleep 0.05; done
	return 1
}
# wait_log FILE REGEX: up to 5 s for a line.
wait_log() { for _ in $(seq 100); do grep -Eq "$2" "$1" && return 0; sleep 0.05; done; return 1; }

HP=$(free_port)
check "an agent with the wrong token starts" agent 1 "$T/wrong-token" --http "127.0.0.1:$HP" --scheduler-grace 2
check "its /healthz answers 200 within the grace period" curl -sf "http://127.0.0.1:$HP/healthz"
check "the agent logs the refusal at the default level, naming the scheduler" \
	wait_log "$T/a1.log" "error: scheduler $SCHED refused the handshake \(wrong join token\?\)$"
check "the scheduler logs it too, naming the address, then once a minute" \
	wait_log "$T/sched.log" "warn: control port $PORT: refused a connection from 127.0.0.1: .*join token.*; further refusals are summarised every 60 s$"
"$SYNCBIT" status --socket "$T/a1.sock" >"$T/st1"
check "status says why it is not connected" \
	grep -q "^node n1, scheduler $SCHED (not connected for [0-9]*s: refused the handshake (wrong join token?))$" "$T/st1"
sleep 2.2
code=$(curl -s -o "$T/health" -w '%{http_code}' "http://127.0.0.1:$HP/healthz")
check "past the grace period /healthz is 503" test "$code" = 503
check "... saying why" grep -q "scheduler $SCHED: not connected for [0-9]* s (grace 2 s): refused the handshake" "$T/health"
sleep 1
check "retries do not repeat the line within a minute" test "$(grep -c 'refused the handshake' "$T/a1.log")" -eq 1

check "an agent with the right token starts" agent 2 "$T/sched/join-token"
# (written once everything is set up: just after the socket appears)
check "the daemon logs one startup line at info" \
	wait_log "$T/a2.log" "info: syncbit [0-9.]* \(.*\) daemon: node n2, labels role=gpu,idx=2, scheduler $SCHED, peers on 127.0.0.1:[0-9]*, http off, socket $T/a2.sock, data $T/a2, target $T/t2$"
check "so does the scheduler" grep -q "info: syncbit [0-9.]* (.*) scheduler: listening on $SCHED, http off, data $T/sched" "$T/sched.log"
mkdir -p "$T/src"; echo hello >"$T/src/f"
check "dataset add for n2" "$SYNCBIT" dataset add ds "$T/src" --selector idx=2 "${A[@]}"
check "n2 logs the assignment" wait_log "$T/a2.log" "info: dataset ds: assigned version [0-9a-f]{8} \(1 file\)$"
check "... the fetch" wait_log "$T/a2.log" "info: dataset ds: fetching "
check "... and the publication" wait_log "$T/a2.log" "info: dataset ds: published $T/t2/ds$"
check "the scheduler logs where it is published" wait_log "$T/sched.log" "info: dataset ds: version [0-9a-f]{12} published on node n2$"
expect_fail "pull NAME --no-wait of a dataset not assigned here" 1 "pull nosuch: not assigned to this node" \
	"$SYNCBIT" pull nosuch --socket "$T/a2.sock" --no-wait
check "pull NAME --no-wait of one that is here" bash -c "'$SYNCBIT' pull ds --socket '$T/a2.sock' --no-wait | grep -qx 'ds: ready'"
check "dataset rm: one node drops it" bash -c "'$SYNCBIT' dataset rm ds ${A[*]} | grep -qx 'dataset ds removed; 1 node drops it'"
check "n2 logs the removal" wait_log "$T/a2.log" "info: dataset ds: no longer assigned here; removing $T/t2/ds$"

kill -TERM "$SPID"; wait "$SPID" 2>/dev/null
check "a lost scheduler is a warning on the agent" wait_log "$T/a2.log" "warn: scheduler $SCHED: connection lost: .*; reconnecting$"
check "no sanitizer reports" bash -c "! grep -Eq 'Sanitizer|runtime error' '$T'/*.log"
finish
