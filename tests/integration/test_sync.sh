#!/usr/bin/env bash
# syncbit sync: the rsync + cron sidecar's environment (SRC, DST,
# CRON_SCHEDULE, RUN_ON_START, CRONTAB, CRONTAB_FILE), --once, one run at a
# time across processes, --delete, SIGTERM in the middle of a run, failed
# runs, list files. Schedules themselves are covered by the cron unit tests:
# here runs come from --once and --run-on-start, never from the clock.
. "$(dirname "$0")/lib.sh"

S=$T/src D=$T/dst DATA=$T/data
mkdir -p "$S/nested"
echo one >"$S/one.txt"
head -c 300000 /dev/urandom >"$S/nested/blob.bin"
echo secret >"$S/nested/private"
chmod 0600 "$S/nested/private"
ln "$S/one.txt" "$S/nested/one-hardlink"

# Variables of the sidecar a test did not set must not leak in from outside.
unset SRC DST CRON_SCHEDULE RUN_ON_START CRONTAB CRONTAB_FILE

# Foreground runs only: a process sent signals is started as "$SYNCBIT"
# itself, so that $! is its pid.
sync_() { "$SYNCBIT" sync "$@" --data "$DATA"; }

# wait_for SECONDS command...: poll until the command succeeds.
wait_for() {
	local n=$(($1 * 20)); shift
	for _ in $(seq "$n"); do "$@" && return 0; sleep 0.05; done
	return 1
}

# exits_ok PID: it ends within 10 s with status 0.
exits_ok() {
	for _ in $(seq 200); do kill -0 "$1" 2>/dev/null || break; sleep 0.05; done
	if kill -0 "$1" 2>/dev/null; then kill -9 "$1"; wait "$1" 2>/dev/null; return 1; fi
	wait "$1"
}

# stop_ok PID: SIGTERM ends it within 10 s with status 0.
stop_ok() {
	kill -TERM "$1" 2>/dev/null
	exits_ok "$1"
}

lock_of() {
	python3 -c "import hashlib,sys; print('%s/locks/sync-%s.lock' % (sys.argv[1], hashlib.sha256(sys.argv[2].encode()).hexdigest()[:16]))" "$DATA" "$1"
}

# ---- one run ----------------------------------------------------------------
sync_ "$S" "$D" --once --json >"$T/o1" 2>"$T/e1"
check "--once syncs and exits 0" test $? -eq 0
check "trees are identical" diff -r "$S" "$D"
check "modes kept" test "$(stat -c %a "$D/nested/private")" = 600
check "hardlinks kept" test "$(stat -c %i "$D/one.txt")" = "$(stat -c %i "$D/nested/one-hardlink")"
check "one JSON line per run" test "$(wc -l <"$T/o1")" -eq 1
x=$(json_field "$T/o1" bytes_from_source); y=$(json_field "$T/o1" bytes_from_peers)
z=$(json_field "$T/o1" bytes_reused)
check "run line: status ok, X+Y+Z = bytes" test "$(json_field "$T/o1" status)" = ok -a \
	$((x + y + z)) -eq "$(json_field "$T/o1" bytes)"
sync_ "$S" "$D" --once >"$T/o2" 2>&1
check "text run line carries the summary fields" \
	grep -Eq '^sync run 1: ok .* files=4 bytes=[0-9]+ bytes_from_source=0 bytes_from_peers=0 bytes_reused=[0-9]+ deleted=0 seconds=' "$T/o2"

# ---- --delete -----------------------------------------------------------------
mkdir -p "$T/outside" "$D/gone-dir/deeper"
echo keep >"$T/outside/keep"
echo x >"$D/extra.txt"; echo x >"$D/gone-dir/deeper/f"
ln -s "$T/outside" "$D/link-out"
sync_ "$S" "$D" --once >/dev/null 2>&1
check "without --delete extra files stay" test -f "$D/extra.txt" -a -L "$D/link-out"
sync_ "$S" "$D" --once --delete --json >"$T/o3" 2>&1
check "--delete removes what the source lacks" test ! -e "$D/extra.txt" -a ! -e "$D/gone-dir" -a ! -L "$D/link-out"
check "--delete never follows a symlink out of DST" test "$(cat "$T/outside/keep")" = keep
check "--delete keeps the source's files" diff -r "$S" "$D"
check "--delete counts what it removed" test "$(json_field "$T/o3" deleted)" -eq 5

