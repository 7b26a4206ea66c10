#!/usr/bin/env bash
# Bad input: one clear line on stderr, exit 1 (2 for usage), and nothing
# already on disk lost or half-written.
. "$(dirname "$0")/lib.sh"

DATA=$T/data S=$T/src
mkdir -p "$S"; head -c 300000 /dev/urandom >"$S/a.bin"; echo hi >"$S/b.txt"

expect_fail "no arguments is a usage error" 2 "usage|pull takes" "$SYNCBIT" pull
expect_fail "unknown flag is a usage error" 2 "unknown option" "$SYNCBIT" pull "$S" --bogus
expect_fail "bad block size is a usage error" 2 "block-size" "$SYNCBIT" pull "$S" --block-size 3000
expect_fail "unknown command is a usage error" 2 "unknown command" "$SYNCBIT" frobnicate
expect_fail "missing source" 1 "No such file" "$SYNCBIT" pull "$T/nope" --to "$T/d" --data "$DATA"
expect_fail "unsupported scheme" 1 "scheme" "$SYNCBIT" pull "ftp://example/x" --to "$T/d" --data "$DATA"
expect_fail "a malformed source is a usage error saying what a source looks like" 2 \
	"pull: 's3://' is not a source: expected s3://BUCKET\[/PREFIX\]" "$SYNCBIT" pull s3:// --to "$T/d" --data "$DATA"
expect_fail "so is a hub source without its //" 2 "expected hf://\[datasets/\]ORG/NAME" \
	"$SYNCBIT" pull hf:org/model --to "$T/d" --data "$DATA"
check "--version is the program's version, in every command" bash -c "'$SYNCBIT' --version | grep -q '^syncbit [0-9.]* (.*)\$' && '$SYNCBIT' pull --version | grep -q '^syncbit [0-9.]* (' && '$SYNCBIT' dataset add --version | grep -q '^syncbit '"
"$SYNCBIT" version >"$T/version"
check "version names the commit and the libraries" bash -c "grep -Eq '^syncbit [0-9.]+ \(.+\)\$' '$T/version' && for l in libuv lmdb libcurl openssl libsodium jansson libyaml protobuf-c xxhash; do grep -q \"^\$l [0-9A-Za-z]\" '$T/version' || exit 1; done"
check "short flags: -q -j -o" bash -c "'$SYNCBIT' pull '$S' -q -j 2 -o '$T/short' --data '$DATA' >'$T/short.out' && cmp '$S/a.bin' '$T/short/a.bin' && test ! -s '$T/short.out'"
"$SYNCBIT" pull "$S" --to "$T/js" --data "$DATA" --json >"$T/js.out"
check "JSON seconds are rounded to the millisecond" grep -Eq '"seconds":[0-9]+(\.[0-9]{1,3})?[,}]' "$T/js.out"
expect_fail "one attempt is 'attempt'" 1 "http://127.0.0.1:1/x: HEAD .*\(gave up after 1 attempt\)$" \
	"$SYNCBIT" pull http://127.0.0.1:1/x --retries 0 --to "$T/d" --data "$DATA"
check "one file is 'pulled 1 file'" bash -c "'$SYNCBIT' pull '$S/b.txt' --to '$T/one' --data '$DATA' | grep -q '^pulled 1 file, '"
printf 'jobs: [1\nto: x\n' >"$T/bad.yaml"
expect_fail "malformed config names file and line" 2 "bad.yaml:[0-9]+" "$SYNCBIT" pull "$S" --config "$T/bad.yaml" --data "$DATA"
printf 'blok-size: 1M\n' >"$T/typo.yaml"
expect_fail "unknown config key" 2 "blok-size" "$SYNCBIT" pull "$S" --config "$T/typo.yaml" --data "$DATA"
printf 'to: %s\njobs: 2\n' "$T/fromcfg" >"$T/good.yaml"
check "config file supplies flags" bash -c "$(printf %q "$SYNCBIT") pull '$S' --config '$T/good.yaml' --data '$DATA' && cmp '$S/a.bin' '$T/fromcfg/a.bin'"
check "env overrides the config file" bash -c "SYNCBIT_TO='$T/fromenv' $(printf %q "$SYNCBIT") pull '$S' --config '$T/good.yaml' --data '$DATA' && test -f '$T/fromenv/a.bin' "
check "SYNCBIT_DATA chooses the data directory" bash -c "SYNCBIT_DATA='$T/envdata' $(printf %q "$SYNCBIT") pull '$S' --to '$T/d0' && test -d '$T/envdata/index'"

