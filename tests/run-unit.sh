#!/usr/bin/env bash
# Runs each unit-test executable (cmocka) and sums the results into one
# closing line "N passed, N failed, N skipped". A skipped test fails the
# run unless SYNCBIT_EXPECTED_SKIPS names it (tests/expected-skips.sh).
#
# Most of a unit run is waiting (servers, timers, fsync), so UNIT_JOBS
# executables (default 4) run at once, each into its own output file; the
# outputs are then read in the order given.
set -u
. "$(dirname "$0")/expected-skips.sh"
jobs=${UNIT_JOBS:-4}
case "$jobs" in '' | *[!0-9]* | 0) echo "UNIT_JOBS: not a positive number: $jobs" >&2; exit 2 ;; esac
out_dir=$(mktemp -d /tmp/syncbit-unit.XXXXXX)
trap 'rm -rf "$out_dir"' EXIT
trap 'kill $(jobs -p) 2>/dev/null; exit 130' INT TERM
i=0
for t in "$@"; do
	while [ "$(jobs -pr | wc -l)" -ge "$jobs" ]; do wait -n; done
	("$t" >"$out_dir/$i.out" 2>&1; echo $? >"$out_dir/$i.rc") &
	i=$((i + 1))
done
wait
passed=0; failed=0; skipped=0; broken=()
i=0
for t in "$@"; do
	name=$(basename "$t")
	out=$(cat "$out_dir/$i.out"); rc=$(cat "$out_dir/$i.rc" 2>/dev/null || echo 1)
	i=$((i + 1))
	printf '%s\n' "$out" | grep -E '^\[  (PASSED|FAILED|SKIPPED)  ?\]|^\[  ERROR   \]' || true
	p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
	unexpected=0
	while read -r s; do
		[ -n "$s" ] || continue
		skipped=$((skipped + 1))
		skip_expected "$name" "$s" || { unexpected=1; echo "   unexpected skip: $name: $s"; }
	done < <(printf '%s\n' "$out" | sed -n 's/^\[  SKIPPED \] \([^ ]*\)$/\1/p' | sort -u)
	if [ $rc -ne 0 ]; then
		printf '%s\n' "$out" | tail -30
		[ -z "$f" ] && failed=$((failed + 1))
	fi
	[ $rc -ne 0 ] || [ $unexpected -ne 0 ] && broken+=("$t")
done
echo "unit: $passed passed, $failed failed, $skipped skipped"
[ ${#broken[@]} -eq 0 ]
