#!/usr/bin/env bash
# syncbit pull SOURCE through the local agent, as dfget goes through
# dfdaemon: a real scheduler, two real agents and nginx as the origin. Two
# nodes pull the same URL at once through their agents: both get the file,
# the origin sends it about once (counted in nginx's access log), peers
# carry the rest. --standalone still pulls in-process, no agent falls back
# to standalone, source errors keep their exit code, the agent publishes
# for a user only into a directory that user owns, `syncbit rm` while the
# agents run takes a node off a pulled dataset through its agent (the last
# one's rm removes it; --purge evicts), and the scheduler drops the pulled
# dataset once both nodes have it (--pull-linger).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster.sh"

S=$((64 << 20))
mkdir -p "$T/www"
head -c $S /dev/urandom >"$T/www/model.bin"
printf 'small\n' >"$T/www/small.txt"
# An origin slower than loopback, as real ones are (nginx lets the first
# second's worth of each answer go at once, so a 2 MiB half block takes
# about a second at 1 MB/s).
NGINX_RATE=1m start_nginx "$T/www" || { bad "nginx starts"; finish; exit 1; }
URL=http://127.0.0.1:$NGINX_PORT/model.bin
LOG=$T/nginx/logs/access.log

# Bytes nginx sent for model.bin so far (status 200 or 206 bodies).
egress() { awk '$7 == "/model.bin" && ($9 == 200 || $9 == 206) {s += $10} END {print s + 0}' "$LOG"; }

start_scheduler --pull-linger 8 || { bad "scheduler starts"; finish; exit 1; }
for n in 1 2; do start_agent $n || bad "agent n$n starts"; done

# ---- two nodes pull the same URL through their agents at once ----
"$SYNCBIT" pull "$URL" --to "$T/o1" --socket "$T/a1.sock" --json \
	>"$T/p1.out" 2>"$T/p1.err" &
p1=$!
"$SYNCBIT" pull "$URL" --to "$T/o2" --socket "$T/a2.sock" --json \
	>"$T/p2.out" 2>"$T/p2.err"
rc2=$?
wait $p1
rc1=$?
check "n1: pull through the agent exits 0" test "$rc1" = 0
check "n2: pull through the agent exits 0" test "$rc2" = 0
# stderr is not a TTY here: a plain progress line every 5 s, --json or not
check "progress through the agent: plain lines on stderr with --json" \
	grep -Eq '^pull: [0-9.]+ [KMG]?i?B / 64\.0 MiB \([0-9]+%\)' "$T/p2.err"
check "no carriage-return bar off a TTY" sh -c "! grep -q \"\$(printf '\\r')\" '$T/p2.err'"

for n in 1 2; do
	check "n$n: the file is byte-identical" cmp "$T/www/model.bin" "$T/o$n/model.bin"
	check "n$n: the JSON line adds up (source + peers + reused = bytes)" python3 -c "
import json; d = json.loads(open('$T/p$n.out').read().splitlines()[-1])
assert d['bytes'] == $S, d
assert d['bytes_from_source'] + d['bytes_from_peers'] + d['bytes_reused'] == d['bytes'], d
assert d['files'] == 1 and d['target'] == '$T/o$n' and d['source'] == '$URL', d"
done
sent=$(egress)
echo "  origin sent $sent bytes for a $S-byte file pulled by two nodes"
check "the origin sends the file about once (<= 1.10x)" test "$sent" -le $((S * 110 / 100))
peers=$(($(json_field "$T/p1.out" bytes_from_peers) + $(json_field "$T/p2.out" bytes_from_peers)))
check "bytes_from_peers is filled: peers carried part of it" test "$peers" -gt 0
check "the same manifest on both nodes" test "$(json_field "$T/p1.out" manifest)" = "$(json_field "$T/p2.out" manifest)"
check "nothing is published at TARGET/NAME for a pull" sh -c "! ls '$T/t1' | grep -q ."

# ---- a second pull of an unchanged source while the scheduler keeps the dataset ----
before=$(egress)
check "a second pull through the agent" sh -c "'$SYNCBIT' pull '$URL' --to '$T/o1b' --socket '$T/a1.sock' --json >'$T/p1b.out'"
check "it reads nothing from the origin's body again" test "$(egress)" = "$before"
check "it reports the bytes reused" test "$(json_field "$T/p1b.out" bytes_reused)" = "$S"