# ---- the sidecar's environment ----------------------------------------------------
E=$T/env-dst
SRC=$S DST=$E "$SYNCBIT" sync --once --data "$DATA" >/dev/null 2>&1
check "SRC and DST from the environment" diff -r "$S" "$E"
rm -rf "$E"
SRC=/nonexistent DST=/nonexistent "$SYNCBIT" sync "$S" "$E" --once --data "$DATA" >/dev/null 2>&1
check "arguments override SRC and DST" diff -r "$S" "$E"

expect_fail "malformed CRON_SCHEDULE: one line, exit 2" 2 "CRON_SCHEDULE '61 \* \* \* \*': minute field" \
	env CRON_SCHEDULE="61 * * * *" "$SYNCBIT" sync "$S" "$E" --data "$DATA"
expect_fail "malformed --schedule: exit 2" 2 "schedule '\* \* \*': expected 5 fields" \
	"$SYNCBIT" sync "$S" "$E" --schedule "* * *" --data "$DATA"
CRON_SCHEDULE="bad" "$SYNCBIT" sync "$S" "$E" --schedule "@daily" --once --data "$DATA" >/dev/null 2>&1
check "--schedule overrides CRON_SCHEDULE" test $? -eq 0
printf 'SHELL=/bin/bash\n*/5 * * * * rsync -avH "$SRC" "$DST"\n0 25 * * * rsync\n' >"$T/crontab"
expect_fail "CRONTAB_FILE with a bad line: exit 2 naming the line" 2 "CRONTAB_FILE .*crontab: line 3: hour field" \
	env CRONTAB_FILE="$T/crontab" CRON_SCHEDULE="* * * * *" "$SYNCBIT" sync "$S" "$E" --data "$DATA"
expect_fail "CRONTAB with a bad line: exit 2" 2 "CRONTAB: line 1: unknown macro" \
	env CRONTAB="@sometimes sync" "$SYNCBIT" sync "$S" "$E" --data "$DATA"
expect_fail "missing CRONTAB_FILE: exit 2" 2 "CRONTAB_FILE /nonexistent" \
	env CRONTAB_FILE=/nonexistent "$SYNCBIT" sync "$S" "$E" --data "$DATA"
expect_fail "SRC without DST: usage error" 2 "sync takes SRC and DST" "$SYNCBIT" sync "$S" --data "$DATA"

# RUN_ON_START=1 with a schedule that will not fire during the test: one run
# at start, then the process waits for the clock until SIGTERM.
R=$T/ros-dst
SRC=$S DST=$R RUN_ON_START=1 CRON_SCHEDULE="0 0 1 1 *" "$SYNCBIT" sync --data "$DATA" >"$T/ros.out" 2>"$T/ros.err" &
pid=$!; PIDS+=($pid)
check "RUN_ON_START=1 runs at start" wait_for 20 grep -q "^sync run 1: ok" "$T/ros.out"
check "RUN_ON_START run synced the tree" diff -r "$S" "$R"
check "the process stays for its schedule" kill -0 "$pid"
# Between runs the data directory is free for other commands.
check "a pull with the same data directory runs while sync waits" \
	timeout 20 "$SYNCBIT" pull "$S" --to "$T/side-pull" --data "$DATA"
check "SIGTERM while waiting for the schedule: exit 0" stop_ok "$pid"

rm -rf "$R"
SRC=$S DST=$R RUN_ON_START=true CRONTAB=$'# nightly\n@reboot sync\n30 2 * * * sync' \
	"$SYNCBIT" sync --data "$DATA" >"$T/tab.out" 2>&1 &
pid=$!; PIDS+=($pid)
check "CRONTAB with @reboot runs at start" wait_for 20 grep -q "^sync run 1: ok" "$T/tab.out"
check "SIGTERM: exit 0" stop_ok "$pid"

