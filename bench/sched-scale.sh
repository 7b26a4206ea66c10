#!/usr/bin/env bash
# The scheduler at scale: a real `syncbit scheduler` against N simulated
# agents in one process (build/bench/sched-scale, the real handshake, Register,
# heartbeats with bitfields, Ingested, joins and leaves), for each N in NODES.
#
#   bench/sched-scale.sh [N ...]          default NODES="1000 2000 5000 10000"
#
# Per N it prints one line:
#   N=1000 datasets=100x1000 join=… s cpu=… s/s rss=… MiB assign=… ms dead=… ms (…)
# - join: from the generator's start until every node holds every dataset;
# - cpu, rss: the scheduler in steady state (every dataset complete, heartbeats
#   only), CPU seconds per second over STEADY_S from /proc/PID/stat, VmRSS and
#   VmHWM from /proc/PID/status;
# - assign: `syncbit dataset add` of a new dataset for every node until the last
#   node got its Assign;
# - dead: FREEZE nodes holding unread blocks of a new dataset's origin plan stop
#   sending (no FIN; sockets stay open); time until every one of those blocks is
#   in a live node's origin share, from the freeze and from their last heartbeat.
# Variables: NODES, DATASETS (100), BLOCKS (1000), BLOCK_SIZE (4KiB), HEARTBEAT_MS
# (10000), STEADY_S (60), FREEZE (10), CHURN_PER_MIN (0), ORIGIN_RATE (8 blocks/s
# per node), PEER_RATE (200 blocks/s per node), BIND_ADDRS (8), JOIN_TIMEOUT_S
# (900), ENCRYPT (1), PERF (empty; a directory: `perf record -g` of the scheduler
# in steady state and from the freeze to the re-plan, saved there per N as
# sched-N.data and dead-N.data), TRACE (empty; a directory: once a second from the
# scheduler's start, "ms rss_kib assign_queued assign_stalled_bytes waiting_nodes"
# into trace-N there), KEEP (keep the temp dir).
# The line also gives the peak of the scheduler's queue of assignments
# (syncbit_assign_queued_peak_bytes, bounded by --assign-queue).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SYNCBIT=${SYNCBIT:-$ROOT/bin/syncbit}
GEN=${GEN:-$ROOT/build/bench/sched-scale}
if [ $# -gt 0 ]; then NODES="$*"; fi
NODES=${NODES:-1000 2000 5000 10000}
DATASETS=${DATASETS:-100}
BLOCKS=${BLOCKS:-1000}
BLOCK_SIZE=${BLOCK_SIZE:-4096}
HEARTBEAT_MS=${HEARTBEAT_MS:-10000}
STEADY_S=${STEADY_S:-60}
FREEZE=${FREEZE:-10}
CHURN_PER_MIN=${CHURN_PER_MIN:-0}
ORIGIN_RATE=${ORIGIN_RATE:-8}
PEER_RATE=${PEER_RATE:-200}
BIND_ADDRS=${BIND_ADDRS:-8}
JOIN_TIMEOUT_S=${JOIN_TIMEOUT_S:-900}
ENCRYPT=${ENCRYPT:-1}
PERF=${PERF:-}
TRACE=${TRACE:-}

for f in "$SYNCBIT" "$GEN"; do
	[ -x "$f" ] || { echo "sched-scale: $f missing; run 'make sched-scale'" >&2; exit 1; }
done

T=$(mktemp -d "${TMPDIR:-/tmp}/sched-scale.XXXXXX")
SCHED_PID=
GEN_PID=
PERF_PID=
TRACE_PID=
cleanup() {
	local p
	[ -n "$PERF_PID" ] && kill -INT "$PERF_PID" 2>/dev/null
	for p in $TRACE_PID $GEN_PID $SCHED_PID; do kill "$p" 2>/dev/null || true; done
	for _ in $(seq 50); do
		p=
		for q in $PERF_PID $GEN_PID $SCHED_PID; do kill -0 "$q" 2>/dev/null && p=1; done
		[ -z "$p" ] && break
		sleep 0.1
	done
	for q in $PERF_PID $GEN_PID $SCHED_PID; do kill -9 "$q" 2>/dev/null || true; done
	GEN_PID= SCHED_PID= PERF_PID= TRACE_PID=
	return 0
}
trap 'cleanup; release_ports; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
trap 'exit 130' INT TERM

# One connection per node on each side: raise the descriptor limits (root
# may raise the hard one).
want=$(( $(echo "$NODES" | tr ' ' '\n' | sort -n | tail -1) * 2 + 4096 ))
ulimit -Hn "$want" 2>/dev/null || true
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# free_port, release_ports
. "$(dirname "${BASH_SOURCE[0]}")/../tests/free-port.sh"
now_ms() { date +%s%3N; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mib() { awk -v k="$2:" '$1 == k {printf "%.0f", $2 / 1024}' "/proc/$1/status"; }
clk=$(getconf CLK_TCK)

# Sources: DATASETS + 2 local trees of one sparse file of BLOCKS blocks each,
# listed once by the scheduler (no byte is read).
mkdir -p "$T/src"
for i in $(seq 0 $((DATASETS + 1))); do
	mkdir -p "$T/src/d$i"
	truncate -s $((BLOCKS * BLOCK_SIZE)) "$T/src/d$i/data.bin"
done

# Send a command to the generator; read its lines until one starts with $1
# (within $2 seconds); the line goes to $REPLY_LINE.
gen() { echo "$*" >&"${GEN_IN}"; }
expect() {
	local want=$1 limit=$2 deadline=$(( $(date +%s) + $2 ))
	while :; do
		local left=$(( deadline - $(date +%s) ))
		[ "$left" -gt 0 ] || { echo "sched-scale: no '$want' within ${limit}s" >&2; return 1; }
		if IFS= read -r -t "$left" REPLY_LINE <&"${GEN_OUT}"; then
			case "$REPLY_LINE" in
			"$want"*) return 0 ;;
			error*) echo "sched-scale: generator: $REPLY_LINE" >&2 ;;
			esac
		else
			echo "sched-scale: no '$want' within ${limit}s" >&2
			return 1
		fi
	done
}

