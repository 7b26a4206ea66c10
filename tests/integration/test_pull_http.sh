#!/usr/bin/env bash
# syncbit pull of http:// files from a real nginx and from the
# fault-injecting server (tests/fixtures/faulty_http.py): reuse, change
# detection, retries, resume, and kill -9 in the middle of a pull.
. "$(dirname "$0")/lib.sh"

W=$T/www DATA=$T/data
mkdir -p "$W"
head -c $((100 * 1024 * 1024 + 3)) /dev/urandom >"$W/model.bin"
head -c $((3 * 1024 * 1024)) /dev/urandom >"$W/small.bin"
: >"$W/empty.bin"
start_nginx "$W" || { bad "nginx starts"; finish; exit 1; }
U=http://127.0.0.1:$NGINX_PORT

pull() { "$SYNCBIT" pull "$@" --data "$DATA" --json; }

check "pull a 100 MiB file from nginx" pull "$U/model.bin" --to "$T/d1"
check "content matches" cmp "$W/model.bin" "$T/d1/model.bin"
pull "$U/model.bin" --to "$T/d1" >"$T/p2"
check "second pull fetches 0 bytes" test "$(json_field "$T/p2" bytes_from_source)" -eq 0 -a "$(json_field "$T/p2" bytes_read)" -eq 0
touch -d '2021-05-05' "$W/model.bin"   # nginx's ETag and Last-Modified change
pull "$U/model.bin" --to "$T/d1" >"$T/p3"
check "a changed ETag makes the file fetched again" test "$(json_field "$T/p3" bytes_read)" -eq $((100 * 1024 * 1024 + 3))
check "unchanged content is recognised block by block" test "$(json_field "$T/p3" bytes_from_source)" -eq 0
check "Last-Modified becomes the file's mtime" test "$(stat -c %Y "$T/d1/model.bin")" = "$(stat -c %Y "$W/model.bin")"
check "empty file over HTTP" bash -c "$(printf %q "$SYNCBIT") pull '$U/empty.bin' --to '$T/d2' --data '$DATA' && test -f '$T/d2/empty.bin' -a ! -s '$T/d2/empty.bin'"
expect_fail "HTTP 404 is one clear line" 1 "404" "$SYNCBIT" pull "$U/missing.bin" --to "$T/d3" --data "$DATA"
check "nothing published after a 404" test ! -e "$T/d3/missing.bin"
chmod 000 "$W/small.bin"
expect_fail "HTTP 403 is one clear line" 1 "403" "$SYNCBIT" pull "$U/small.bin" --to "$T/d3" --data "$DATA"
chmod 644 "$W/small.bin"
expect_fail "unreachable host fails after retries" 1 "127.0.0.1:1" "$SYNCBIT" pull "http://127.0.0.1:1/x.bin" --to "$T/d3" --data "$DATA" --retries 1

# Fault injection.
python3 "$FIXTURES/faulty_http.py" --dir "$W" >"$T/fport" 2>"$T/ferr" &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$T/fport" ] && break; sleep 0.1; done
F=http://127.0.0.1:$(head -1 "$T/fport")
stats() { curl -s "$F/__stats?id=$1"; }

check "5xx answers are retried until the pull succeeds" pull "$F/m/id=f5,fail=3,code=503/small.bin" --to "$T/f1"
check "content after retries" cmp "$W/small.bin" "$T/f1/small.bin"
pull "$F/m/id=rst,reset=300000,times=2/small.bin" --to "$T/f2" --block-size 4MiB --jobs 1 >"$T/pr" 2>&1
check "a reset mid-body is resumed" cmp "$W/small.bin" "$T/f2/small.bin"
check "resume asks only for the missing bytes" python3 - "$(stats rst)" <<'PY'
import json, sys
reqs = [r for r in json.loads(sys.argv[1])["requests"] if r["method"] == "GET"]
ranges = [r["range"] for r in reqs]
assert any(x and x.startswith("bytes=300000-") for x in ranges), ranges
PY
check "a stalled transfer is retried" pull "$F/m/id=st,stall=30,after=1000,times=1/small.bin" --to "$T/f3" --stall-timeout 2
check "content after a stall" cmp "$W/small.bin" "$T/f3/small.bin"
check "429 with Retry-After is honoured" pull "$F/m/id=th,r429=1,ra=1/small.bin" --to "$T/f4"
check "the ETag changing mid-pull fails clearly" bash -c "! $(printf %q "$SYNCBIT") pull '$F/m/id=ec,etag_change=1/model.bin' --to '$T/f5' --data '$DATA' --block-size 1MiB 2>'$T/ec.err' && grep -q 'changed' '$T/ec.err'"
check "nothing published after a mid-pull change" test ! -e "$T/f5/model.bin"

# A body that never ends, without a length or ranges: pull gives up, at
# full speed past --max-file-size, as a trickle (which never stalls) after
# --max-unsized-seconds; one line, nothing published.
t0=$SECONDS
expect_fail "an endless body stops at --max-file-size" 1 \
	"body goes on past 64.0 MiB, the limit per file \(--max-file-size\)" \
	timeout 60 "$SYNCBIT" pull "$F/m/id=endless1,endless=1/small.bin" --to "$T/f6" --data "$DATA" \
	--max-file-size 64MiB
expect_fail "an endless trickle stops after --max-unsized-seconds" 1 \
	"the body has no length and has not ended after 3 s \(--max-unsized-seconds\)" \
	timeout 60 "$SYNCBIT" pull "$F/m/id=endless2,endless=1,rate=20000/small.bin" --to "$T/f6" \
	--data "$DATA" --max-unsized-seconds 3 --stall-timeout 2
check "both within seconds ($((SECONDS - t0)) s)" test $((SECONDS - t0)) -lt 30
check "nothing published from an endless body" test ! -e "$T/f6/small.bin"

# kill -9 in the middle of a slow pull, then resume: verified blocks are
# reused, and the target never shows a partial file.
head -c $((24 * 1024 * 1024)) /dev/urandom >"$W/slow.bin"
D9=$T/data9 SLOW="$F/m/id=slow,stall=1,after=100000,times=14/slow.bin"
"$SYNCBIT" pull "$SLOW" --to "$T/k" --data "$D9" --block-size 256KiB --jobs 2 --json >/dev/null 2>&1 &
kp=$!
sleep 5
kill -9 $kp; wait $kp 2>/dev/null
check "no partial file in the target after kill -9" test ! -e "$T/k/slow.bin"
"$SYNCBIT" pull "$SLOW" --to "$T/k" --data "$D9" --block-size 256KiB --json >"$T/p9" 2>&1
check "resume after kill -9 completes" cmp "$W/slow.bin" "$T/k/slow.bin"
check "resume re-uses the blocks made durable before the kill" test "$(json_field "$T/p9" bytes_reused)" -gt 0
check "resumed pull fetched less than the whole file" test "$(json_field "$T/p9" bytes_read)" -lt $((24 * 1024 * 1024))

finish