rm -rf "$R"
SRC=$S DST=$R RUN_ON_START=0 CRON_SCHEDULE="0 0 1 1 *" "$SYNCBIT" sync --data "$DATA" >"$T/nr.out" 2>"$T/nr.err" &
pid=$!; PIDS+=($pid)
sleep 1
check "RUN_ON_START=0 waits for the schedule" test ! -e "$R" -a ! -s "$T/nr.out"
check "sync logs one startup line at info by default" \
	grep -q "info: syncbit [0-9.]* (.*) sync: $S -> $R, schedule '0 0 1 1 \*', data $DATA\$" "$T/nr.err"
check "SIGINT: exit 0" bash -c "kill -INT $pid; for _ in \$(seq 100); do kill -0 $pid 2>/dev/null || exit 0; sleep 0.05; done; exit 1"
wait "$pid" 2>/dev/null

# --run-on-start overrides RUN_ON_START=0
RUN_ON_START=0 "$SYNCBIT" sync "$S" "$R" --run-on-start --schedule "0 0 1 1 *" --data "$DATA" >"$T/f.out" 2>&1 &
pid=$!; PIDS+=($pid)
check "--run-on-start overrides RUN_ON_START=0" wait_for 20 grep -q "^sync run 1: ok" "$T/f.out"
stop_ok "$pid"

# ---- one run at a time ------------------------------------------------------------
# The test holds the run lock as another process would (flock(2) on the
# same file, from this shell's fd 8).
L=$(lock_of "$D")
mkdir -p "$(dirname "$L")"
exec 8>>"$L"
flock 8
sync_ "$S" "$D" --once >"$T/w.out" 2>"$T/w.err" &
pid=$!; PIDS+=($pid)
check "--once waits for a running sync, and says so" \
	wait_for 20 grep -q "another sync (pid [0-9]*) is running; waiting" "$T/w.err"
check "...without running meanwhile" test ! -s "$T/w.out"
"$SYNCBIT" sync "$S" "$D" --run-on-start --schedule "0 0 1 1 *" --data "$DATA" >"$T/s.out" 2>&1 &
spid=$!; PIDS+=($spid)
check "a scheduled run skips while another sync runs, and says so" \
	wait_for 20 grep -q "^sync run 1: skipped: another sync holds .*$(basename "$L")" "$T/s.out"
check "the skipping process goes on" kill -0 "$spid"
stop_ok "$spid"
flock -u 8
exec 8>&-
wait "$pid"
check "...then runs once the lock is free" test $? -eq 0 -a "$(grep -c '^sync run 1: ok' "$T/w.out")" -eq 1

# Two real syncs into one DST. The test holds the data directory's cache
# lock, so the first sync takes the run lock, then waits for the cache: the
# second one surely meets it. It waits too, then both succeed in turn.
B=$T/big; mkdir -p "$B"
for i in $(seq 1 8); do head -c $((1 << 20)) /dev/urandom >"$B/f$i.bin"; done
BD=$T/big-dst BL=$(lock_of "$T/big-dst")
exec 9>>"$DATA/lock"
flock 9
"$SYNCBIT" sync "$B" "$BD" --once --data "$DATA" >"$T/a.out" 2>"$T/a.err" &
a=$!; PIDS+=($a)
# The holder writes its pid into the run lock file once it has it.
wait_for 20 bash -c "[ \"\$(cat '$BL' 2>/dev/null)\" = $a ]"
"$SYNCBIT" sync "$B" "$BD" --once --data "$DATA" >"$T/b.out" 2>"$T/b.err" &
b=$!; PIDS+=($b)
check "a second sync waits for the running one, and says so" \
	wait_for 20 grep -q "another sync (pid $a) is running; waiting" "$T/b.err"
flock -u 9
exec 9>&-
wait "$a"; ra=$?
wait "$b"; rb=$?
check "two concurrent syncs both succeed" test "$ra" -eq 0 -a "$rb" -eq 0
check "the second one ran after the first: everything in place" grep -q "bytes_from_source=0 " "$T/b.out"