admin() { "$SYNCBIT" "$@" --scheduler "127.0.0.1:$PORT" --token-file "$D/join-token"; }
# A metric's value, or empty: a scheduler too busy to answer in time (its HTTP
# server gives up on a request not read within 3 s) does not end the run.
metric() {
	local i
	for i in 1 2 3; do
		curl -sf --max-time 30 "http://127.0.0.1:$HPORT/metrics" 2>/dev/null |
			awk -v m="$1" '$1 == m {print $2; f = 1} END {exit !f}' && return 0
		sleep 1
	done
	return 0
}
# An admin change, tried up to 3 times; each failure is printed with the time it took.
admin_retry() {
	local i t0
	for i in 1 2 3; do
		t0=$(now_ms)
		admin "$@" 2>"$T/admin.err" && return 0
		echo "sched-scale: try $i of '$1 $2 $3' failed after $(( $(now_ms) - t0 )) ms: $(tail -1 "$T/admin.err")" >&2
	done
	return 1
}

run_one() {
	local n=$1
	D="$T/sched-$n"
	PORT=$(free_port)
	HPORT=$(free_port)
	local enc=()
	[ "$ENCRYPT" = 1 ] || enc=(--no-encrypt)
	"$SYNCBIT" scheduler --listen "127.0.0.1:$PORT" --http "127.0.0.1:$HPORT" --data "$D" \
		--heartbeat-ms "$HEARTBEAT_MS" --refresh 0 --log-level warn "${enc[@]}" \
		2>"$T/sched-$n.log" &
	SCHED_PID=$!
	if [ -n "$TRACE" ]; then
		mkdir -p "$TRACE"
		local ts0
		ts0=$(now_ms)
		( set +e; while kill -0 "$SCHED_PID" 2>/dev/null; do
			m=$(curl -sf "http://127.0.0.1:$HPORT/metrics" | awk '
				$1 == "syncbit_assign_queued_bytes" {q = $2}
				$1 == "syncbit_assign_stalled_bytes" {s = $2}
				$1 == "syncbit_assign_waiting_nodes" {w = $2}
				END {print q + 0, s + 0, w + 0}')
			echo "$(( $(now_ms) - ts0 )) $(awk '$1 == "VmRSS:" {print $2}' "/proc/$SCHED_PID/status" 2>/dev/null) $m"
			sleep 1
		done >"$TRACE/trace-$n" ) &
		TRACE_PID=$!
	fi
	for _ in $(seq 100); do [ -s "$D/join-token" ] && break; sleep 0.1; done
	for _ in $(seq 100); do admin status >/dev/null 2>&1 && break; sleep 0.2; done
	for i in $(seq 0 $((DATASETS - 1))); do
		admin dataset add "d$i" "$T/src/d$i" --block-size "$BLOCK_SIZE" >/dev/null
	done

	local t0 genc=() cpu0 cpu1 t1 t2
	[ "$ENCRYPT" = 1 ] || genc=(--no-encrypt)
	coproc GENP { exec "$GEN" --scheduler "127.0.0.1:$PORT" --token-file "$D/join-token" \
		--nodes "$n" --bind-addrs "$BIND_ADDRS" --origin-rate "$ORIGIN_RATE" \
		--peer-rate "$PEER_RATE" --churn-per-min "$CHURN_PER_MIN" "${genc[@]}" \
		2>"$T/gen-$n.log"; }
	GEN_PID=$GENP_PID
	exec {GEN_OUT}<&"${GENP[0]}" {GEN_IN}>&"${GENP[1]}"
	expect started 30
	t0=$(now_ms)
	cpu0=$(ticks "$SCHED_PID")
	gen "wait-registered $n"
	expect registered "$JOIN_TIMEOUT_S"
	local reg_ms=$(( ${REPLY_LINE##* } - t0 ))
	for i in $(seq 0 $((DATASETS - 1))); do
		gen "wait-complete d$i $n"
		expect "complete d$i" "$JOIN_TIMEOUT_S"
	done
	t1=$(now_ms)
	cpu1=$(ticks "$SCHED_PID")
	local join_s join_cpu
	join_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", (b-a)/1000}')
	join_cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v c="$clk" 'BEGIN{printf "%.1f", (b-a)/c}')
	echo "sched-scale: N=$n joined in $join_s s (scheduler $join_cpu cpu-s, rss" \
		"$(rss_mib "$SCHED_PID" VmRSS) MiB, peak $(rss_mib "$SCHED_PID" VmHWM) MiB)" >&2

	# Steady state: heartbeats only.
	sleep $(( HEARTBEAT_MS / 1000 + 1 ))
	if [ -n "$PERF" ]; then
		mkdir -p "$PERF"
		perf record -F 199 -g -p "$SCHED_PID" -o "$PERF/sched-$n.data" -- sleep "$STEADY_S" \
			>/dev/null 2>&1 &
		PERF_PID=$!
	fi
	cpu0=$(ticks "$SCHED_PID"); t1=$(now_ms)
	sleep "$STEADY_S"
	cpu1=$(ticks "$SCHED_PID"); t2=$(now_ms)
	if [ -n "$PERF_PID" ]; then wait "$PERF_PID" 2>/dev/null || true; PERF_PID=; fi
	local cpu rss hwm
	cpu=$(awk -v a="$cpu0" -v b="$cpu1" -v c="$clk" -v s="$t1" -v e="$t2" \
		'BEGIN{printf "%.3f", (b-a)/c/((e-s)/1000)}')
	rss=$(rss_mib "$SCHED_PID" VmRSS)
	hwm=$(rss_mib "$SCHED_PID" VmHWM)
	gen status
	expect status 30
	local gstat=$REPLY_LINE

	# A new dataset for every node: until the last Assign.
	t1=$(now_ms)
	admin_retry dataset add probe-assign "$T/src/d$DATASETS" --block-size "$BLOCK_SIZE" >/dev/null
	gen "wait-assign probe-assign $n"
	expect "assigned probe-assign" 300
	local assign_ms=$(( ${REPLY_LINE##* } - t1 ))

	# A dead node: FREEZE nodes with unread origin blocks go silent.
	gen "hold probe-dead"
	admin_retry dataset add probe-dead "$T/src/d$((DATASETS + 1))" --block-size "$BLOCK_SIZE" >/dev/null
	gen "wait-assign probe-dead $n"
	expect "assigned probe-dead" 300
	if [ -n "$PERF" ]; then
		perf record -F 199 -g -p "$SCHED_PID" -o "$PERF/dead-$n.data" >/dev/null 2>&1 &
		PERF_PID=$!
	fi
	gen "freeze $FREEZE probe-dead"
	expect frozen 30
	local frozen=$REPLY_LINE
	gen "release probe-dead"
	local dead="timeout"
	if expect "replanned probe-dead" $(( HEARTBEAT_MS * 6 / 1000 + 30 )); then
		read -r _ _ _ dead_ms dead_hb_ms <<<"$REPLY_LINE"
		dead="$dead_ms ms ($dead_hb_ms ms after their last heartbeat; heartbeat $HEARTBEAT_MS ms)"
	fi
	if [ -n "$PERF_PID" ]; then
		kill -INT "$PERF_PID" 2>/dev/null
		wait "$PERF_PID" 2>/dev/null || true
		PERF_PID=
	fi

	local qpeak
	qpeak=$(metric syncbit_assign_queued_peak_bytes | awk '{printf "%.0f", $1 / 1048576}')
	echo "N=$n datasets=${DATASETS}x$BLOCKS register=$((reg_ms / 1000)).$(( (reg_ms % 1000) / 100 )) s" \
		"join=$join_s s (scheduler $join_cpu cpu-s) cpu=$cpu s/s rss=$rss MiB (peak $hwm MiB;" \
		"assign queue peak ${qpeak:-?} MiB)" \
		"assign=$assign_ms ms dead=$dead"
	echo "   generator: $gstat; $frozen"
	gen quit
	exec {GEN_OUT}<&- {GEN_IN}>&-
	cleanup
}

echo "sched-scale: scheduler $SYNCBIT, $DATASETS datasets of $BLOCKS blocks of $BLOCK_SIZE bytes," \
	"heartbeat $HEARTBEAT_MS ms, steady window $STEADY_S s; $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for n in $NODES; do
	run_one "$n"
done
