#!/usr/bin/env bash
# Runs each unit-test executable (cmocka) and sums the results into one
# closing line "N passed, N failed, N skipped". A skipped test fails the
# run unless SYNCBIT_EXPECTED_SKIPS names it (tests/expected-skips.sh).
set -u
. "$(dirname "$0")/expected-skips.sh"
passed=0; failed=0; skipped=0; broken=()
for t in "$@"; do
	name=$(basename "$t")
	out=$("$t" 2>&1); rc=$?
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
