#!/usr/bin/env bash
# Clock jumps. Syncbit times everything that decides (heartbeats, retries,
# timeouts, the scheduler's --refresh, peer pipelines) on CLOCK_MONOTONIC;
# the wall clock only stamps logs, the time a node was last seen (shown by
# the API after it disconnects), the cache's LFRU ages, HTTP dates
# (Retry-After, S3 signatures) and `sync --schedule` (cron is wall-clock
# time). Node keys and the join token carry no time. This scenario checks
# that, with real processes:
#   - the scheduler and agent n2 run under libfaketime (Debian's faketime)
#     with a wall clock that jumps at random points of a distribution: n2
#     forward by days, the scheduler back by hours, n2 back behind the
#     real time; agent n3 runs in its own time namespace (unshare --time)
#     whose CLOCK_MONOTONIC and CLOCK_BOOTTIME are days ahead of the others'.
#     Every node must get the dataset, stay connected, and then get a new
#     version of the source that the scheduler (its clock still behind)
#     finds by itself;
#   - `sync --schedule` runs once when its wall clock jumps past the
#     scheduled minute, and not again when the clock jumps back a day.
. "$(dirname "$0")/lib.sh"

SIZE=$((24 << 20))
RATE=3000000
AGENTS=(1 2 3)
BOUND=90

FT=$(dpkg -L libfaketime 2>/dev/null | grep '/libfaketimeMT\.so\.1$' | head -1)
if [ -z "$FT" ]; then
	bad "libfaketime is installed (Debian package faketime, tests/deps.sh)"
	finish
	exit 1
fi
asan=$(ldd "$SYNCBIT" 2>/dev/null | awk '/libasan/ { print $3 }')
PRE=${asan:+$asan:}$FT # the sanitizer build wants its runtime first
# faked NAME: a wrapper running syncbit with the wall clock of $T/clock-NAME
# ("+0", "+3d", "-5h": an offset from the real time that the next clock
# read picks up); CLOCK_MONOTONIC stays the real one, as a wall-clock step
# (NTP, a VM resumed, an operator) leaves it.
faked() {
	echo "+0" >"$T/clock-$1"
	cat >"$T/ft-$1" <<EOF
#!/bin/sh
export LD_PRELOAD="$PRE" FAKETIME_TIMESTAMP_FILE="$T/clock-$1" FAKETIME_NO_CACHE=1 FAKETIME_DONT_FAKE_MONOTONIC=1
exec "$SYNCBIT" "\$@"
EOF
	chmod +x "$T/ft-$1"
}
# jump NAME SPEC: set NAME's wall clock to the real time plus SPEC.
jump() { echo "$2" >"$T/clock-$1.tmp" && mv "$T/clock-$1.tmp" "$T/clock-$1"; }

rnd 1 400
MONO_DAYS=$R
cat >"$T/tns-syncbit" <<EOF
#!/bin/sh
exec unshare --time --monotonic $((MONO_DAYS * 86400)) --boottime $((MONO_DAYS * 86400)) "$SYNCBIT" "\$@"
EOF
chmod +x "$T/tns-syncbit"
faked sched
faked n2

mkdir -p "$T/www" "$T/v2"
head -c $SIZE /dev/urandom >"$T/www/c.bin"
head -c $SIZE /dev/urandom >"$T/v2/c.bin"
expect_tree "$T/c1.json" "$T/www" c.bin
expect_tree "$T/c2.json" "$T/v2" c.bin
http_origin "$T/www" || { bad "the HTTP origin starts"; finish; exit 1; }

SYNCBIT=$T/ft-sched start_scheduler --refresh 2 || { bad "scheduler starts"; finish; exit 1; }
start_agent 1 || bad "agent n1 starts"
SYNCBIT=$T/ft-n2 start_agent 2 || bad "agent n2 starts"
SYNCBIT=$T/tns-syncbit start_agent 3 || bad "agent n3 starts"
inject "agent n3 runs in a time namespace, CLOCK_MONOTONIC and CLOCK_BOOTTIME $MONO_DAYS days ahead"
up_root=$(cut -d. -f1 /proc/uptime)
up_n3=$(nsenter -t "${AGENT_PID[3]}" -T cat /proc/uptime | cut -d. -f1)
check "n3's clocks are $MONO_DAYS days ahead (uptime $up_n3 s, here $up_root s)" \
	test $((up_n3 - up_root)) -ge $((MONO_DAYS * 86400 - 60))
dirs=()
for n in "${AGENTS[@]}"; do dirs+=("$T/t$n/c"); done
start_watcher "$T/c1.json,$T/c2.json" "${dirs[@]}"

check "dataset add of a rate-limited 24 MiB HTTP file" \
	add_dataset c "http://127.0.0.1:$HTTP_PORT/m/rate=$RATE,id=c/c.bin" --block-size 512KiB