# ---- SIGTERM during a big run ---------------------------------------------------------
# DST holds a complete older version; the signal lands while files are being
# fetched: the files in flight finish, nothing is published, exit 0.
G=$T/grow GD=$T/grow-dst GDATA=$T/grow-data
mkdir -p "$G"; echo v1 >"$G/version.txt"
"$SYNCBIT" sync "$G" "$GD" --once --data "$GDATA" >/dev/null 2>&1
cp -a "$GD" "$T/grow-v1"
echo v2 >"$G/version.txt"
for i in $(seq 1 64); do head -c $((8 << 20)) /dev/urandom >"$G/part-$i.bin"; done
"$SYNCBIT" sync "$G" "$GD" --once --jobs 2 --data "$GDATA" >"$T/t.out" 2>"$T/t.err" &
pid=$!; PIDS+=($pid)
wait_for 20 bash -c "ls '$GDATA/partial' 2>/dev/null | grep -q ."
# Frozen while files are in flight, it gets SIGTERM as it resumes: the
# signal surely lands mid-run, however busy the machine.
kill -STOP "$pid"
kill -TERM "$pid"
kill -CONT "$pid"
check "SIGTERM mid-run: exit 0 within the bound" exits_ok "$pid"
check "...reported as stopped" grep -q "^sync run 1: stopped: .*keeps its previous version" "$T/t.out"
check "...DST still holds the previous version whole" diff -r "$T/grow-v1" "$GD"
check "...no temporary files in DST" test -z "$(find "$GD" -name '.syncbit-*')"
"$SYNCBIT" sync "$G" "$GD" --once --json --data "$GDATA" >"$T/t2.out" 2>&1
check "the next run completes the new version" diff -r "$G" "$GD"
check "...reusing the files finished before the stop" test "$(json_field "$T/t2.out" bytes_reused)" -gt 0

# A second signal does not wait for the files in flight.
rm -rf "$GD" "$GDATA"
"$SYNCBIT" sync "$G" "$GD" --once --jobs 2 --data "$GDATA" >"$T/t3.out" 2>&1 &
pid=$!; PIDS+=($pid)
wait_for 20 bash -c "ls '$GDATA/partial' 2>/dev/null | grep -q ."
kill -TERM "$pid"; sleep 0.2; kill -TERM "$pid" 2>/dev/null
wait "$pid"
check "a second SIGTERM ends the process at once" test $? -eq 143 -o $? -eq 0
check "...and publishes nothing" test ! -e "$GD/version.txt"

# ---- failed runs ------------------------------------------------------------------------
expect_fail "--once with a missing source: exit 1, one line" 1 "sync run 1: .*nonexistent" \
	"$SYNCBIT" sync "$T/nonexistent" "$T/x" --once --data "$DATA"
"$SYNCBIT" sync "$T/nonexistent" "$T/x" --run-on-start --schedule "0 0 1 1 *" --data "$DATA" >"$T/fail.out" 2>"$T/fail.err" &
pid=$!; PIDS+=($pid)
wait_for 10 grep -qs "sync run 1" "$T/fail.err"
check "a failed run logs one line" test "$(grep -c '^syncbit: sync run 1: ' "$T/fail.err")" -eq 1
check "...and the schedule goes on" kill -0 "$pid"
stop_ok "$pid"

# ---- list files ---------------------------------------------------------------------------
L1=$T/l1 L2=$T/l2 LD=$T/list-dst
mkdir -p "$L1/sub" "$L2"; echo a >"$L1/sub/a"; echo b >"$L2/b"
cat >"$T/models.ini" <<INI
# local mirrors
$L1
file://$L2   # the second one
INI
sync_ --list "$T/models.ini" "$LD" --once >"$T/l.out" 2>&1
check "plain list: each item under DST/<name>" diff -r "$L1" "$LD/l1"
check "plain list: file:// item" diff -r "$L2" "$LD/l2"
check "plain list: one line per item" test "$(grep -c '^sync run 1: ok' "$T/l.out")" -eq 2
echo "$T/nonexistent-item" >>"$T/models.ini"
sync_ --list "$T/models.ini" "$LD" --once >"$T/l2.out" 2>"$T/l2.err"
check "a failing item fails the run, the others still sync" \
	test $? -eq 1 -a "$(grep -c '^sync run 1: ok' "$T/l2.out")" -eq 2
