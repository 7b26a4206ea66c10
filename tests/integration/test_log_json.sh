#!/usr/bin/env bash
# --log-format json: a real scheduler, two agents and an agent with a wrong
# join token, a dataset distributed, then sync, pull and commands that fail.
# Every line each of them writes on stderr is one JSON object with ts
# (RFC 3339 UTC, milliseconds), level, component, module and msg, plus the
# fields of what it is about (dataset, node, peer, scheduler, error), and
# credentials in source URLs are redacted there as in text lines.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster.sh"

SRC=$T/src
mkdir -p "$SRC/a dir"
head -c $((2 << 20)) /dev/urandom >"$SRC/big"
printf 'line one\nline "two"\n' >"$SRC/a dir/text"

start_scheduler --log-format json || { bad "scheduler starts"; finish; exit 1; }
start_agent 1 --log-format json || bad "agent n1 starts"
start_agent 2 --log-format json || bad "agent n2 starts"
python3 -c 'import secrets; print(secrets.token_hex(32))' >"$T/wrong-token"
chmod 600 "$T/wrong-token"
AGENT_TOKEN=$T/wrong-token start_agent 3 --log-format json || bad "agent n3 starts"
check "dataset add" add_dataset logs "$SRC" --block-size 1MiB
check "both agents get the dataset" wait_ready 60 logs 1 2

# The agent with the wrong token says so, at warn or error.
refused() {
	local deadline=$((SECONDS + 30))
	until grep -q 'join token' "$T/a3.log"; do
		[ $SECONDS -ge $deadline ] && return 1
		sleep 0.2
	done
}
check "n3 logs the refusal" refused

# sync and pull, with a source URL that carries a signature.
"$SYNCBIT" sync "$SRC" "$T/synced" --once --data "$T/sync-data" --log-format json \
	--log-level info >"$T/sync.out" 2>"$T/sync.log"
check "sync --once with --log-format json" test $? -eq 0
# A FIFO in the tree: pull skips it with a warning.
mkdir -p "$T/src2"
cp "$SRC/big" "$T/src2/"
mkfifo "$T/src2/fifo"
"$SYNCBIT" pull "$T/src2" --to "$T/pulled" --data "$T/pull-data" --log-format json \
	--log-level info >"$T/pull.out" 2>"$T/pull.log"
check "pull with --log-format json" test $? -eq 0
"$SYNCBIT" pull "http://user:hunter2@127.0.0.1:1/f?X-Amz-Signature=c0ffee" --to "$T/nope" \
	--data "$T/pull-data" --retries 0 --log-format json >"$T/fail.out" 2>"$T/fail.log"
check "a failing pull exits non-zero" test $? -ne 0
"$SYNCBIT" daemon --log-format json --no-such-flag >/dev/null 2>"$T/usage.log"
check "an unknown flag exits 2" test $? -eq 2
SYNCBIT_LOG_FORMAT=json "$SYNCBIT" ready nosuch --socket "$T/a1.sock" >/dev/null 2>"$T/ready.log"
check "ready of an unknown dataset fails" test $? -ne 0

stop_cluster

# validate FILE COMPONENT: every line is a JSON object with the fields.
validate() {
	python3 - "$1" "$2" <<'PY'
import json, re, sys
path, component = sys.argv[1], sys.argv[2]
ts = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$')
n = 0
for i, line in enumerate(open(path, encoding='utf-8'), 1):
    try:
        o = json.loads(line)
    except ValueError as e:
        sys.exit(f'{path}:{i}: not JSON ({e}): {line!r}')
    assert isinstance(o, dict), f'{path}:{i}: not an object'
    for k in ('ts', 'level', 'component', 'module', 'msg'):
        assert isinstance(o.get(k), str) and o[k], f'{path}:{i}: no {k}: {line!r}'
    assert ts.match(o['ts']), f'{path}:{i}: ts {o["ts"]!r}'
    assert o['level'] in ('debug', 'info', 'warn', 'error'), f'{path}:{i}: level {o["level"]}'
    assert o['component'] == component, f'{path}:{i}: component {o["component"]!r}'
    assert all(isinstance(v, str) for v in o.values()), f'{path}:{i}: a field is not a string'
    n += 1
assert n > 0, f'{path}: no line'
PY
}
# has FILE PYTHON-CONDITION: some line's object o satisfies the condition.
has() {
	python3 - "$1" "$2" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1], encoding='utf-8')]
sys.exit(0 if any(eval(sys.argv[2], {}, {'o': o}) for o in lines) else 1)
PY
}

check "scheduler: every line is JSON with ts, level, component, module, msg" validate "$T/sched.log" scheduler
for n in 1 2 3; do
	check "n$n: every line is JSON with ts, level, component, module, msg" validate "$T/a$n.log" daemon
done
check "sync: every line is JSON" validate "$T/sync.log" sync
check "pull: every line is JSON" validate "$T/pull.log" pull
check "failing pull: every line is JSON" validate "$T/fail.log" pull
check "unknown flag: every line is JSON" validate "$T/usage.log" daemon
check "ready: every line is JSON" validate "$T/ready.log" ready

check "scheduler: startup line at info" has "$T/sched.log" \
	"o['level'] == 'info' and o['module'] == 'sched' and o['msg'].startswith('syncbit ')"
check "scheduler: a dataset line names the dataset" has "$T/sched.log" "o.get('dataset') == 'logs'"
check "scheduler: published on a node, with dataset and node" has "$T/sched.log" \
	"o.get('dataset') == 'logs' and o.get('node') in ('n1', 'n2') and 'published' in o['msg']"
check "n1: every line carries its node" python3 -c "
import json, sys
sys.exit(0 if all(json.loads(l).get('node') == 'n1' for l in open('$T/a1.log')) else 1)"
check "n1: a dataset line with the dataset" has "$T/a1.log" \
	"o.get('dataset') == 'logs' and o['module'] in ('daemon', 'fetch')"
check "n1: its peer n2, with the peer field" has "$T/a1.log" \
	"o.get('peer') == 'n2' and o['module'] == 'peer'"
check "n3: the wrong join token at warn or error, naming the scheduler" has "$T/a3.log" \
	"o['level'] in ('warn', 'error') and o.get('scheduler') == '$SCHED' and 'join token' in o['msg']"
check "pull: the skipped FIFO is a warn line" has "$T/pull.log" \
	"o['level'] == 'warn' and 'special file' in o['msg']"
check "failing pull: the final error is a JSON error line" has "$T/fail.log" \
	"o['level'] == 'error' and o['module'] == 'cli'"
check "failing pull: the URL's credentials are redacted" \
	sh -c "! grep -E 'hunter2|c0ffee' '$T/fail.log' && grep -q REDACTED '$T/fail.log'"
check "unknown flag: the error and the usage as JSON error lines" has "$T/usage.log" \
	"o['level'] == 'error' and o['msg'].startswith('usage: syncbit daemon')"
check "escaped content stays one line: every line parses (checked above), none is empty" \
	sh -c "! grep -qx '' '$T/sched.log' '$T/a1.log' '$T/sync.log'"
finish
