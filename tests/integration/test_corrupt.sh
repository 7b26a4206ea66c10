#!/usr/bin/env bash
# A published file is a hardlink of its cache object: a consumer writing
# into it changes what its node holds and serves. A real scheduler, a local
# tree as the origin and three real agents: after a distribution, files are
# changed in place, appended to, truncated, and changed while an agent is
# stopped. Each time the node notices by itself (no peer asks it for the
# block), stops serving the file, says it is not ready and which file is
# why, fetches it again and publishes a correct copy; no peer ever receives
# the bad bytes. With the origin gone, a peer's copy repairs it; with no
# copy anywhere, the repair waits and says why until the origin is back.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster.sh"

# The bound the node has to notice a change by itself.
BOUND=60
SRC=$T/src
mkdir -p "$SRC/sub"
head -c $((4 << 20)) /dev/urandom >"$SRC/data.bin"
head -c 300000 /dev/urandom >"$SRC/sub/small.bin"

start_scheduler || { bad "scheduler starts"; finish; exit 1; }
HTTP1=127.0.0.1:$(free_port)
start_agent 1 --http "$HTTP1" || bad "agent n1 starts"
start_agent 2 || bad "agent n2 starts"
check "dataset add of a local tree" add_dataset m "$SRC" --block-size 1MiB
check "n1 and n2 hold m" wait_ready 60 m 1 2

# same N FILE: agent N's published FILE is the origin's
same() { cmp "$SRC/$2" "$T/t$1/m/$2"; }
# not_ready_for N SECONDS PATTERN: agent N turns m not ready, and its reason
# matches PATTERN, within SECONDS.
not_ready_for() {
	local deadline=$((SECONDS + $2))
	while [ $SECONDS -lt $deadline ]; do
		if ! "$SYNCBIT" ready m --socket "$T/a$1.sock" 2>"$T/.why" >/dev/null; then
			grep -Eq "$3" "$T/.why" && return 0
		fi
		sleep 0.1
	done
	echo "still ready, or not for that: $(cat "$T/.why")"
	return 1
}
# bad_bytes N: blocks agent N received from a peer that failed their check
bad_bytes() {
	"$SYNCBIT" status --socket "$T/a$1.sock" --json | tail -1 |
		python3 -c "import json,sys; print(json.load(sys.stdin)['peers']['dropped_bad_data'])"
}

# ---- (a) one byte changed in place, no peer to repair from at once ----
# n2 stops and the origin is away while the state is looked at, so that
# n1 cannot repair at once (on a fast machine a repair from a readable
# origin ends before status is asked); the origin back, the repair retries.
kill -TERM "${AGENT_PID[2]}"; wait "${AGENT_PID[2]}" 2>/dev/null
mv "$SRC" "$SRC.away"
flip_byte "$T/t1/m/data.bin" $((2 << 20))
check "(a) n1 is not ready within ${BOUND}s, naming the changed file" \
	not_ready_for 1 $BOUND "t1/m/data.bin changed on disk \(block 2 does not match its hash\)"
check "(a) /readyz says not ready and why" sh -c \
	"curl -s -o '$T/readyz' -w '%{http_code}' 'http://$HTTP1/readyz' | grep -qx 503 &&
	 grep -q 'm not ready: .*data.bin changed on disk' '$T/readyz'"
check "(a) status says repairing" test "$(status_field 1 m state)" = repairing
mv "$SRC.away" "$SRC"
check "(a) a warning names the file and the dataset" \
	grep -q "dataset m: .*/t1/m/data.bin changed on disk: block 2 does not match its hash; no longer served" "$T/a1.log"
# A node joining now asks n1 for blocks: n1 no longer serves the bad one.
start_agent 3 || bad "agent n3 starts"
check "(a) n1 repairs: ready again" wait_ready 90 m 1
check "(a) n1's file is the origin's again" same 1 data.bin
check "(a) the newcomer n3 gets m" wait_ready 90 m 3
check "(a) n3's copy is the origin's" same 3 data.bin
check "(a) n3 never received a bad block" test "$(bad_bytes 3)" = 0
check "(a) n3 never went back to the origin for a bad peer" \
	test "$(status_field 3 m origin_refetch | tr -d "{}' " | sed 's/.*bad_peer:\([0-9]*\).*/\1/')" = 0

# ---- (b) appended to, truncated ----
start_agent 2 || bad "agent n2 restarts"
check "n2 ready again" wait_ready 60 m 2
printf 'more' >>"$T/t2/m/sub/small.bin"
check "(b) n2 notices the append" sh -c "for i in \$(seq $((BOUND * 10))); do
	grep -q 'sub/small.bin changed on disk: 300004 bytes, not 300000' '$T/a2.log' && exit 0; sleep 0.1; done; exit 1"
