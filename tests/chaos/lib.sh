# Shared by the chaos scenarios (tests/chaos/chaos_*.sh, docs/CHAOS.md):
# the integration helpers (temp dir, processes and cleanups on exit,
# check/bad/finish, a loopback cluster), plus a seed for every random choice,
# a log of what was injected and when, a watcher that fails the scenario if
# a published file is ever seen incomplete or wrong, and the convergence
# checks every scenario ends with.
. "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"
. "$(dirname "${BASH_SOURCE[0]}")/../integration/cluster.sh"
CHAOS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SCENARIO=$(basename "$0" .sh)

# The seed: CHAOS_SEED replays a run; otherwise one is drawn and printed.
# Every random choice of a scenario comes from bash's RANDOM seeded with
# it, drawn in the scenario's own shell (rnd sets R, never in a subshell),
# so the same seed makes the same choices. What a choice waits for is a
# point of progress (bytes held, bytes received), not a time: the same seed
# injects at the same point of a distribution on a slow machine or a fast
# one.
if [ -n "${CHAOS_SEED:-}" ]; then
	case "$CHAOS_SEED" in *[!0-9]* | '') echo "CHAOS_SEED: not a number: $CHAOS_SEED" >&2; exit 2 ;; esac
	SEED=$CHAOS_SEED
else
	SEED=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
fi
SEED=$((SEED % 2147483647))
RANDOM=$SEED
echo "  seed $SEED (replay: CHAOS_SEED=$SEED make chaos ONLY=$SCENARIO)"

