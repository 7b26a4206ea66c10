#!/usr/bin/env bash
# dataset wait NAME and status --watch against a real scheduler and two
# agents on loopback, with a slow HTTP origin: wait succeeds
# once the dataset is on both nodes and prints progress lines off a
# terminal; it gives up after --timeout naming a stopped node, fails at once
# on a dataset that does not exist or a wrong token; status --watch (agent
# and --scheduler, text and --json) prints a block only when something
# changed and exits 0 on SIGINT and SIGTERM. Also: /api/v1/datasets marks
# a dataset made by a pull through an agent (pulled, pulled_by).
. "$(dirname "$0")/lib.sh"
. "$HERE/cluster.sh"

start_scheduler || { bad "scheduler starts"; finish; exit 1; }
start_agent 1 && start_agent 2 || { bad "agents start"; finish; exit 1; }
A=(--scheduler "$SCHED" --token-file "$TOKEN")
python3 -c "print('ab' * 32)" >"$T/wrong-token"; chmod 600 "$T/wrong-token"

# until_true SECONDS COMMAND...: the command succeeds within SECONDS.
until_true() {
	local deadline=$((SECONDS + $1)); shift
	until "$@" >/dev/null 2>&1; do [ $SECONDS -ge "$deadline" ] && return 1; sleep 0.2; done
}
# stops_within SECONDS PID: the process exits within SECONDS; its status in RC.
stops_within() {
	local deadline=$((SECONDS + $1))
	while kill -0 "$2" 2>/dev/null; do [ $SECONDS -ge "$deadline" ] && return 1; sleep 0.1; done
	wait "$2"; RC=$?
}
blocks() { grep -c '^-- [0-9][0-9]:[0-9][0-9]:[0-9][0-9]$' "$1"; }

# ---- bad usage: exit 2 ----
expect_fail "dataset wait without NAME" 2 "dataset wait takes one dataset NAME" \
	"$SYNCBIT" dataset wait "${A[@]}"
expect_fail "--timeout takes a duration" 2 "timeout: '5x' is not a duration" \
	"$SYNCBIT" dataset wait ds --timeout 5x "${A[@]}"
expect_fail "--nodes and --all exclude each other" 2 "exclude each other" \
	"$SYNCBIT" dataset wait ds --nodes 1 --all "${A[@]}"
expect_fail "dataset wait needs --scheduler" 2 "wait: --scheduler is required" \
	"$SYNCBIT" dataset wait ds --token-file "$TOKEN"
expect_fail "status --interval without --watch" 2 "status: --interval goes with --watch" \
	"$SYNCBIT" status --interval 3 --socket "$T/a1.sock"

# ---- failures that waiting cannot mend: at once ----
start=$SECONDS
expect_fail "a dataset that does not exist" 1 "^syncbit: dataset wait nosuch: no such dataset$" \
	timeout 60 "$SYNCBIT" dataset wait nosuch "${A[@]}"
expect_fail "a wrong join token" 1 "dataset wait nosuch: scheduler $SCHED: authentication failed" \
	timeout 60 "$SYNCBIT" dataset wait nosuch --scheduler "$SCHED" --token-file "$T/wrong-token"
check "... both without waiting (no --timeout: it would wait forever)" test $((SECONDS - start)) -lt 30
NOBODY=127.0.0.1:$(free_port)
expect_fail "an unreachable scheduler: not ready after --timeout, saying why" 1 \
	"dataset wait ds: not ready after 2s: scheduler $NOBODY: .*connection refused" \
	"$SYNCBIT" dataset wait ds --scheduler "$NOBODY" --token-file "$TOKEN" --timeout 2s
check "... with a line while it waits (stderr is no terminal)" \
	grep -q "^dataset ds: waiting: scheduler $NOBODY: .*connection refused$" "$T/.err"

# ---- status --watch, off a terminal ----
"$SYNCBIT" status --watch --interval 1 --socket "$T/a1.sock" >"$T/watch-agent.out" 2>"$T/watch-agent.err" &
WA=$!; PIDS+=($WA)
"$SYNCBIT" status -w --interval 1 "${A[@]}" >"$T/watch-sched.out" 2>"$T/watch-sched.err" &
WS=$!; PIDS+=($WS)
"$SYNCBIT" status --watch --json --interval 1 --socket "$T/a2.sock" >"$T/watch-json.out" 2>"$T/watch-json.err" &
WJ=$!; PIDS+=($WJ)
check "status --watch prints a first block" until_true 20 grep -q '^node n1, scheduler' "$T/watch-agent.out"
check "status --scheduler --watch too" until_true 20 grep -q '^2 of 2 nodes connected$' "$T/watch-sched.out"
check "status --watch --json prints a JSON line" until_true 20 grep -q '"node":"n2"' "$T/watch-json.out"

# ---- dataset wait while a dataset is distributed ----
mkdir -p "$T/www"
head -c $((32 << 20)) /dev/urandom >"$T/www/model.bin"
# The origin is tests/fixtures/faulty_http.py: nginx's limit_rate holds each
# request, not all of them together, and the transfer must last longer than
# a progress line's interval whatever the machine.
python3 "$FIXTURES/faulty_http.py" --dir "$T/www" >"$T/http.port" 2>"$T/http.stderr" &
PIDS+=($!)
until_true 10 test -s "$T/http.port"
HTTP_PORT=$(head -1 "$T/http.port")
check "dataset add of a 32 MiB file from an origin sending 3 MB/s" \
	add_dataset model "http://127.0.0.1:$HTTP_PORT/m/rate=3000000,id=model/model.bin" --block-size 1MiB