# ---- syncbit rm while the agents run: through the agent, which holds the cache ----
head -c $((1 << 20)) /dev/urandom >"$T/www/rm.bin"
RM_URL=http://127.0.0.1:$NGINX_PORT/rm.bin
"$SYNCBIT" pull "$RM_URL" --socket "$T/a1.sock" --json >"$T/rm1.out" 2>/dev/null &
r1=$!
"$SYNCBIT" pull "$RM_URL" --socket "$T/a2.sock" --json >"$T/rm2.out" 2>/dev/null
wait $r1
RM_DS=$(json_field "$T/rm1.out" dataset)
check "both nodes pulled rm.bin into their caches as one dataset" \
	sh -c "test -n '$RM_DS' && test '$RM_DS' = '$(json_field "$T/rm2.out" dataset)'"
held() { "$SYNCBIT" status --socket "$T/a$1.sock" --json 2>/dev/null | tail -1 | grep -q "\"$RM_DS\""; }
not() { ! "$@"; }
listed() { "$SYNCBIT" dataset ls --scheduler "$SCHED" --token-file "$TOKEN" --json 2>/dev/null | tail -1 | grep -q "\"$RM_DS\""; }
check "n1: rm of the pulled dataset while its agent runs exits 0" \
	sh -c "'$SYNCBIT' rm '$RM_DS' --socket '$T/a1.sock' --data '$T/a1' --json >'$T/rm1b.out'"
check "n1: the answer names the dataset" test "$(json_field "$T/rm1b.out" name)" = "$RM_DS"
check "n1: and its source" test "$(json_field "$T/rm1b.out" source)" = "$RM_URL"
check "n1: the agent no longer holds it" not held 1
check "n1: the agent logged the unpin" grep -q "dataset $RM_DS: unpinned on request" "$T/a1.log"
check "n2 still holds it" held 2
check "the scheduler keeps it for n2, which still pulls it" listed
check "n2: rm --purge by name exits 0" \
	sh -c "'$SYNCBIT' rm '$RM_DS' --purge --socket '$T/a2.sock' --data '$T/a2' --json >'$T/rm2b.out'"
check "n2: its object was evicted (1 MiB)" test "$(json_field "$T/rm2b.out" evicted_bytes)" = $((1 << 20))
check "n2: the agent no longer holds it" not held 2
check "the scheduler removed it: no node pulls it any more" not listed
check "the human answer says what was forgotten" sh -c "'$SYNCBIT' pull '$RM_URL' --socket '$T/a1.sock' >/dev/null 2>&1 &&
	'$SYNCBIT' rm '$RM_DS' --socket '$T/a1.sock' | grep -q '^forgot $RM_DS ($RM_URL); its objects are unpinned$'"
expect_fail "rm of a name nothing holds: exit 1, one line" 1 "no pull of that name" \
	"$SYNCBIT" rm nothing-here --socket "$T/a1.sock"
add_dataset fixed "$T/www" --selector idx=1 >/dev/null 2>&1
wait_ready 60 fixed 1 || bad "dataset fixed ready on n1"
expect_fail "rm of a dataset assigned by its selector is refused (that is dataset rm)" 1 \
	"assigned to this node by its selector.*syncbit dataset rm fixed" \
	"$SYNCBIT" rm fixed --socket "$T/a1.sock"
check "and it stays" "$SYNCBIT" ready fixed --socket "$T/a1.sock"
"$SYNCBIT" dataset rm fixed --scheduler "$SCHED" --token-file "$TOKEN" >/dev/null 2>&1
expect_fail "no agent and the data dir free: rm opens the cache itself" 1 "no pull of that name.*cache $T/sc" \
	"$SYNCBIT" rm nothing-here --socket "$T/none.sock" --data "$T/sc"