p=()
for _ in 1 2 3; do rnd 5 80; p+=("$R"); done
mapfile -t p < <(printf '%s\n' "${p[@]}" | sort -n)
rnd 1 400
fwd=$R
rnd 1 72
back=$R
rnd 1 30
n2back=$R
TOTAL=$((SIZE * 3))
at() { wait_progress 60 $((TOTAL / 100 * $1)) c "${AGENTS[@]}" || note "the agents did not reach $1 % in 60 s"; }
at "${p[0]}"
jump n2 "+${fwd}d"
inject "n2's wall clock jumps $fwd days forward at $(($(progress c "${AGENTS[@]}") * 100 / TOTAL)) % held"
at "${p[1]}"
jump sched "-${back}h"
inject "the scheduler's wall clock jumps $back hours back at $(($(progress c "${AGENTS[@]}") * 100 / TOTAL)) % held"
at "${p[2]}"
jump n2 "-${n2back}d"
inject "n2's wall clock jumps back to $n2back days behind the real time at $(($(progress c "${AGENTS[@]}") * 100 / TOTAL)) % held"

check "every node has c within ${BOUND}s" wait_ready $BOUND c "${AGENTS[@]}" ||
	for n in "${AGENTS[@]}"; do echo "       n$n holds $(status_field "$n" c bytes_have 2>/dev/null) of $SIZE bytes"; done
same_trees "$T/c1.json" c "${AGENTS[@]}"
connected() {
	"$SYNCBIT" node ls --scheduler "$SCHED" --token-file "$TOKEN" --json | tail -1 | python3 -c "
import json, sys
nodes = json.load(sys.stdin)['nodes']
up = sorted(n['name'] for n in nodes if n['connected'])
print(up)
sys.exit(0 if up == ['n1', 'n2', 'n3'] else 1)"
}
check "the scheduler sees all three nodes connected" connected

# A new version while the scheduler's clock is still hours behind: its
# refresh (a monotonic timer) finds it, every node gets it.
cp "$T/v2/c.bin" "$T/www/.c.new" && mv "$T/www/.c.new" "$T/www/c.bin"
inject "the source changes (a new c.bin) while the scheduler's clock is $back hours behind"
new_everywhere() {
	local deadline=$((SECONDS + BOUND)) n
	for n in "${AGENTS[@]}"; do
		until python3 "$CHAOS/trees.py" check "$T/c2.json" "$T/t$n/c" >/dev/null 2>&1 &&
			"$SYNCBIT" ready c --socket "$T/a$n.sock" >/dev/null 2>&1; do
			[ $SECONDS -lt $deadline ] || { echo "n$n has no new version"; return 1; }
			sleep 0.3
		done
	done
}
check "every node gets the new version within ${BOUND}s" new_everywhere
# Asked after the new version (a jump at 100 % may come after n2's last
# line about c): n2 logged the version change with its clock behind.
check "n2's log shows its clock $n2back days behind" \
	grep -q "^$(date -u -d "-$n2back days" +%Y-%m-%d).*dataset c" "$T/a2.log"
stop_watcher
same_trees "$T/c2.json" c "${AGENTS[@]}"
stop_cluster
verify_all c "${AGENTS[@]}"

# ---- sync --schedule across wall-clock jumps ----
# Daily at the minute two hours from now (local time, as cron); the clock
# jumps to 5 s before it, then back a day.
faked sync
mkdir -p "$T/syncsrc"
head -c 100000 /dev/urandom >"$T/syncsrc/s.bin"
ts=$(date -d '+2 hours' +%s)
when=$(date -d "@$ts" '+%M %H')
"$T/ft-sync" sync "$T/syncsrc" "$T/syncdst" --schedule "$when * * *" --data "$T/syncdata" \
	--log-level info >"$T/sync.log" 2>&1 &
SYNC_PID=$!
PIDS+=("$SYNC_PID")
runs() { grep -c 'sync run [0-9]*: fetching' "$T/sync.log"; }
for _ in $(seq 50); do grep -q 'next run at' "$T/sync.log" && break; sleep 0.1; done
check "sync waits for its minute ($when * * *)" sh -c "sleep 2; [ \$(grep -c 'sync run [0-9]*: fetching' '$T/sync.log') = 0 ]"
target=$((ts - ts % 60))
jump sync "+$((target - $(date +%s) - 5))s"
inject "sync's wall clock jumps to 5 s before its scheduled minute"
ran() { for _ in $(seq 200); do [ "$(runs)" -ge 1 ] && return 0; sleep 0.1; done; return 1; }
check "the scheduled sync runs after the jump" ran
check "... once" sh -c "sleep 3; [ \$(grep -c 'sync run [0-9]*: fetching' '$T/sync.log') = 1 ]"
for _ in $(seq 100); do [ -f "$T/syncdst/s.bin" ] && break; sleep 0.1; done
check "... and publishes the source" cmp "$T/syncsrc/s.bin" "$T/syncdst/s.bin"
jump sync "-1d"
inject "sync's wall clock jumps a day back"
check "no run follows the jump back" sh -c "sleep 3; [ \$(grep -c 'sync run [0-9]*: fetching' '$T/sync.log') = 1 ]"
kill -TERM "$SYNC_PID"
for _ in $(seq 50); do kill -0 "$SYNC_PID" 2>/dev/null || break; sleep 0.1; done
check "sync stops on SIGTERM" sh -c "! kill -0 $SYNC_PID 2>/dev/null"
check "no sanitizer report from sync" sh -c "! grep -qE 'AddressSanitizer|LeakSanitizer|runtime error' '$T/sync.log'"
chaos_finish
