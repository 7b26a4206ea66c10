# Sourced by tests/run-integration.sh and tests/run-chaos.sh: run test
# scripts a few at a time, print each one whole when it ends (with its
# duration), and sum their result lines "NAME: N passed, N failed, N
# skipped" (and "NAME: N known failures"). A skip fails the run unless
# SYNCBIT_EXPECTED_SKIPS names it (tests/expected-skips.sh).
# The caller sets: out_dir (a temp dir), limit (seconds per script),
# selected (the scripts, in order), and runs run_parallel JOBS.
. "$(dirname "${BASH_SOURCE[0]}")/expected-skips.sh"

passed=0; failed=0; skipped=0; known=0; status=0
declare -A reported=()

# timeout(1) runs the script in a process group of its own (timeout's pid):
# whatever the script started and left running when it ended is stopped
# here, and named in its output.
run_one() {
	local t=$1 start=$SECONDS rc pid left
	timeout -k 10 "$limit" bash "$t" >"$out_dir/$t.out" 2>&1 &
	pid=$!
	wait "$pid"
	rc=$?
	# (zombies are not counted: they are exits not yet reaped)
	left=$(ps -eo pid=,pgid=,stat=,args= | awk -v g="$pid" '$2 == g && $3 !~ /^Z/ { $2 = $3 = ""; print }')
	if [ -n "$left" ]; then
		kill -KILL -- "-$pid" 2>/dev/null
		printf '   left running after the script ended (killed):\n%s\n' \
			"$(printf '%s\n' "$left" | cut -c1-200 | sed 's/^/     /')" >>"$out_dir/$t.out"
	fi
	echo "$((SECONDS - start))" >"$out_dir/$t.sec"
	echo "$rc" >"$out_dir/$t.rc" # written last: the script is done
}

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

# Run selected, JOBS at a time, reporting each as it ends.
run_parallel() {
	local jobs=$1 t
	for t in "${selected[@]}"; do
		while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
			wait -n
			report_done
		done
		run_one "$t" &
	done
	wait
	report_done
}
