#!/usr/bin/env bash
# Runs each libFuzzer target for SECONDS on a temp copy of its seeds, two at
# a time, and prints one line per target and a closing line
# "fuzz: N passed, N failed". A crash, leak, timeout or out-of-memory fails
# the target; its input is kept in $OUT/artifacts/ and the end of its log is
# shown. Nothing is written into tests/fuzz/corpus/.
#   OUT=build-fuzz tests/fuzz/smoke.sh SECONDS TARGET...
set -u
secs=$1
shift
root=$(pwd)
out=${OUT:-build-fuzz}
[ "${out#/}" = "$out" ] && out=$root/$out
jobs=${FUZZ_JOBS:-2}
tmp=$(mktemp -d /tmp/syncbit-fuzz.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out/artifacts"

one() {
	local t=$1 dir=$tmp/$1 log=$tmp/$1.log dict=()
	mkdir -p "$dir/corpus"
	if [ -d "tests/fuzz/corpus/$t" ]; then
		cp "tests/fuzz/corpus/$t"/* "$dir/corpus/"
	fi
	if [ -x "$out/seed_$t" ]; then
		"$out/seed_$t" "$dir/corpus" || {
			echo "fuzz_$t: FAILED (the seed writer failed)"
			echo failed >"$tmp/$t.result"
			return
		}
	fi
	[ -f "tests/fuzz/dict/$t.dict" ] && dict=(-dict="$root/tests/fuzz/dict/$t.dict")
	# The target runs in its own directory: anything it writes stays there.
	(cd "$dir" && exec "$out/fuzz_$t" -max_total_time="$secs" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
		-artifact_prefix="$out/artifacts/$t-" corpus) </dev/null >"$log" 2>&1
	local rc=$?
	local runs rate
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	if [ $rc -eq 0 ] && [ -n "$runs" ]; then
		echo "fuzz_$t: ok, ${runs} runs in ${secs} s (${rate:-?}/s)"
		echo passed >"$tmp/$t.result"
	else
		local why
		# The target's own check, else what the sanitizer or libFuzzer said.
		why=$(grep -m1 -E '^tests/fuzz/fuzz_[a-z0-9_]+\.c:[0-9]+: ' "$log")
		[ -n "$why" ] || why=$(grep -m1 -oE 'runtime error: .*|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): .*|ALARM: .*' "$log")
		echo "fuzz_$t: FAILED (exit $rc: ${why:-see the log below})"
		tail -40 "$log" | sed "s/^/  fuzz_$t| /"
		echo failed >"$tmp/$t.result"
	fi
}

running=0
for t in "$@"; do
	if [ ! -x "$out/fuzz_$t" ]; then
		echo "fuzz_$t: FAILED (not built)"
		echo failed >"$tmp/$t.result"
		continue
	fi
	one "$t" &
	running=$((running + 1))
	if [ $running -ge "$jobs" ]; then
		wait -n
		running=$((running - 1))
	fi
done
wait

passed=0
failed=0
for t in "$@"; do
	if [ "$(cat "$tmp/$t.result" 2>/dev/null)" = passed ]; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
	fi
done
echo "fuzz: $passed passed, $failed failed"
[ $failed -eq 0 ]
