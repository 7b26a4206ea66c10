#!/usr/bin/env bash
# Crashes at random points: a real scheduler and three agents distribute a
# 40 MiB file from a rate-limited HTTP origin and a tree of small files;
# five times, at a random point of the distribution (a share of the bytes
# the agents hold together), the scheduler, an agent, or both are killed
# with -9, left down a random while, and started again on the same data
# directories. Every node must end with the source's bytes, `syncbit
# verify` must pass, and no published file may ever be seen incomplete.
. "$(dirname "$0")/lib.sh"

SIZE=$((40 << 20))
RATE=2500000 # origin bytes a second, all readers together: >= 16 s of reads
AGENTS=(1 2 3)
KILLS=5
BOUND=90 # seconds every node has to be ready after the last restart

mkdir -p "$T/www" "$T/tree/sub/deeper"
head -c $SIZE /dev/urandom >"$T/www/model.bin"
for i in $(seq 40); do head -c $((i * 3001)) /dev/urandom >"$T/tree/sub/f$i.bin"; done
head -c $((3 << 20)) /dev/urandom >"$T/tree/sub/deeper/mid.bin"
: >"$T/tree/empty"
expect_tree "$T/model.json" "$T/www" model.bin
expect_tree "$T/tree.json" "$T/tree"
http_origin "$T/www" || { bad "the HTTP origin starts"; finish; exit 1; }

start_scheduler || { bad "scheduler starts"; finish; exit 1; }
for n in "${AGENTS[@]}"; do start_agent "$n" || bad "agent n$n starts"; done
dirs=()
for n in "${AGENTS[@]}"; do dirs+=("$T/t$n/model"); done
start_watcher "$T/model.json" "${dirs[@]}"
tdirs=()
for n in "${AGENTS[@]}"; do tdirs+=("$T/t$n/tree"); done
# A second watcher for the tree: trees.py watches one source at a time.
python3 "$CHAOS/trees.py" watch "$T/tree.json" "$T/watch-tree.out" "${tdirs[@]}" &
TREE_WATCH=$!
PIDS+=("$TREE_WATCH")

check "dataset add of a rate-limited 40 MiB HTTP file" \
	add_dataset model "http://127.0.0.1:$HTTP_PORT/m/rate=$RATE,id=model/model.bin" --block-size 512KiB

# The points: KILLS shares of the bytes all agents will hold, rising, drawn
# between 5 % and 75 %; at each a victim and a time down (0 to 1.5 s).
TOTAL=$((SIZE * ${#AGENTS[@]}))
points=()
for _ in $(seq $KILLS); do rnd 5 75; points+=("$R"); done
mapfile -t points < <(printf '%s\n' "${points[@]}" | sort -n)
MID=0
for i in "${!points[@]}"; do
	pct=${points[$i]}
	pick scheduler agent agent both
	victim=$R
	rnd 1 3
	agent=$R
	rnd 0 15
	down=$R # tenths of a second
	if ! wait_progress 60 $((TOTAL / 100 * pct)) model "${AGENTS[@]}"; then
		note "the agents did not reach $pct % within 60 s (they hold $(progress model "${AGENTS[@]}") bytes)"
	fi
	held=$(progress model "${AGENTS[@]}")
	all_ready model "${AGENTS[@]}" || MID=$((MID + 1))
	case $victim in
	scheduler)
		inject "kill -9 the scheduler at $((held * 100 / TOTAL)) % held, down $((down / 10)).$((down % 10)) s"
		kill -9 "$SCHED_PID"; wait "$SCHED_PID" 2>/dev/null ;;
	agent)
		inject "kill -9 agent n$agent at $((held * 100 / TOTAL)) % held, down $((down / 10)).$((down % 10)) s"
		kill -9 "${AGENT_PID[$agent]}"; wait "${AGENT_PID[$agent]}" 2>/dev/null ;;
	both)
		inject "kill -9 the scheduler and agent n$agent at $((held * 100 / TOTAL)) % held, down $((down / 10)).$((down % 10)) s"
		kill -9 "$SCHED_PID" "${AGENT_PID[$agent]}"
		wait "$SCHED_PID" "${AGENT_PID[$agent]}" 2>/dev/null ;;
	esac
	sleep "$((down / 10)).$((down % 10))"
	case $victim in
	scheduler | both) start_scheduler || bad "the scheduler starts again" ;;
	esac
	case $victim in
	agent | both) start_agent "$agent" || bad "agent n$agent starts again" ;;
	esac
	# The tree comes after the first crash: the next ones hit its listing
	# and its first blocks too.
	[ "$i" -eq 0 ] && check "dataset add of a tree of 42 files" add_dataset tree "$T/tree" --block-size 256KiB
done
# The agents share what they hold at once when a crashed one is back, so a
# last point may come when the dataset is already everywhere: that kill
# still tests a restart, but at least all the others must fall mid-way.
check "the kills landed before the dataset was everywhere ($MID of $KILLS, at least $((KILLS - 1)))" \
	test "$MID" -ge $((KILLS - 1))

t0=$SECONDS
check "every node has model within ${BOUND}s of the last restart" wait_ready $BOUND model "${AGENTS[@]}" ||
	for n in "${AGENTS[@]}"; do echo "       n$n holds $(status_field "$n" model bytes_have 2>/dev/null) of $SIZE bytes"; done
check "every node has tree" wait_ready 30 tree "${AGENTS[@]}"
note "ready $((SECONDS - t0)) s after the last restart"
stop_watcher
kill -TERM "$TREE_WATCH"; wait "$TREE_WATCH" 2>/dev/null
check "tree: nothing was ever published half-done or wrong ($(grep '^rounds' "$T/watch-tree.out"))" \
	sh -c "! grep -q VIOLATION '$T/watch-tree.out'" || grep VIOLATION "$T/watch-tree.out" | head -5
same_trees "$T/model.json" model "${AGENTS[@]}"
same_trees "$T/tree.json" tree "${AGENTS[@]}"

# Every byte the origin sent for model, aborted reads included: a crash may
# cost the blocks in flight, not a second copy.
origin=$(curl -sf "http://127.0.0.1:$HTTP_PORT/__stats?id=model" | python3 -c '
import json, sys
print(sum(r["sent"] for r in json.load(sys.stdin)["requests"] if r["method"] == "GET"))')
note "the origin sent $origin bytes for a $SIZE-byte file"
check "the origin is not read again wholesale (<= 1.5x)" test "$origin" -le $((SIZE * 3 / 2))

stop_cluster
verify_all model "${AGENTS[@]}"
verify_all tree "${AGENTS[@]}"
chaos_finish
