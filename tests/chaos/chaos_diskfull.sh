#!/usr/bin/env bash
# Disk full, on the data directory and on the target. Agent n1 keeps its
# data directory (cache and index) on a 48 MiB tmpfs that a filler file
# takes over at a random point of the distribution; agent n2 publishes into
# a tmpfs too small for the dataset (its size drawn between 30 and 80 % of
# it); agent n3 has room. Each full node must say so (its dataset in error,
# "no space left" naming the place), publish nothing half-done and leave no
# temp files behind, and not take blocks it cannot store again and again;
# the others must not wait for it. Once the space comes back (the filler
# removed, then the tmpfs grown a random while later) both must converge by
# themselves, without a restart, to the source's bytes.
. "$(dirname "$0")/lib.sh"

SIZE=$((24 << 20))
RATE=3000000 # origin bytes a second: >= 8 s of reads
AGENTS=(1 2 3)
BOUND=90

# The filesystems are mounted where n1's data and n2's target go.
DATA_FS=$T/a1
TARGET_FS=$T/t2
mkdir -p "$DATA_FS" "$TARGET_FS"
rnd 30 80
TARGET_PCT=$R
TARGET_KIB=$((SIZE / 1024 * TARGET_PCT / 100))
if ! mount -t tmpfs -o size=48m tmpfs "$DATA_FS" 2>"$T/mount.err"; then
	skip "disk full on the data directory and the target" "mount -t tmpfs not permitted: $(head -1 "$T/mount.err")"
	finish
	exit 0
fi
CLEANUPS+=("umount -l '$DATA_FS'")
mount -t tmpfs -o size=${TARGET_KIB}k tmpfs "$TARGET_FS" || { bad "a tmpfs for the target"; finish; exit 1; }
CLEANUPS+=("umount -l '$TARGET_FS'")

mkdir -p "$T/www"
head -c $SIZE /dev/urandom >"$T/www/d.bin"
expect_tree "$T/d.json" "$T/www" d.bin
http_origin "$T/www" || { bad "the HTTP origin starts"; finish; exit 1; }
start_scheduler || { bad "scheduler starts"; finish; exit 1; }
for n in "${AGENTS[@]}"; do start_agent "$n" || bad "agent n$n starts"; done
inject "n2's target is a tmpfs of $TARGET_KIB KiB ($TARGET_PCT % of the dataset)"
start_watcher "$T/d.json" "$T/t1/d" "$T/t2/d" "$T/t3/d"

# received N: bytes agent N received from peers so far.
received() {
	"$SYNCBIT" status --socket "$T/a$1.sock" --json | tail -1 |
		python3 -c "import json,sys; print(json.load(sys.stdin)['peers']['bytes_received'])"
}
rnd 10 60
FILL_PCT=$R
check "dataset add of a rate-limited 24 MiB HTTP file" \
	add_dataset d "http://127.0.0.1:$HTTP_PORT/m/rate=$RATE,id=d/d.bin" --block-size 512KiB
wait_progress 60 $((SIZE / 100 * FILL_PCT)) d 1 || note "n1 did not reach $FILL_PCT % in 60 s"
have=$(status_field 1 d bytes_have)
recv0=$(received 1)
full_at=$SECONDS
dd if=/dev/zero of="$DATA_FS/filler" bs=64k status=none 2>/dev/null
inject "n1's data directory fills up (a filler file takes the rest of its 48 MiB) at $have bytes held, $((have * 100 / SIZE)) %"

# error_says N PATTERN: within 60 s agent N's dataset is in error, and its
# error matches PATTERN.
error_says() {
	local deadline=$((SECONDS + 60)) e
	while [ $SECONDS -lt $deadline ]; do
		e=$(status_field "$1" d error)
		[ "$(status_field "$1" d state)" = error ] && grep -Eq "$2" <<<"$e" && return 0
		sleep 0.3
	done
	echo "n$1: state $(status_field "$1" d state), error: $e"
	return 1
}
check "n1 says its cache is full, naming it" error_says 1 "no space left on the cache $DATA_FS"
# n1's origin share is left to it while it cannot store (tests/chaos/known-failures).
check "n3 has the dataset while n1's disk is full" wait_ready 60 d 3
check "n1 is not ready while full" sh -c "! '$SYNCBIT' ready d --socket '$T/a1.sock'"
# A full node starts again every 10 s (DAEMON_RETRY_MS) and may take a
# pipeline of blocks each time; not the dataset again and again.
recv=$(($(received 1) - recv0))
secs=$((SECONDS - full_at))
check "n1 does not take blocks it cannot store over and over ($recv bytes from peers in $secs s)" \
	test "$recv" -le $((SIZE * (secs / 10 + 1)))
note "n1: $(status_field 1 d error)"

# The space comes back: n1's first, then n2's a random while after n2 has
# said its target is full.
rm -f "$DATA_FS/filler"
inject "n1's data directory has room again (the filler removed)"
check "n2 says its target is full, naming it" error_says 2 "no space left on $TARGET_FS"
check "n2 is not ready while its target is full" sh -c "! '$SYNCBIT' ready d --socket '$T/a2.sock'"
check "no temp file is left in n2's full target" \
	sh -c "test -z \"\$(find '$TARGET_FS' -name '.syncbit-tmp*')\""
note "n2: $(status_field 2 d error)"
rnd 0 40
sleep "$((R / 10)).$((R % 10))"
mount -o remount,size=64m "$TARGET_FS"
inject "n2's target grows to 64 MiB"
check "n1 and n2 converge by themselves within ${BOUND}s" wait_ready $BOUND d 1 2 ||
	for n in 1 2; do echo "       n$n: $(status_field "$n" d state): $(status_field "$n" d error)"; done
stop_watcher
same_trees "$T/d.json" d "${AGENTS[@]}"
check "no temp file is left in n2's target" sh -c "test -z \"\$(find '$TARGET_FS' -name '.syncbit-tmp*')\""
check "n1 did not restart (one start line in its log)" test "$(grep -c ' daemon: node n1,' "$T/a1.log")" = 1

stop_cluster
verify_all d "${AGENTS[@]}"
chaos_finish