# ---- the scheduler drops the pulled dataset once both have it ----
gone=0
for _ in $(seq 150); do
	if ! add_ls=$("$SYNCBIT" dataset ls --scheduler "$SCHED" --token-file "$TOKEN" --json 2>/dev/null | tail -1) ||
		! grep -q '"pull-' <<<"$add_ls"; then
		gone=1
		break
	fi
	sleep 0.2
done
check "the pulled dataset is removed after --pull-linger" test "$gone" = 1
check "the agent unpins it" sh -c "grep -q 'no longer assigned here; unpinning it' '$T/a1.log'"
check "the published file stays" cmp "$T/www/model.bin" "$T/o1/model.bin"

# ---- a human summary names the peers ----
check "human output without --json" sh -c "'$SYNCBIT' pull http://127.0.0.1:$NGINX_PORT/small.txt --to '$T/o4' --socket '$T/a2.sock' | grep -q '^pulled 1 file, 6 B'"

# ---- --standalone: in this process, not through the agent ----
before=$(egress)
check "--standalone pulls in-process" sh -c "'$SYNCBIT' pull '$URL' --to '$T/o3' --socket '$T/a1.sock' --standalone --data '$T/sa' --json >'$T/p3.out' 2>'$T/p3.err'"
check "--standalone: plain progress lines count files and bytes" \
	grep -Eq '^pull: 0/1 file, [0-9.]+ [KMG]?i?B / 64\.0 MiB \([0-9]+%\)' "$T/p3.err"
check "--standalone: byte-identical" cmp "$T/www/model.bin" "$T/o3/model.bin"
check "--standalone: read the whole file itself" test "$(json_field "$T/p3.out" bytes_from_source)" = "$S"
check "--standalone: nothing from peers" test "$(json_field "$T/p3.out" bytes_from_peers)" = 0
check "--standalone: its own cache was used" test -d "$T/sa/objects"

# ---- no agent: standalone, and said at info ----
check "no agent: falls back to standalone" sh -c "'$SYNCBIT' pull http://127.0.0.1:$NGINX_PORT/small.txt --to '$T/o5' --socket '$T/none.sock' --data '$T/sb' -v 2>'$T/p5.err'"
check "no agent: the file is there" cmp "$T/www/small.txt" "$T/o5/small.txt"
check "no agent: says so at info" grep -q "info: no agent answers at $T/none.sock.*pulling standalone" "$T/p5.err"

# ---- errors: the same exit codes as standalone ----
expect_fail "a 404 through the agent: exit 1, one line" 1 "404" \
	"$SYNCBIT" pull "http://127.0.0.1:$NGINX_PORT/missing.bin" --to "$T/o6" --socket "$T/a1.sock"
expect_fail "a 404 standalone: exit 1 too" 1 "404" \
	"$SYNCBIT" pull "http://127.0.0.1:$NGINX_PORT/missing.bin" --to "$T/o6" --standalone --data "$T/sa"
expect_fail "a malformed source: exit 2 before any agent" 2 "s3://" \
	"$SYNCBIT" pull "s3://" --to "$T/o6" --socket "$T/a1.sock"

# ---- a user other than root: only into a directory it owns ----
chmod 0666 "$T/a1.sock"
mkdir -p "$T/nobody" "$T/shared"
chown nobody "$T/nobody"
chmod 0777 "$T/shared"
as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$@"; }
check "a user pulls into its own directory through the agent" as_nobody "$SYNCBIT" pull "http://127.0.0.1:$NGINX_PORT/small.txt" --to "$T/nobody/out" --socket "$T/a1.sock" --json
check "the file is there" cmp "$T/www/small.txt" "$T/nobody/out/small.txt"
check "the directory the pull made belongs to the user" test "$(stat -c %U "$T/nobody/out")" = nobody
check "the agent published it (it went through the agent)" grep -q "pull http://127.0.0.1:$NGINX_PORT/small.txt: as dataset" "$T/a1.log"
expect_fail "a directory the user does not own is refused" 1 "belongs to uid 0, not to uid 65534" \
	as_nobody "$SYNCBIT" pull "http://127.0.0.1:$NGINX_PORT/small.txt" --to "$T/shared" --socket "$T/a1.sock"
check "nothing was written there" sh -c "! ls -A '$T/shared' | grep -q ."

stop_cluster
finish