# Known failures: checks that fail because of a Syncbit bug not fixed yet,
# listed in tests/chaos/known-failures as "SCENARIO: DESCRIPTION # the
# bug". Such a check still runs and its failure is printed as "KNOWN FAIL"
# with the bug, every time; it is counted apart (KNOWN) instead of failing
# the run. A listed check that passes says so. Remove the line once the bug
# is fixed: then its failure fails the run again.
KNOWN=0
declare -A KNOWN_WHY=()
while IFS= read -r line; do
	case "$line" in '#'* | '') continue ;; esac
	d=${line%%#*}
	d=${d%"${d##*[![:space:]]}"}
	why=${line#*#}
	[ "$why" = "$line" ] && why=
	KNOWN_WHY[$d]=${why# }
done <"$CHAOS/known-failures"
bad() {
	if [ -n "${KNOWN_WHY["$SCENARIO: $1"]+x}" ]; then
		KNOWN=$((KNOWN + 1))
		echo "  KNOWN FAIL $1"
		echo "       known bug: ${KNOWN_WHY["$SCENARIO: $1"]}"
		[ -n "${2:-}" ] && echo "       $2"
		return 1
	fi
	FAIL=$((FAIL + 1)); echo "  FAIL $1"; [ -n "${2:-}" ] && echo "       $2"; return 1
}
ok() {
	PASS=$((PASS + 1)); echo "  ok   $1"
	[ -n "${KNOWN_WHY["$SCENARIO: $1"]+x}" ] &&
		echo "       (listed in tests/chaos/known-failures, passed this time)"
	return 0
}

# rnd LO HI: R = a number in [LO, HI], from the seed.
rnd() { R=$(($1 + RANDOM % ($2 - $1 + 1))); }
# pick WORD...: R = one of the words, from the seed.
pick() { local a=("$@"); R=${a[$((RANDOM % ${#a[@]}))]}; }

T0=${EPOCHREALTIME/./}
elapsed() { local now=${EPOCHREALTIME/./}; printf '%d.%d' $(((now - T0) / 1000000)) $(((now - T0) / 100000 % 10)); }
INJECTED=0
# inject WHAT: print what is injected now, with the time since the start.
inject() {
	INJECTED=$((INJECTED + 1))
	echo "  inject t+$(elapsed)s: $*"
	echo "t+$(elapsed)s $*" >>"$T/injected"
}
# note WHAT: the same for what the scenario saw (not an injection).
note() { echo "  note   t+$(elapsed)s: $*"; }

# expect_tree OUT ROOT [FILE...]: the sizes and sha256 of ROOT's files (or
# of the FILEs named, relative to ROOT) as the published tree must hold them.
expect_tree() { local out=$1; shift; python3 "$CHAOS/trees.py" expect "$@" >"$out"; }

# start_watcher EXPECT DIR...: from now on, every published file seen in a
# DIR (a dataset's directory in a node's target) must be whole and the
# source's; see trees.py. stop_watcher turns what it saw into a check.
WATCH_PID=
start_watcher() {
	local exp=$1; shift
	: >"$T/watch.out"
	python3 "$CHAOS/trees.py" watch "$exp" "$T/watch.out" "$@" &
	WATCH_PID=$!
	PIDS+=("$WATCH_PID")
}
stop_watcher() {
	kill -TERM "$WATCH_PID" 2>/dev/null
	for _ in $(seq 100); do grep -q '^rounds ' "$T/watch.out" && break; sleep 0.1; done
	wait "$WATCH_PID" 2>/dev/null
	local summary; summary=$(grep '^rounds ' "$T/watch.out")
	check "the watcher ran throughout ($summary)" sh -c "echo '$summary' | awk '\$2 >= 10 { ok = 1 } END { exit !ok }'"
	if grep -q '^VIOLATION' "$T/watch.out"; then
		bad "nothing was ever published half-done or wrong" "$(grep '^VIOLATION' "$T/watch.out" | head -5 | tr '\n' ' ')"
	else
		ok "nothing was ever published half-done or wrong"
	fi
}

# same_trees EXPECT DATASET N...: every agent N published DATASET exactly
# as the source holds it (the same files, sizes and sha256).
same_trees() {
	local exp=$1 ds=$2 n; shift 2
	for n in "$@"; do
		check "n$n: $ds is the source's, file for file (sha256)" python3 "$CHAOS/trees.py" check "$exp" "$T/t$n/$ds"
	done
}

# verify_all DATASET N...: after stop_cluster, `syncbit verify` re-hashes
# each node's published DATASET against its manifest in the node's cache.
verify_all() {
	local ds=$1 n; shift
	for n in "$@"; do
		check "n$n: syncbit verify $ds" "$SYNCBIT" verify "$ds" --data "$T/a$n"
	done
}

# progress DATASET N...: bytes of DATASET the agents N hold together (an
# agent that does not answer counts 0).
progress() {
	local ds=$1 n t=0 h; shift
	for n in "$@"; do
		h=$(status_field "$n" "$ds" bytes_have 2>/dev/null)
		case "$h" in '' | none | *[!0-9]*) h=0 ;; esac
		t=$((t + h))
	done
	echo "$t"
}

# wait_progress SECONDS TARGET DATASET N...: wait until the agents N hold
# TARGET bytes of DATASET together; 1 after SECONDS.
wait_progress() {
	local secs=$1 target=$2 ds=$3 deadline; shift 3
	deadline=$((SECONDS + secs))
	while [ "$(progress "$ds" "$@")" -lt "$target" ]; do
		[ $SECONDS -ge $deadline ] && return 1
		sleep 0.2
	done
}

# all_ready DATASET N...: every agent N has DATASET ready now.
all_ready() {
	local ds=$1 n; shift
	for n in "$@"; do "$SYNCBIT" ready "$ds" --socket "$T/a$n.sock" >/dev/null 2>&1 || return 1; done
}

# http_origin DIR: tests/fixtures/faulty_http.py serving DIR; sets HTTP_PORT.
http_origin() {
	python3 "$FIXTURES/faulty_http.py" --dir "$1" >"$T/http.port" 2>"$T/http.log" &
	PIDS+=($!)
	for _ in $(seq 100); do [ -s "$T/http.port" ] && break; sleep 0.1; done
	HTTP_PORT=$(head -1 "$T/http.port")
	[ -n "$HTTP_PORT" ]
}

# chaos_finish: the summary of what was injected, then the result line.
chaos_finish() {
	echo "  $INJECTED injections, seed $SEED"
	[ "$KNOWN" -gt 0 ] && echo "$SCENARIO: $KNOWN known failures"
	finish
}
