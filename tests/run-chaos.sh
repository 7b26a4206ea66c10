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
. "$(dirname "$0")/runner-lib.sh"
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

limit=420
run_parallel "$jobs"
[ "$known" -gt 0 ] && echo "chaos: $known known failures (tests/chaos/known-failures), seed $CHAOS_SEED"
echo "chaos: $passed passed, $failed failed, $skipped skipped"
exit $status