# Target not writable: a read-only filesystem.
mkdir -p "$T/ro"
if mount -t tmpfs -o ro,size=1m tmpfs "$T/ro" 2>/dev/null; then
	CLEANUPS+=("umount -l '$T/ro'")
	expect_fail "read-only target" 1 "Read-only file system" "$SYNCBIT" pull "$S" --to "$T/ro/out" --data "$DATA"
else
	skip "read-only target" "mount not permitted here"
fi
mkdir -p "$T/notdir"; : >"$T/notdir/file"
expect_fail "target under a regular file" 1 "Not a directory" "$SYNCBIT" pull "$S" --to "$T/notdir/file/sub" --data "$DATA"

# Disk full: data and target on a 24 MiB tmpfs. A first, small version is
# published; a second, too large one must fail without touching it.
mkdir -p "$T/small"
if mount -t tmpfs -o size=24m tmpfs "$T/small" 2>/dev/null; then
	CLEANUPS+=("umount -l '$T/small'")
	SD=$T/small/data DD=$T/small/dst
	check "small version fits" "$SYNCBIT" pull "$S" --to "$DD" --data "$SD"
	head -c $((40 * 1024 * 1024)) /dev/urandom >"$S/a.bin"
	expect_fail "disk full is one clear line" 1 "no space left on the cache $SD \(storing a.bin: No space left" \
		"$SYNCBIT" pull "$S" --to "$DD" --data "$SD"
	check "the published file is still the old, complete version" test "$(stat -c %s "$DD/a.bin")" -eq 300000
	check "no temp files left in the target" test -z "$(find "$DD" -name '.syncbit-tmp*')"
	head -c 300000 /dev/urandom >"$S/a.bin"
	check "after freeing the input, the pull succeeds" "$SYNCBIT" pull "$S" --to "$DD" --data "$SD"
	check "new content published" cmp "$S/a.bin" "$DD/a.bin"
	# A file finished before the disk filled is indexed (the unfinished
	# ones make room first), so the next pull reuses it.
	S2=$T/src2
	mkdir -p "$S2"
	head -c $((1024 * 1024)) /dev/urandom >"$S2/done.bin"
	head -c $((40 * 1024 * 1024)) /dev/urandom >"$S2/zz-big.bin"
	expect_fail "disk full again" 1 "no space left on the cache" \
		"$SYNCBIT" pull "$S2" --to "$DD/two" --data "$SD/two"
	rm "$S2/zz-big.bin"
	"$SYNCBIT" pull "$S2" --to "$DD/two" --data "$SD/two" --json >"$T/reuse.json"
	check "a file finished before the disk filled is reused" \
		test "$(json_field "$T/reuse.json" bytes_reused)" -eq $((1024 * 1024))
else
	skip "disk full" "mount not permitted here"
fi

# A full target on another filesystem, written by the read/write copy that
# stands in where copy_file_range cannot cross filesystems: it says no
# space, and where, not "Input/output error".
mkdir -p "$T/tiny"
if cc -shared -fPIC -o "$T/nocfr.so" "$FIXTURES/no_copy_file_range.c" 2>"$T/cc.err" &&
	mount -t tmpfs -o size=2500k tmpfs "$T/tiny" 2>/dev/null; then
	CLEANUPS+=("umount -l '$T/tiny'")
	head -c $((5 * 1024 * 1024)) /dev/urandom >"$T/big5"
	mkdir -p "$T/src5" && mv "$T/big5" "$T/src5/big.bin"
	PRE=$T/nocfr.so
	asan=$(ldd "$SYNCBIT" 2>/dev/null | awk '/libasan/ { print $3 }')
	[ -n "$asan" ] && PRE="$asan:$PRE" # the sanitizer build wants its runtime first
	expect_fail "a full target says so, naming it" 1 "no space left on $T/tiny/out \(copy big.bin: No space left" \
		env LD_PRELOAD="$PRE" "$SYNCBIT" pull "$T/src5" --to "$T/tiny/out" --data "$T/data5"
	check "  ... not an I/O error" sh -c "! grep -q 'Input/output' '$T/.err'"
	check "no temp files left in the full target" test -z "$(find "$T/tiny" -name '.syncbit-tmp*')"
else
	skip "full target" "mount or cc not available here: $(head -1 "$T/cc.err")"
fi

