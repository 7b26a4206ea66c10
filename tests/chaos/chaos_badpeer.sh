#!/usr/bin/env bash
# A peer that sends wrong bytes: one of three agents runs with
# tests/chaos/wrong_bytes.c preloaded, so the block payloads it sends (by
# sendfile, on links without encryption) have a byte flipped, in every call
# or one in two or three (drawn from the seed), while its own disk holds
# the good blocks. The liar is drawn from the seed; so is the moment a
# fourth agent joins, which then gets the dataset from peers alone, the
# liar among them. The honest nodes must notice every bad block (counted,
# fetched elsewhere), never publish one, and end with the source's bytes;
# the liar's own copy stays good.
. "$(dirname "$0")/lib.sh"

SIZE=$((24 << 20))
RATE=3000000 # origin bytes a second: >= 8 s of reads
AGENTS=(1 2 3 4)
BOUND=90

SHIM=$T/wrong_bytes.so
if ! cc -shared -fPIC -o "$SHIM" "$CHAOS/wrong_bytes.c" 2>"$T/cc.err"; then
	bad "the wrong-bytes shim builds" "$(head -3 "$T/cc.err" | tr '\n' ' ')"
	finish
	exit 1
fi
PRE=$SHIM
asan=$(ldd "$SYNCBIT" 2>/dev/null | awk '/libasan/ { print $3 }')
[ -n "$asan" ] && PRE="$asan:$SHIM" # the sanitizer build wants its runtime first

pick 1 2 3
LIAR=$R
pick 1 1 2 3
EVERY=$R
rnd 0 65535
AT=$R
rnd 10 80
JOIN_PCT=$R
LIAR_BIN=$T/liar-syncbit
cat >"$LIAR_BIN" <<EOF
#!/bin/sh
export LD_PRELOAD="$PRE" CHAOS_WRONG_EVERY=$EVERY CHAOS_WRONG_AT=$AT CHAOS_WRONG_LOG="$T/wrong.log"
exec "$SYNCBIT" "\$@"
EOF
chmod +x "$LIAR_BIN"

mkdir -p "$T/www"
head -c $SIZE /dev/urandom >"$T/www/w.bin"
expect_tree "$T/w.json" "$T/www" w.bin
http_origin "$T/www" || { bad "the HTTP origin starts"; finish; exit 1; }
start_scheduler || { bad "scheduler starts"; finish; exit 1; }
inject "agent n$LIAR sends wrong bytes: one flipped byte in $([ "$EVERY" = 1 ] && echo "every sendfile call" || echo "one sendfile call in $EVERY") (at offset $AT modulo its length); its disk is good"
for n in 1 2 3; do
	if [ "$n" = "$LIAR" ]; then
		SYNCBIT=$LIAR_BIN start_agent "$n" --no-encrypt || bad "agent n$n (the liar) starts"
	else
		start_agent "$n" --no-encrypt || bad "agent n$n starts"
	fi
done
dirs=()
for n in "${AGENTS[@]}"; do dirs+=("$T/t$n/w"); done
start_watcher "$T/w.json" "${dirs[@]}"

check "dataset add of a rate-limited 24 MiB HTTP file" \
	add_dataset w "http://127.0.0.1:$HTTP_PORT/m/rate=$RATE,id=w/w.bin" --block-size 512KiB
wait_progress 60 $((SIZE * 3 / 100 * JOIN_PCT)) w 1 2 3 || note "the agents did not reach $JOIN_PCT % in 60 s"
inject "agent n4 joins at $(($(progress w 1 2 3) * 100 / (SIZE * 3))) % held: its blocks come from peers, the liar among them"
start_agent 4 --no-encrypt || bad "agent n4 starts"

check "every node has w within ${BOUND}s" wait_ready $BOUND w "${AGENTS[@]}" ||
	for n in "${AGENTS[@]}"; do echo "       n$n holds $(status_field "$n" w bytes_have 2>/dev/null) of $SIZE bytes"; done
stop_watcher
same_trees "$T/w.json" w "${AGENTS[@]}"

wrong=$(grep -c . "$T/wrong.log" 2>/dev/null)
note "the liar sent ${wrong:-0} corrupted payloads"
check "the liar did send wrong bytes" test "${wrong:-0}" -gt 0
dropped=0
for n in "${AGENTS[@]}"; do
	[ "$n" = "$LIAR" ] && continue
	d=$("$SYNCBIT" status --socket "$T/a$n.sock" --json 2>/dev/null | tail -1 |
		python3 -c "import json,sys; print(json.load(sys.stdin)['peers']['dropped_bad_data'])" 2>/dev/null)
	note "n$n dropped ${d:-?} bad blocks from peers"
	dropped=$((dropped + ${d:-0}))
done
check "the honest nodes caught the wrong bytes ($dropped blocks dropped)" test "$dropped" -gt 0
check "the honest nodes name the liar as the peer that sent them" \
	sh -c "grep -h 'does not match its hash; asking elsewhere' '$T'/a[1-4].log | grep -q 'from n$LIAR'"

stop_cluster
verify_all w "${AGENTS[@]}"
chaos_finish
