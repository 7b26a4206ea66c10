#!/usr/bin/env bash
# Runs every tests/integration/test_*.sh, each bounded in time, and sums
# their results into one closing line "N passed, N failed, N skipped". A
# skip (tests/integration/lib.sh) fails the run unless
# SYNCBIT_EXPECTED_SKIPS names it (tests/expected-skips.sh).
#
# The tests spend most of their time waiting on daemons, so
# INTEGRATION_JOBS of them (default 3; 1 runs them one after another) run
# at once, the longest first (tests marked "alone" after them, one at a
# time). Each test has its own temp dir, free ports
# and processes; a test's output is printed whole when it ends, headed by
# its name and how long it took.
set -u
. "$(dirname "$0")/expected-skips.sh"
cd "$(dirname "$0")/integration"
jobs=${INTEGRATION_JOBS:-3}
case "$jobs" in '' | *[!0-9]* | 0) echo "INTEGRATION_JOBS: not a positive number: $jobs" >&2; exit 2 ;; esac
out_dir=$(mktemp -d /tmp/syncbit-runner.XXXXXX)
trap 'rm -rf "$out_dir"' EXIT
trap 'kill $(jobs -p) 2>/dev/null; exit 130' INT TERM

# The long ones first, so that they do not end the run alone.
long=(test_mirror test_image test_kube_api test_cluster test_netns test_pull_s3 test_web
      test_pull_oci test_corrupt test_wait test_pull_agent)
tests=()
for t in "${long[@]}"; do
	[ -f "$t.sh" ] && tests+=("$t.sh")
done
for t in test_*.sh; do
	[[ " ${tests[*]} " == *" $t "* ]] || tests+=("$t")
done
selected=() alone=()
for t in "${tests[@]}"; do
	[ -n "${ONLY:-}" ] && [[ "$t" != *"$ONLY"* ]] && continue
	# A test whose checks are timings of outside daemons (etcd's lease
	# expiry) says "# syncbit-test: alone" and runs after the others, by
	# itself.
	if grep -q '^# syncbit-test: alone' "$t"; then
		alone+=("$t")
	else
		selected+=("$t")
	fi
done

run_one() {
	local t=$1 start=$SECONDS rc
	timeout -k 10 600 bash "$t" >"$out_dir/$t.out" 2>&1
	rc=$?
	echo "$((SECONDS - start))" >"$out_dir/$t.sec"
	echo "$rc" >"$out_dir/$t.rc" # written last: the test is done
}

passed=0; failed=0; skipped=0; status=0
declare -A reported=()
report() {
	local t=$1 out rc line p f s d
	out=$(cat "$out_dir/$t.out")
	rc=$(cat "$out_dir/$t.rc")
	echo "== $t ($(cat "$out_dir/$t.sec") s)"
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
selected+=("${alone[@]}")
for t in "${alone[@]}"; do
	run_one "$t"
	report_done
done
echo "integration: $passed passed, $failed failed, $skipped skipped"
exit $status