# Corruption: flip a byte in a cache object keeping its mtime (so only a
# re-hash can tell), verify finds it, and the next pull fetches it again.
DATA2=$T/data2
check "pull for corruption test" "$SYNCBIT" pull "$S" --to "$T/c" --data "$DATA2" --block-size 64KiB
obj=$(find "$DATA2/objects" -type f -size 300000c | head -1)
touch -r "$obj" "$T/stamp"
flip_byte "$obj" 70000
touch -r "$T/stamp" "$obj"
expect_fail "verify detects a corrupt block" 1 "1 bad file of 2; dropped from the cache" "$SYNCBIT" verify "$T/c" --data "$DATA2"
check "... and names the bad file once" test "$(cat "$T/.out" "$T/.err" | grep -c "$T/c/a.bin: block 1 does not match")" -eq 1
"$SYNCBIT" pull "$S" --to "$T/c" --data "$DATA2" --block-size 64KiB --json >"$T/pc"
check "the next pull refetches the corrupt file" cmp "$S/a.bin" "$T/c/a.bin"
check "refetch counted as source bytes" test "$(json_field "$T/pc" bytes_read)" -ge 300000
check "verify is clean again" "$SYNCBIT" verify "$T/c" --data "$DATA2"
expect_fail "verify of an unknown dir" 1 "no dataset" "$SYNCBIT" verify "$T" --data "$DATA2"

# gc evicts unpinned objects only.
check "pulling a new version unpins the old objects" "$SYNCBIT" pull "$S" --to "$T/c" --data "$DATA2"
"$SYNCBIT" gc --data "$DATA2" --cache-size 0 --json >"$T/gc0"
check "gc --cache-size 0 is no limit: nothing evicted" test "$(json_field "$T/gc0" evicted_objects)" -eq 0
"$SYNCBIT" gc --data "$DATA2" --json >"$T/gc"
check "gc evicts unpinned objects" test "$(json_field "$T/gc" evicted_objects)" -ge 1
check "gc keeps pinned data" test "$(json_field "$T/gc" used)" -eq "$(json_field "$T/gc" pinned)"
check "published files survive gc" cmp "$S/a.bin" "$T/c/a.bin"

# Pins of standalone pulls: a deleted target leaves a stale pin that gc
# reports and gc --stale drops; rm forgets a pull by name or directory.
R=$T/rmdata S2=$T/rmsrc
mkdir -p "$S2"; head -c 50000 /dev/urandom >"$S2/other.bin"
"$SYNCBIT" pull "$S2" --to "$T/r1" --data "$R" -q && "$SYNCBIT" pull "$S" --to "$T/r2" --data "$R" --name keep -q
rm -rf "$T/r1"
"$SYNCBIT" gc --data "$R" --json >"$T/gcs"
check "gc keeps the pin of a deleted target and reports it as stale" \
	test "$(json_field "$T/gcs" evicted_objects) $(json_field "$T/gcs" stale)" = "0 ['pull:$T/r1']"
check "cache ls marks it" bash -c "'$SYNCBIT' cache ls --data '$R' | grep -q '^pull:$T/r1 .* stale  file://$S2 -> $T/r1\$'"
"$SYNCBIT" gc --data "$R" --stale --json >"$T/gcs2"
check "gc --stale drops it and evicts what it pinned" test "$(json_field "$T/gcs2" evicted_bytes)" -eq 50000
"$SYNCBIT" cache ls --data "$R" --json >"$T/ls"
check "cache ls --json: one pull left, all pinned" test "$(tail -1 "$T/ls" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["datasets"]), d["cache"]["evictable"])')" = "1 0"
check "rm NAME unpins a pull" bash -c "'$SYNCBIT' rm keep --data '$R' | grep -q '^forgot keep '"
expect_fail "rm of a pull that is not there" 1 "rm: $T/r2: no pull of that name or into that directory" "$SYNCBIT" rm "$T/r2" --data "$R"
"$SYNCBIT" pull "$S2" --to "$T/r3" --data "$R" -q
"$SYNCBIT" rm "$T/r3" --purge --data "$R" --json >"$T/rm"
check "rm DIR --purge evicts its objects" test "$(json_field "$T/rm" evicted_bytes)" -eq 50000
check "... and leaves the published files" cmp "$S2/other.bin" "$T/r3/other.bin"

# verify and gc on the data directory of a running agent: told at once who
# holds it, instead of waiting silently for as long as the agent runs.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/token"
chmod 600 "$T/token"
"$SYNCBIT" daemon --scheduler 127.0.0.1:1 --listen 127.0.0.1:0 --data "$DATA2" --target "$T/dt" \
	--node lockholder --token-file "$T/token" --socket "$T/lock.sock" >"$T/lockd.log" 2>&1 &
