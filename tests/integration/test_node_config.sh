#!/usr/bin/env bash
# One node-wide config file for every command: a daemon started from it,
# then `status` and `ready` with the same file (daemon keys they do not use
# are skipped) reach that daemon; a key no command knows is one line naming
# the file, line and key, exit 2; SYNCBIT_CONFIG names the file; the
# default /etc/syncbit/config.yaml is read when it exists (in a private
# mount namespace, so nothing else on the machine sees it) and is silently
# absent otherwise.
. "$(dirname "$0")/lib.sh"
# Under SAN=1 a report goes to a file, checked at the end.
export ASAN_OPTIONS="log_path=$T/san${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="log_path=$T/san${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
unset SYNCBIT_CONFIG

SPORT=$(free_port)
mkdir -p "$T/data" "$T/models"
openssl rand -hex 32 >"$T/token"
chmod 600 "$T/token"
cat >"$T/config.yaml" <<YAML
# the seed's quickstart: syncbit daemon --config /etc/syncbit/config.yaml
scheduler: 127.0.0.1:$SPORT
listen: 127.0.0.1:0
data: $T/data
target: $T/models
node: node-a
labels: [pool=a100, zone=b]
token-file: $T/token
scheduler-grace: 0
log-level: info
YAML
"$SYNCBIT" daemon --config "$T/config.yaml" >"$T/daemon.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -S "$T/data/agent.sock" ] && break; sleep 0.1; done
check "the daemon starts from the config file alone" test -S "$T/data/agent.sock"
check "its startup line names the node and labels from the file" grep -q "node-a.*pool=a100" "$T/daemon.log"

"$SYNCBIT" status --config "$T/config.yaml" --json >"$T/status.out" 2>"$T/status.err"
check "status --config with the daemon's keys reaches that daemon" \
	python3 -c "import json,sys; json.loads(open(sys.argv[1]).read().splitlines()[-1])" "$T/status.out"
check "status says nothing about keys it does not use" test ! -s "$T/status.err"
"$SYNCBIT" ready llama --config "$T/config.yaml" >"$T/ready.out" 2>"$T/ready.err"; rc=$?
check "ready --config asks that daemon (not ready: exit 1, no config error)" \
	bash -c "[ $rc -eq 1 ] && ! grep -qi 'config\|unknown' '$T/ready.err' '$T/ready.out'"
check "SYNCBIT_CONFIG names the file as --config does" \
	env SYNCBIT_CONFIG="$T/config.yaml" "$SYNCBIT" status --json
check "cache ls reads the data directory from the same file" \
	bash -c "'$SYNCBIT' cache ls --config '$T/config.yaml' 2>&1 | grep -qv 'unknown key'"

# A typo: one line, exit 2, naming the file, the line and the key.
sed 's/^labels:/lables:/' "$T/config.yaml" >"$T/typo.yaml"
for cmd in status "ready llama" daemon; do
	# shellcheck disable=SC2086
	expect_fail "$cmd: a key no command knows is one line with exit 2" 2 \
		"typo.yaml:7: unknown key 'lables'" "$SYNCBIT" $cmd --config "$T/typo.yaml"
	check "$cmd: and no usage text after it" test "$(wc -l <"$T/.err")" -eq 1
done
expect_fail "the closest key is suggested" 2 "unknown key 'schedular' \\(did you mean 'scheduler'\\?\\)" \
	"$SYNCBIT" status --config <(printf 'schedular: x\n')
expect_fail "a --config file that does not exist is an error" 2 "nope.yaml: No such file" \
	"$SYNCBIT" status --config "$T/nope.yaml"

# The default path, in a mount namespace of this test's own.
if unshare -m true 2>/dev/null; then
	mkdir -p "$T/etc"
	cp "$T/config.yaml" "$T/etc/config.yaml"
	# /etc/syncbit must exist to be mounted over; made empty if missing.
	[ -d /etc/syncbit ] || { mkdir /etc/syncbit && CLEANUPS+=("rmdir /etc/syncbit"); }
	check "the default /etc/syncbit/config.yaml serves status without --config" \
		unshare -m sh -c "mount --bind '$T/etc' /etc/syncbit && '$SYNCBIT' status --json"
	cp "$T/typo.yaml" "$T/etc/config.yaml"
	expect_fail "a typo in the default file is an error naming it" 2 \
		"/etc/syncbit/config.yaml:7: unknown key 'lables'" \
		unshare -m sh -c "mount --bind '$T/etc' /etc/syncbit && exec '$SYNCBIT' status"
	rm "$T/etc/config.yaml"
	expect_fail "without the default file status is silent about it (and finds no agent)" 1 \
		"cannot reach the agent at /" \
		unshare -m sh -c "mount --bind '$T/etc' /etc/syncbit && exec '$SYNCBIT' status --data '$T/elsewhere'"
else
	bad "unshare -m works (needed to test the default path without touching /etc)"
fi

check "no sanitizer report" bash -c "! ls '$T'/san.* 2>/dev/null | grep -q ."

finish
