#!/usr/bin/env bash
# Runs every tests/chaos/chaos_*.sh (docs/CHAOS.md), each bounded in time,
# and sums their results into one closing line "chaos: N passed, N failed,
# N skipped". A skip fails the run unless SYNCBIT_EXPECTED_SKIPS names it
# (tests/expected-skips.sh); checks listed in tests/chaos/known-failures
# print KNOWN FAIL and are counted on a line of their own.
#
# One seed drives every random choice of the run: CHAOS_SEED replays a run,
# otherwise one is drawn and printed first. CHAOS_JOBS scenarios (default
# 2) run at once; ONLY=SUBSTRING runs the scenarios whose name holds it.
set -u
. "$(dirname "$0")/expected-skips.sh"
cd "$(dirname "$0")/chaos"
jobs=${CHAOS_JOBS:-2}
case "$jobs" in '' | *[!0-9]* | 0) echo "CHAOS_JOBS: not a positive number: $jobs" >&2; exit 2 ;; esac
if [ -z "${CHAOS_SEED:-}" ]; then
	CHAOS_SEED=$(($(od -An -N4 -tu4 /dev/urandom | tr -d ' ') % 2147483647))
fi
case "$CHAOS_SEED" in *[!0-9]*) echo "CHAOS_SEED: not a number: $CHAOS_SEED" >&2; exit 2 ;; esac
export CHAOS_SEED
echo "chaos: seed $CHAOS_SEED (replay: CHAOS_SEED=$CHAOS_SEED make chaos)"
out_dir=$(mktemp -d /tmp/syncbit-chaos.XXXXXX)
trap 'rm -rf "$out_dir"' EXIT
trap 'kill $(jobs -p) 2>/dev/null; exit 130' INT TERM

# The longest first, so that they do not end the run alone.
long=(chaos_diskfull chaos_clock chaos_badpeer chaos_crash chaos_netcut chaos_flood)
tests=()
for t in "${long[@]}"; do
	[ -f "$t.sh" ] && tests+=("$t.sh")
done
for t in chaos_*.sh; do
	[[ " ${tests[*]} " == *" $t "* ]] || tests+=("$t")
done
selected=()
for t in "${tests[@]}"; do
	[ -n "${ONLY:-}" ] && [[ "$t" != *"$ONLY"* ]] && continue
	selected+=("$t")
done

run_one() {
	local t=$1 start=$SECONDS rc
	timeout -k 10 420 bash "$t" >"$out_dir/$t.out" 2>&1
	rc=$?
	echo "$((SECONDS - start))" >"$out_dir/$t.sec"
	echo "$rc" >"$out_dir/$t.rc" # written last: the scenario is done
}

passed=0; failed=0; skipped=0; known=0; status=0
declare -A reported=()
report() {
	local t=$1 out rc line p f s d k
	out=$(cat "$out_dir/$t.out")
	rc=$(cat "$out_dir/$t.rc")
	echo "== $t ($(cat "$out_dir/$t.sec") s)"
	printf '%s\n' "$out"
	line=$(printf '%s\n' "$out" | grep -E '^[a-z0-9_]+: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' | tail -1)
	p=$(sed -n 's/.*: \([0-9]*\) passed.*/\1/p' <<<"$line")
	f=$(sed -n 's/.* \([0-9]*\) failed,.*/\1/p' <<<"$line")
	s=$(sed -n 's/.* \([0-9]*\) skipped$/\1/p' <<<"$line")
	k=$(printf '%s\n' "$out" | sed -n 's/^[a-z0-9_]*: \([0-9]*\) known failures$/\1/p' | tail -1)
	passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${s:-0}))
	known=$((known + ${k:-0}))
	while IFS= read -r d; do
		[ -n "$d" ] || continue
		skip_expected "${t%.sh}" "$d" && continue
		status=1
		echo "   unexpected skip: ${t%.sh}: $d"
	done < <(printf '%s\n' "$out" | sed -n 's/^  SKIP \(.*\)$/\1/p')
	if [ "$rc" -ne 0 ]; then
		status=1
		[ -z "$line" ] && { failed=$((failed + 1)); echo "   $t exited $rc without a result line"; }
	fi
	reported[$t]=1
}
report_done() {
	local t
	for t in "${selected[@]}"; do
		[ -z "${reported[$t]:-}" ] && [ -f "$out_dir/$t.rc" ] && report "$t"
	done
}

for t in "${selected[@]}"; do
	while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
		wait -n
		report_done
	done
	run_one "$t" &
done
wait
report_done
[ "$known" -gt 0 ] && echo "chaos: $known known failures (tests/chaos/known-failures), seed $CHAOS_SEED"
echo "chaos: $passed passed, $failed failed, $skipped skipped"
exit $status