truncate -s $((1 << 20)) "$T/t3/m/data.bin"
check "(b) n3 notices the truncation" sh -c "for i in \$(seq $((BOUND * 10))); do
	grep -q 'data.bin changed on disk: 1048576 bytes, not 4194304' '$T/a3.log' && exit 0; sleep 0.1; done; exit 1"
check "(b) both repair" wait_ready 90 m 2 3
check "(b) n2's file is the origin's" same 2 sub/small.bin
check "(b) n3's file is the origin's" same 3 data.bin
for n in 1 2 3; do
	check "(b) n$n never received a bad block" test "$(bad_bytes $n)" = 0
done

# ---- (c) changed while the agent is stopped ----
kill -TERM "${AGENT_PID[1]}"; wait "${AGENT_PID[1]}" 2>/dev/null
flip_byte "$T/t1/m/sub/small.bin" 1000
start_agent 1 --http "$HTTP1" || bad "agent n1 restarts"
check "(c) n1 finds the change at start" sh -c "for i in \$(seq $((BOUND * 10))); do
	grep -q 'sub/small.bin changed on disk' '$T/a1.log' && exit 0; sleep 0.1; done; exit 1"
check "(c) n1 repairs it" wait_ready 90 m 1
check "(c) n1's file is the origin's" same 1 sub/small.bin
check "(c) and the rest of m" diff -r "$SRC" "$T/t1/m"
for n in 2 3; do
	check "(c) n$n never received a bad block" test "$(bad_bytes $n)" = 0
done

# ---- (d) the origin cannot be read, a peer holds the block ----
# The repair takes only the changed file's blocks (its object left the
# index whole), from the peers; the origin is never needed, so its absence
# fails nothing.
mv "$SRC" "$SRC.away"
failed_before=$(grep -c "dataset m: failed" "$T/a2.log")
flip_byte "$T/t2/m/data.bin" $((3 << 20))
check "(d) n2 notices the change" sh -c "for i in \$(seq $((BOUND * 10))); do
	grep -q 't2/m/data.bin changed on disk: block 3' '$T/a2.log' && exit 0; sleep 0.1; done; exit 1"
check "(d) n2 repairs it from its peers, the origin gone" wait_ready 60 m 2
check "(d) n2's file is the origin's" cmp "$SRC.away/data.bin" "$T/t2/m/data.bin"
from_peers_only() { # N BYTES: agent N's fetch of m read nothing from the origin, BYTES from peers
	local o p
	o=$(status_field "$1" m bytes_from_origin) p=$(status_field "$1" m bytes_from_peers)
	echo "from the origin $o, from peers $p"
	test "$o" = 0 -a "$p" = "$2"
}
check "(d) the repair read nothing from the origin, the changed file from peers" \
	from_peers_only 2 $((4 << 20))
check "(d) only that file was put back" grep -q "dataset m: repaired .*: 1 file put back, 1 in place" "$T/a2.log"
check "(d) nothing failed on n2" test "$(grep -c "dataset m: failed" "$T/a2.log")" = "$failed_before"

# ---- (e) nobody holds the block, the origin cannot be read ----
# The repair waits, says why in status, and tries the origin again with a
# backoff; the origin back, the file is repaired.
kill -TERM "${AGENT_PID[1]}" "${AGENT_PID[3]}"
wait "${AGENT_PID[1]}" "${AGENT_PID[3]}" 2>/dev/null
flip_byte "$T/t2/m/sub/small.bin" 2000
waiting_says() { # the status line of a repair waiting for the origin
	local deadline=$((SECONDS + 60))
	while [ $SECONDS -lt $deadline ]; do
		status_field 2 m waiting | grep -q "the origin cannot be read .* 1 block wait for a peer, the origin is tried again in [0-9]* s" && return 0
		sleep 0.5
	done
	status_field 2 m waiting; return 1
}
check "(e) status says the repair waits for a peer and retries the origin" waiting_says
check "(e) the dataset is repairing, not failed" \
	test "$(status_field 2 m state)" = repairing -a "$(status_field 2 m error)" = None
check "(e) the status text shows it too" \
	sh -c "'$SYNCBIT' status --socket '$T/a2.sock' | grep -q 'waiting: the origin cannot be read'"
mv "$SRC.away" "$SRC"
check "(e) the origin back, n2 repairs it" wait_ready 90 m 2
check "(e) n2's file is the origin's" same 2 sub/small.bin
check "(e) the other files stayed in place" diff -r "$SRC" "$T/t2/m"

stop_cluster
finish
