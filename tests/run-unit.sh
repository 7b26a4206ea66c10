#!/usr/bin/env bash
# Runs each unit-test executable (cmocka) and sums the results into one
# closing line "N passed, N failed".
set -u
passed=0; failed=0; broken=()
for t in "$@"; do
	out=$("$t" 2>&1); rc=$?
	printf '%s\n' "$out" | grep -E '^\[  (PASSED|FAILED)  \]|^\[  ERROR   \]' || true
	p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
	if [ $rc -ne 0 ]; then
		broken+=("$t"); printf '%s\n' "$out" | tail -30
		[ -z "$f" ] && failed=$((failed + 1))
	fi
done
echo "unit: $passed passed, $failed failed"
[ ${#broken[@]} -eq 0 ]