LOCKD=$!
PIDS+=($LOCKD)
for _ in $(seq 100); do [ -S "$T/lock.sock" ] && break; sleep 0.1; done
expect_fail "verify on a running agent's data says so at once" 1 \
	"verify: $DATA2 is in use by a running agent \(pid $LOCKD\); stop it" \
	timeout 10 "$SYNCBIT" verify "$T/c" --data "$DATA2"
expect_fail "gc on a running agent's data says so at once" 1 \
	"gc: $DATA2 is in use by a running agent \(pid $LOCKD\)" timeout 10 "$SYNCBIT" gc --data "$DATA2"
kill -TERM $LOCKD; wait $LOCKD 2>/dev/null
check "verify runs once the agent stopped" "$SYNCBIT" verify "$T/c" --data "$DATA2"

# Names with a newline and an ESC (a terminal escape): every error and log
# line stays one line, the control characters written as \n and \xNN.
E=$T/esc
mkdir -p "$E/link" "$E/fifo"
echo ok >"$E/fifo/plain.txt"
ln -s /etc/passwd "$E/link/$(printf 'evil\nname\033[31m')"
mkfifo "$E/fifo/$(printf 'pipe\nx\033[2J')"
expect_fail "an error naming a file with a newline and an ESC is one escaped line" 1 \
	'evil\\nname\\x1b\[31m.*escapes' "$SYNCBIT" pull "$E/link" --to "$T/e1" --data "$DATA"
check "  ... without a raw ESC or a second line" bash -c "! grep -q \$'\\033' '$T/.err' && test \$(wc -l <'$T/.err') -eq 1"
"$SYNCBIT" pull "$E/fifo" --to "$T/e2" --data "$DATA" >/dev/null 2>"$T/esc.err"
check "a log line naming such a file is one escaped line" \
	bash -c "test \$(wc -l <'$T/esc.err') -eq 1 && grep -q 'pipe\\\\nx\\\\x1b\[2J: skipping special file' '$T/esc.err' && ! grep -q \$'\\033' '$T/esc.err'"

# Sources that claim more than a dataset may hold (2^62 bytes from an HTTP
# server or in an S3 listing): refused with one line naming the source, the
# limit and the claim, before anything is sized from the claim; a core dump
# would exit 134. The scheduler refuses them the same way, stays up, and
# restarts (with --refresh) while such a source stays oversized.
unset AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_SESSION_TOKEN AWS_PROFILE AWS_ACCESS_KEY_ID \
	AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION
export AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=$T/no-aws-config \
	AWS_SHARED_CREDENTIALS_FILE=$T/no-aws-credentials
HUGE=4611686018427387904 # 2^62
L=$T/limits
mkdir -p "$L/www" "$L/s3/big/m" "$L/s3/grow/m" "$L/tree"
echo hi >"$L/www/big.bin"; echo hi >"$L/s3/big/m/a.bin"; echo hi >"$L/s3/grow/m/a.bin"
head -c 100000 /dev/urandom >"$L/tree/a"; head -c 100000 /dev/urandom >"$L/tree/b"

# fixture NAME ARGS...: start tests/fixtures/NAME, which prints its port; sets FPORT.
fixture() {
	local name=$1; shift
	python3 "$FIXTURES/$name" "$@" >"$L/$name.port" 2>"$L/$name.log" &
	PIDS+=($!)
	for _ in $(seq 100); do [ -s "$L/$name.port" ] && break; sleep 0.1; done
	FPORT=$(head -1 "$L/$name.port")
}
fixture faulty_http.py --dir "$L/www"
HURL=http://127.0.0.1:$FPORT/m/claim=$HUGE/big.bin
fixture s3_fixture.py --root "$L/s3"
S3E=http://127.0.0.1:$FPORT
curl -sf -X POST "$S3E/__fault?bucket=big&size=$HUGE" >/dev/null

expect_fail "http: a server claiming 2^62 bytes is refused in one line" 1 \
	"big.bin claims $HUGE bytes \(4.0 EiB\), over the limit of 4.0 TiB per file \(--max-file-size\)" \
	"$SYNCBIT" pull "$HURL" --to "$L/out1" --data "$L/data"
check "nothing is published" test ! -e "$L/out1"
expect_fail "s3: a listing claiming 2^62 bytes is refused in one line" 1 \
	"s3://big/m/: a.bin claims $HUGE bytes \(4.0 EiB\), over the limit of 4.0 TiB per file" \
	"$SYNCBIT" pull s3://big/m/ --to "$L/out2" --data "$L/data" --s3-endpoint "$S3E"