check "...with one error line for it" test "$(grep -c '^syncbit: .*nonexistent-item' "$T/l2.err")" -eq 1
printf 'acme/ok\nthis is not an item\n' >"$T/bad.ini"
expect_fail "malformed list: exit 2 naming the line" 2 "bad.ini: line 2" \
	"$SYNCBIT" sync --list "$T/bad.ini" "$LD" --data "$DATA"
expect_fail "--name with --list: usage error" 2 "syncbit: --name does not go with --list" \
	"$SYNCBIT" sync --list "$T/models.ini" "$LD" --name x --data "$DATA"
echo '[{"platform": "github", "organization": "a", "model_name": "b"}]' >"$T/bad.json"
expect_fail "JSON list with an unknown platform: exit 2" 2 "item 1: platform 'github'" \
	"$SYNCBIT" sync --list "$T/bad.json" "$LD" --data "$DATA"

# Hub items, served by the hub fixture (hf:// and ms://).
HR=$T/hub
mkdir -p "$HR/models/acme/llm" "$HR/datasets/acme/corpus" "$HR/models/qwen/small"
head -c 200000 /dev/urandom >"$HR/models/acme/llm/model.safetensors"
echo '{"model_type": "llama"}' >"$HR/models/acme/llm/config.json"
mkdir -p "$HR/models/acme/llm/tok"; echo vocab >"$HR/models/acme/llm/tok/vocab.txt"
echo 'a,b' >"$HR/datasets/acme/corpus/train.csv"
echo '{}' >"$HR/models/qwen/small/config.json"
python3 "$FIXTURES/hub_server.py" --root "$HR" >"$T/hub.ports" 2>"$T/hub.err" &
PIDS+=($!)
wait_for 10 test -s "$T/hub.ports"
API=$(cut -d' ' -f1 "$T/hub.ports")
cat >"$T/hk.json" <<JSON
[
  {"platform": "huggingface", "organization": "acme", "model_name": "llm"},
  {"platform": "huggingface", "organization": "acme", "dataset_name": "corpus"},
  {"platform": "modelscope", "organization": "qwen", "model_name": "small"}
]
JSON
HD=$T/hub-dst
HF_ENDPOINT=http://127.0.0.1:$API MODELSCOPE_ENDPOINT=http://127.0.0.1:$API HF_HOME=$T/hf-home \
	"$SYNCBIT" sync --list "$T/hk.json" "$HD" --once --delete --json --data "$DATA" >"$T/hk.out" 2>"$T/hk.err"
check "JSON list of hub items: exit 0" test $? -eq 0
check "hf model in DST/org/name" cmp "$HR/models/acme/llm/model.safetensors" "$HD/acme/llm/model.safetensors"
check "hf dataset in DST/org/name" cmp "$HR/datasets/acme/corpus/train.csv" "$HD/acme/corpus/train.csv"
check "--delete keeps the directories a files-only listing implies" cmp "$HR/models/acme/llm/tok/vocab.txt" "$HD/acme/llm/tok/vocab.txt"
check "ms model in DST/org/name" cmp "$HR/models/qwen/small/config.json" "$HD/qwen/small/config.json"
check "one JSON line per item" test "$(grep -c '"status":"ok"' "$T/hk.out")" -eq 3

# The oci:// dataset flags go with one oci:// SRC only.
expect_fail "sync --platform with a non-oci SRC is a usage error" 2 "oci:// sources only" \
	"$SYNCBIT" sync "$T" "$T/x" --once --platform linux/arm64 --data "$DATA"
expect_fail "sync --tag-regex with --list is a usage error" 2 "do not go with --list" \
	"$SYNCBIT" sync --list "$T/hk.json" "$T/x" --once --tag-regex cann --data "$DATA"
expect_fail "sync: a malformed --registry-user is a usage error" 2 "registry-user: expected user:password" \
	"$SYNCBIT" sync oci://127.0.0.1:1/a/b:c "$T/x" --once --registry-user alice --data "$DATA"
check "nothing was made by the refused syncs" test ! -e "$T/x"

finish
