#!/usr/bin/env bash
# Runs every tests/integration/test_*.sh, each bounded in time, and sums
# their results into one closing line "N passed, N failed, N skipped". A
# skip (tests/integration/lib.sh) fails the run unless
# SYNCBIT_EXPECTED_SKIPS names it (tests/expected-skips.sh).
set -u
. "$(dirname "$0")/expected-skips.sh"
cd "$(dirname "$0")/integration"
passed=0; failed=0; skipped=0; status=0
for t in test_*.sh; do
	[ -n "${ONLY:-}" ] && [[ "$t" != *"$ONLY"* ]] && continue
	echo "== $t"
	out=$(timeout -k 10 600 bash "$t" 2>&1); rc=$?
	printf '%s\n' "$out"
	line=$(printf '%s\n' "$out" | grep -E '^[a-z0-9_]+: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' | tail -1)
	p=$(sed -n 's/.*: \([0-9]*\) passed.*/\1/p' <<<"$line")
	f=$(sed -n 's/.* \([0-9]*\) failed,.*/\1/p' <<<"$line")
	s=$(sed -n 's/.* \([0-9]*\) skipped$/\1/p' <<<"$line")
	passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0})); skipped=$((skipped + ${s:-0}))
	while IFS= read -r d; do
		[ -n "$d" ] || continue
		skip_expected "${t%.sh}" "$d" && continue
		status=1
		echo "   unexpected skip: ${t%.sh}: $d"
	done < <(printf '%s\n' "$out" | sed -n 's/^  SKIP \(.*\)$/\1/p')
	if [ $rc -ne 0 ]; then
		status=1
		[ -z "$line" ] && { failed=$((failed + 1)); echo "   $t exited $rc without a result line"; }
	fi
done
echo "integration: $passed passed, $failed failed, $skipped skipped"
exit $status