check "nothing is published" test ! -e "$L/out2"
expect_fail "--max-files" 1 "more entries than the limit of 1 per dataset \(--max-files\)" \
	"$SYNCBIT" pull "$L/tree" --max-files 1 --to "$L/out3" --data "$L/data"
expect_fail "--max-dataset-size" 1 \
	"2 files claim 200000 bytes \(195 KiB\), over the limit of 100 KiB per dataset \(--max-dataset-size\)" \
	"$SYNCBIT" pull "$L/tree" --max-dataset-size 100KiB --to "$L/out3" --data "$L/data"
expect_fail "--max-file-size" 1 "a claims 100000 bytes \(97.7 KiB\), over the limit of 1.0 KiB per file" \
	"$SYNCBIT" pull "$L/tree" --max-file-size 1KiB --to "$L/out3" --data "$L/data"
check "nothing is published" test ! -e "$L/out3"
check "a tree within the limits given is pulled" "$SYNCBIT" pull "$L/tree" --max-files 2 \
	--max-dataset-size 200000 --max-file-size 100000 --to "$L/out3" --data "$L/data"
expect_fail "--max-files above what a manifest holds is a usage error" 2 "max-files" \
	"$SYNCBIT" pull "$L/tree" --max-files 4194305 --data "$L/data"
expect_fail "--max-dataset-size 0 is a usage error" 2 "max-dataset-size" \
	"$SYNCBIT" pull "$L/tree" --max-dataset-size 0 --data "$L/data"

SD=$L/sched SPORT=$(free_port) HPORT=$(free_port)
A=(--scheduler "127.0.0.1:$SPORT" --token-file "$SD/join-token")
start_sched() {
	"$SYNCBIT" scheduler --listen "127.0.0.1:$SPORT" --data "$SD" --http "127.0.0.1:$HPORT" \
		--refresh 1 --s3-endpoint "$S3E" --log-level info >>"$L/sched.log" 2>&1 &
	SPID=$!
	PIDS+=("$SPID")
	for _ in $(seq 100); do
		curl -sf "http://127.0.0.1:$HPORT/healthz" >/dev/null && return 0
		kill -0 "$SPID" 2>/dev/null || break
		sleep 0.1
	done
	return 1
}
stop_sched() {
	kill -TERM "$SPID" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
	wait "$SPID" 2>/dev/null
}
# versions: the datasets' names and versions, as the scheduler answers.
versions() {
	"$SYNCBIT" dataset ls "${A[@]}" --json | tail -1 | python3 -c \
		'import json,sys; print(" ".join(d["name"] + "=" + d["version"] for d in json.load(sys.stdin)["datasets"]))' \
		2>/dev/null
}

check "the scheduler starts" start_sched
check "a source within the limits is added" "$SYNCBIT" dataset add grow s3://grow/m/ "${A[@]}"
GOOD=$(versions)
# The source then claims 2^62 bytes: every refresh (1 s) refuses it.
curl -sf -X POST "$S3E/__fault?bucket=grow&size=$HUGE" >/dev/null
for _ in $(seq 50); do grep -q "dataset grow: refresh: .*claims $HUGE bytes" "$L/sched.log" && break; sleep 0.1; done
check "a refresh finding 2^62 bytes is a warning" \
	grep -q "dataset grow: refresh: source s3://grow/m/: a.bin claims $HUGE bytes" "$L/sched.log"
check "the scheduler is still running" kill -0 "$SPID"
stop_sched
check "the scheduler restarts while the source claims 2^62 bytes" start_sched
sleep 2.5 # past two refreshes
check "and keeps running through its refreshes" kill -0 "$SPID"
expect_fail "dataset add of an http server claiming 2^62 bytes is refused" 1 \
	"source http://127.0.0.1:[0-9]+/m/claim=$HUGE/big.bin: big.bin claims $HUGE bytes .*--max-file-size" \
	"$SYNCBIT" dataset add huge "$HURL" "${A[@]}"
expect_fail "dataset add of an s3 listing claiming 2^62 bytes is refused" 1 \
	"source s3://big/m/: a.bin claims $HUGE bytes" "$SYNCBIT" dataset add huge s3://big/m/ "${A[@]}"
check "the scheduler is still running" kill -0 "$SPID"
check "it answers: the first dataset at its last good version, nothing of the others" \
	test "$(versions)" = "$GOOD"
stop_sched
check "no sanitizer reports" bash -c "! grep -Eq 'Sanitizer|runtime error' '$L/sched.log'"

finish