"$SYNCBIT" dataset wait model --timeout 10m "${A[@]}" >"$T/wait.out" 2>"$T/wait.err"
rc=$?
check "dataset wait exits 0 once the dataset is ready" test "$rc" = 0
check "... saying on how many nodes" grep -Eq '^dataset model: version [0-9a-f]{12} ready on 2 nodes$' "$T/wait.out"
check "... and it is: n1 and n2 hold it" cmp "$T/www/model.bin" "$T/t1/model/model.bin"
check "... n2 too" cmp "$T/www/model.bin" "$T/t2/model/model.bin"
check "while waiting it says what it waits for" \
	grep -Eq '^dataset model: waiting: ready on [01] of 2; n[12] fetching \([0-9]+%, [0-9]+/32 blocks\)' "$T/wait.err"
check "... and prints a progress line every few seconds (stderr is no terminal)" \
	grep -Eq '^model [01]/2 nodes: .* / 64\.0 MiB \([0-9]+%\)' "$T/wait.err"
check "... and no error" sh -c "! grep -q '^syncbit:' '$T/wait.err'"
"$SYNCBIT" dataset wait model --json "${A[@]}" >"$T/wait.json" 2>/dev/null
check "dataset wait --json: the dataset's status as the last line" \
	test "$(json_field "$T/wait.json" nodes_complete)" = 2

check "status --watch shows the dataset published" \
	until_true 20 grep -Eq '^model +published +100\.0%' "$T/watch-agent.out"
check "status --scheduler --watch shows both nodes done" \
	until_true 20 grep -q '^model  version [0-9a-f]*  hashes 32/32  nodes 2/2 complete' "$T/watch-sched.out"
sleep 2 # the last counters settle
na=$(blocks "$T/watch-agent.out") ns=$(blocks "$T/watch-sched.out") nj=$(grep -c . "$T/watch-json.out")
check "status --watch printed more than one block (something changed)" test "$na" -gt 1
sleep 4
check "... but none while nothing changes (4 intervals)" test "$(blocks "$T/watch-agent.out")" = "$na"
check "... --scheduler neither" test "$(blocks "$T/watch-sched.out")" = "$ns"
check "... --json neither" test "$(grep -c . "$T/watch-json.out")" = "$nj"
check "every --json line is a status document" python3 -c '
import json, sys
for line in open(sys.argv[1]):
    assert json.loads(line)["node"] == "n2"
' "$T/watch-json.out"

kill -INT "$WA"
check "status --watch stops on SIGINT" stops_within 10 "$WA"
check "... with exit 0" test "${RC:-x}" = 0
kill -TERM "$WS"
check "status --scheduler --watch stops on SIGTERM" stops_within 10 "$WS"
check "... with exit 0" test "${RC:-x}" = 0
kill -TERM "$WJ"
check "status --watch --json stops on SIGTERM" stops_within 10 "$WJ"
check "... with exit 0" test "${RC:-x}" = 0
check "... and no watcher wrote an error" sh -c "! grep -q . '$T/watch-agent.err' '$T/watch-sched.err' '$T/watch-json.err'"

# ---- a dataset made by a pull through an agent, as the API shows it ----
mkdir -p "$T/psrc"; echo pulled >"$T/psrc/p"
check "pull SOURCE through n1's agent" "$SYNCBIT" pull "$T/psrc" --to "$T/pulled" --socket "$T/a1.sock" -q
curl -sf "http://$SCHED_HTTP/api/v1/datasets" >"$T/datasets.json"
check "/api/v1/datasets: a pulled dataset says so, and which nodes pulled it" python3 -c '
import json, sys
ds = {d["name"]: d for d in json.load(open(sys.argv[1]))["datasets"]}
p = [d for n, d in ds.items() if n.startswith("pull-")]
assert len(p) == 1 and p[0]["pulled"] is True and p[0]["pulled_by"] == ["n1"], p
assert ds["model"]["pulled"] is False and ds["model"]["pulled_by"] == [], ds["model"]
' "$T/datasets.json"

# ---- a node that is stopped: the timeout names it ----
kill -TERM "${AGENT_PID[2]}"
check "n2 stops" stops_within 30 "${AGENT_PID[2]}"
unset 'AGENT_PID[2]'
check "the scheduler sees n2 gone" until_true 30 sh -c \
	"'$SYNCBIT' node ls ${A[*]} | grep -Eq '^n2 +gone'"
mkdir -p "$T/small"; echo hello >"$T/small/f"
check "dataset add small (it goes to n1 and n2)" add_dataset small "$T/small"
expect_fail "dataset wait: not ready after the timeout, naming the stopped node and why" 1 \
	"^syncbit: dataset wait small: not ready after 3s: ready on [01] of 2; .*n2 not connected to the scheduler" \
	"$SYNCBIT" dataset wait small --timeout 3s "${A[@]}"
check "dataset wait --nodes 1: one node is enough" \
	"$SYNCBIT" dataset wait small --nodes 1 --timeout 2m "${A[@]}"
check "... and n1 has it" cmp "$T/small/f" "$T/t1/small/f"

# ---- a signal while waiting ----
"$SYNCBIT" dataset wait small "${A[@]}" >/dev/null 2>"$T/int.err" &
WW=$!; PIDS+=($WW)
until_true 20 grep -q waiting "$T/int.err"
kill -INT "$WW"
check "dataset wait stops on SIGINT" stops_within 10 "$WW"
check "... exit 1 saying it was interrupted and what was missing" sh -c \
	"test '${RC:-x}' = 1 && grep -q '^syncbit: dataset wait small: interrupted: .*n2 not connected' '$T/int.err'"

check "no sanitizer report from the commands" sh -c "! grep -lE 'Sanitizer|runtime error' '$T'/*.err '$T'/*.out"
stop_cluster
finish
