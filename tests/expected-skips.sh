# Sourced by the test runners. A test that cannot run a check here says so
# (cmocka's skip(), or skip in tests/integration/lib.sh) and the runner
# counts it; a skip fails the run unless it is expected. Expected skips are
# listed in the file SYNCBIT_EXPECTED_SKIPS names (none by default), one a
# line, "TEST: DESCRIPTION # why it is expected on this machine": TEST is an
# integration script without .sh (test_netns) or a unit executable
# (test_conn), DESCRIPTION the skipped check's description or unit test name
# exactly as the test prints it. Lines starting with # are comments.
EXPECTED_SKIPS=()
if [ -n "${SYNCBIT_EXPECTED_SKIPS:-}" ]; then
	if [ ! -r "$SYNCBIT_EXPECTED_SKIPS" ]; then
		echo "SYNCBIT_EXPECTED_SKIPS: cannot read $SYNCBIT_EXPECTED_SKIPS" >&2
		exit 2
	fi
	while IFS= read -r line; do
		line=${line%%#*}
		line=${line%"${line##*[![:space:]]}"}
		[ -n "$line" ] && EXPECTED_SKIPS+=("$line")
	done <"$SYNCBIT_EXPECTED_SKIPS"
fi

# skip_expected TEST DESCRIPTION: 0 when the file lists it.
skip_expected() {
	local e
	for e in "${EXPECTED_SKIPS[@]}"; do
		[ "$e" = "$1: $2" ] && return 0
	done
	return 1
}
