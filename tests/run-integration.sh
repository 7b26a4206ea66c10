#!/usr/bin/env bash
# Runs every tests/integration/test_*.sh (tests/runner-lib.sh), each bounded in time, and sums
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
. "$(dirname "$0")/runner-lib.sh"
cd "$(dirname "$0")/integration"
jobs=${INTEGRATION_JOBS:-3}
case "$jobs" in '' | *[!0-9]* | 0) echo "INTEGRATION_JOBS: not a positive number: $jobs" >&2; exit 2 ;; esac
out_dir=$(mktemp -d /tmp/syncbit-runner.XXXXXX)
trap 'rm -rf "$out_dir"' EXIT
trap 'kill $(jobs -p) 2>/dev/null; exit 130' INT TERM

# The long ones first, so that they do not end the run alone.
long=(test_mirror test_mirror_pull test_image test_kube_api test_cluster test_netns test_pull_s3 test_web
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

limit=600
run_parallel "$jobs"
selected+=("${alone[@]}")
for t in "${alone[@]}"; do
	run_one "$t"
	report_done
done
echo "integration: $passed passed, $failed failed, $skipped skipped"
exit $status
