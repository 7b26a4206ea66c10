#!/usr/bin/env bash
# The scheduler on loopback driven by the admin commands and its HTTP API,
# without agents: datasets from a local directory and from nginx, listings,
# metrics, a source change picked up by --refresh, restart persistence, and
# what is refused (wrong token, bad names, bad sources, a second scheduler
# on the same data directory).
. "$(dirname "$0")/lib.sh"

SD=$T/sched S=$T/src W=$T/www
mkdir -p "$S/sub" "$W"
head -c 300000 /dev/urandom >"$S/a.bin"; echo hi >"$S/sub/b.txt"
head -c 200000 /dev/urandom >"$W/model.bin"
start_nginx "$W"
PORT=$(free_port) HPORT=$(free_port)
ADDR=127.0.0.1:$PORT HTTP=http://127.0.0.1:$HPORT
A=(--scheduler "$ADDR" --token-file "$SD/join-token")

start_sched() {
	"$SYNCBIT" scheduler --listen "$ADDR" --data "$SD" --http "127.0.0.1:$HPORT" \
		--refresh 1 --log-level info >>"$T/sched.log" 2>&1 &
	SPID=$!
	PIDS+=("$SPID")
	for _ in $(seq 100); do
		curl -sf "$HTTP/healthz" >/dev/null && return 0
		kill -0 "$SPID" 2>/dev/null || break
		sleep 0.1
	done
	echo "scheduler did not start" >&2; tail -5 "$T/sched.log" >&2; return 1
}

stop_sched() {
	kill -TERM "$SPID" 2>/dev/null
	for _ in $(seq 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
	wait "$SPID" 2>/dev/null
	SRC=$?
}

# jq-like: a Python expression over the last JSON line of FILE, as `d`.
jget() {
	tail -1 "$1" | python3 -c "import json,sys; d=json.load(sys.stdin); v=$2; print(v if not isinstance(v,bool) else str(v).lower())"
}

start_sched || { bad "scheduler starts"; finish; exit 1; }
check "join token written with mode 0600" test "$(stat -c %a "$SD/join-token")" = 600

"$SYNCBIT" dataset add dir "$S" "${A[@]}" --json >"$T/add1" 2>"$T/add1.err"
check "dataset add of a local directory" test "$(jget "$T/add1" 'd["files"]')" = 2
check "its version is a 64-hex listing id" grep -Eq '"version":"[0-9a-f]{64}"' "$T/add1"
check "its size is the source's" test "$(jget "$T/add1" 'd["bytes"]')" -eq 300003
V1=$(jget "$T/add1" 'd["version"]')
"$SYNCBIT" dataset add dir "$S" "${A[@]}" --json >"$T/add2"
check "adding it again changes nothing" test "$(jget "$T/add2" 'd["changed"]')" = false
check "same version again" test "$(jget "$T/add2" 'd["version"]')" = "$V1"
expect_fail "adding the name again with another selector is refused, naming what it has" 1 \
	"dataset dir exists with source file://$S and selector \(every node\).*--replace" \
	"$SYNCBIT" dataset add dir "$S" "${A[@]}" --selector gpu=h100,zone=a
check "a selector change by update needs no new version" bash -c "'$SYNCBIT' dataset update dir ${A[*]} --selector gpu=h100,zone=a --json >'$T/add3' && grep -q '\"selector\":{\"gpu\":\"h100\",\"zone\":\"a\"}' '$T/add3' && grep -q '\"version\":\"$V1\"' '$T/add3'"
check "update prints what changes" bash -c "'$SYNCBIT' dataset update dir ${A[*]} --selector gpu=h100 | grep -qx 'dataset dir: selector gpu=h100,zone=a -> gpu=h100'"
check "update of the same selector is no change" bash -c "'$SYNCBIT' dataset update dir ${A[*]} --selector gpu=h100 | grep -qx 'dataset dir: unchanged'"
check "the selector given by update is kept" bash -c "'$SYNCBIT' dataset update dir ${A[*]} --selector gpu=h100,zone=a >/dev/null && '$SYNCBIT' dataset ls ${A[*]} --json | tail -1 | grep -q '\"selector\":{\"gpu\":\"h100\",\"zone\":\"a\"}'"
expect_fail "update of an unknown dataset" 1 "no dataset named 'nosuch'" "$SYNCBIT" dataset update nosuch --selector a=b "${A[@]}"
mkdir -p "$T/src2"; echo other >"$T/src2/x"
"$SYNCBIT" dataset add rep "$S" "${A[@]}" >/dev/null
expect_fail "add of an existing name with another source is refused" 1 "dataset rep exists with source file://$S" \
	"$SYNCBIT" dataset add rep "$T/src2" "${A[@]}"
check "--replace redefines it" bash -c "'$SYNCBIT' dataset add rep '$T/src2' --replace ${A[*]} --json | tail -1 | grep -q '\"source\":\"file://$T/src2\",'"
check "update --source lists the new source and says so" bash -c "'$SYNCBIT' dataset update rep --source '$S' ${A[*]} | grep -qx 'dataset rep: source file://$T/src2 -> file://$S'"
check "update --block-size" bash -c "'$SYNCBIT' dataset update rep --block-size 64KiB ${A[*]} --json | tail -1 | grep -q '\"block_size\":65536,'"
"$SYNCBIT" dataset rm rep "${A[@]}" >/dev/null
"$SYNCBIT" dataset add web "http://127.0.0.1:$NGINX_PORT/model.bin" --block-size 64KiB "${A[@]}" --json >"$T/web"
check "dataset add of an http source" test "$(jget "$T/web" 'd["blocks"]')" -eq 4
check "human output of dataset add (one file)" bash -c "'$SYNCBIT' dataset add web 'http://127.0.0.1:$NGINX_PORT/model.bin' --block-size 64KiB ${A[*]} | grep -q 'dataset web: version [0-9a-f]\{12\} (unchanged), 1 file, 195 KiB; assigned to 0 nodes'"

check "a relative SOURCE is the caller's directory" bash -c "cd '$T' && '$SYNCBIT' dataset add rel src ${A[*]} --json | tail -1 | grep -q '\"source\":\"file://$T/src\"' && '$SYNCBIT' dataset rm rel ${A[*]}"
expect_fail "http 404 is one line naming the URL" 1 "source http://127.0.0.1:$NGINX_PORT/nope: HTTP 404" \
	"$SYNCBIT" dataset add x "http://127.0.0.1:$NGINX_PORT/nope" "${A[@]}"
expect_fail "a missing directory" 1 "No such file or directory" "$SYNCBIT" dataset add x "$T/nope" "${A[@]}"
expect_fail "an unsupported scheme" 1 "dataset add: source ftp://h/x" "$SYNCBIT" dataset add x ftp://h/x "${A[@]}"
expect_fail "a name starting with a dot" 1 "dataset name '.x'" "$SYNCBIT" dataset add .x "$S" "${A[@]}"
expect_fail "a name with a slash" 1 "dataset name 'a/b'" "$SYNCBIT" dataset add a/b "$S" "${A[@]}"
expect_fail "a malformed selector is a usage error" 2 "selector: 'zone' is not k=v" "$SYNCBIT" dataset add x "$S" --selector zone "${A[@]}"
expect_fail "a bad block size is a usage error" 2 "block-size" "$SYNCBIT" dataset add x "$S" --block-size 3000 "${A[@]}"
expect_fail "dataset add --tag-regex on a non-oci source is a usage error" 2 "oci:// sources only" \
	"$SYNCBIT" dataset add x "$S" --tag-regex cann "${A[@]}"
expect_fail "dataset add --tag-regex with a :tag is a usage error" 2 "without a :tag" \
	"$SYNCBIT" dataset add x oci://127.0.0.1:1/a/b:c --tag-regex cann "${A[@]}"
expect_fail "scheduler: a malformed --registry-user is a usage error" 2 "registry-user: expected user:password" \
	"$SYNCBIT" scheduler --listen 127.0.0.1:0 --data "$T/sched2" --registry-user alice
for c in scheduler daemon pull sync; do
	check "$c --help lists the source flags" bash -c "'$SYNCBIT' $c --help | grep -q -- '--s3-endpoint URL' && '$SYNCBIT' $c --help | grep -q -- '--registry-user USER:PASSWORD'"
done
check "dataset add --help lists --platform and --tag-regex" bash -c "'$SYNCBIT' dataset add --help | grep -q -- '^ *--platform OS/ARCH\[/VARIANT\]|all$' && '$SYNCBIT' dataset add --help | grep -q -- '^ *--tag-regex ERE '"
check "dataset add --help lists --replace" bash -c "'$SYNCBIT' dataset add --help | grep -q -- '--replace '"
check "dataset --help lists the subcommands, exit 0" bash -c "'$SYNCBIT' dataset --help >'$T/dh' && grep -q '^  update ' '$T/dh' && grep -q '^  rm ' '$T/dh'"
check "node --help lists the subcommands, exit 0" bash -c "'$SYNCBIT' node --help >'$T/nh' && grep -q '^  ls ' '$T/nh' && grep -q '^  rm ' '$T/nh'"
check "help lists node rm" bash -c "'$SYNCBIT' help | grep -q 'syncbit node rm NAME'"
check "status --help lists --scheduler" bash -c "'$SYNCBIT' status --help | grep -q -- '--scheduler HOST:PORT'"
expect_fail "--scheduler is required" 2 "scheduler HOST:PORT is required" "$SYNCBIT" dataset ls --token-file "$SD/join-token"
expect_fail "unknown dataset subcommand" 2 "dataset: unknown subcommand 'frob'" "$SYNCBIT" dataset frob
expect_fail "a malformed source is a usage error with the reason" 2 "'s3://' is not a source: expected s3://BUCKET" \
	"$SYNCBIT" dataset add x s3:// "${A[@]}"

python3 -c "print('ab' * 32)" >"$T/wrong-token"; chmod 600 "$T/wrong-token"
expect_fail "a wrong token is refused" 1 "authentication failed" \
	"$SYNCBIT" dataset ls --scheduler "$ADDR" --token-file "$T/wrong-token"
expect_fail "a missing token file" 1 "no-such-token" \
	"$SYNCBIT" dataset ls --scheduler "$ADDR" --token-file "$T/no-such-token"
expect_fail "no scheduler listening" 1 "127.0.0.1:1: .*refused" \
	"$SYNCBIT" node ls --scheduler 127.0.0.1:1 --token-file "$SD/join-token"

"$SYNCBIT" dataset ls "${A[@]}" --json >"$T/ls"
check "dataset ls lists both" test "$(jget "$T/ls" '",".join(x["name"] for x in d["datasets"])')" = dir,web
check "dataset ls table" bash -c "'$SYNCBIT' dataset ls ${A[*]} | head -1 | grep -q '^NAME  *VERSION  *FILES'"
"$SYNCBIT" node ls "${A[@]}" --json >"$T/nodes"
check "node ls with no agents" test "$(jget "$T/nodes" 'len(d["nodes"])')" -eq 0
"$SYNCBIT" status "${A[@]}" --json >"$T/status"
check "status covers every dataset" test "$(jget "$T/status" 'len(d["datasets"])')" -eq 2
check "status of one dataset" bash -c "'$SYNCBIT' status web ${A[*]} --json | tail -1 | grep -q '\"datasets\":\[{\"name\":\"web\"'"

check "GET /healthz" bash -c "curl -sf '$HTTP/healthz' | grep -qx ok"
curl -sf "$HTTP/api/v1/datasets" >"$T/api"
check "GET /api/v1/datasets is the same document" test "$(jget "$T/api" 'd["datasets"][1]["version"]')" = "$(jget "$T/ls" 'd["datasets"][1]["version"]')"
check "GET /api/v1/nodes" bash -c "curl -sf '$HTTP/api/v1/nodes' | grep -q '\"nodes\":\[\]'"
check "GET /api/v1/status" bash -c "curl -sf '$HTTP/api/v1/status' | grep -q '\"origin_bytes\":0'"
curl -sf "$HTTP/metrics" >"$T/metrics"
check "metrics: blocks per dataset" grep -qx 'syncbit_dataset_blocks{dataset="web"} 4' "$T/metrics"
check "metrics: nodes by state" grep -qx 'syncbit_nodes{state="connected"} 0' "$T/metrics"
check "metrics: origin bytes" grep -q '^syncbit_cluster_origin_bytes_total{dataset="dir"} 0$' "$T/metrics"
check "unknown path is 404" test "$(curl -s -o /dev/null -w '%{http_code}' "$HTTP/nope")" = 404

# --refresh 1: a changed source becomes a new version within seconds. The
# file appears whole (renamed in), so no listing sees it half written.
head -c 1000 /dev/urandom >"$T/new.bin.tmp" && mv "$T/new.bin.tmp" "$S/new.bin"
for _ in $(seq 100); do
	"$SYNCBIT" dataset ls "${A[@]}" --json >"$T/ls2"
	[ "$(jget "$T/ls2" 'd["datasets"][0]["version"]')" != "$V1" ] && break
	sleep 0.1
done
check "a source change makes a new version" test "$(jget "$T/ls2" 'd["datasets"][0]["files"]')" -eq 3
V2=$(jget "$T/ls2" 'd["datasets"][0]["version"]')

expect_fail "a second scheduler on the same data is refused" 1 "another scheduler" \
	"$SYNCBIT" scheduler --listen 127.0.0.1:0 --data "$SD"
expect_fail "a bad --listen" 1 "listen nonsense: expected HOST:PORT" "$SYNCBIT" scheduler --listen nonsense --data "$T/other"

# Restart: same datasets, versions and selectors.
stop_sched
check "the scheduler stops on SIGTERM" bash -c "! kill -0 $SPID 2>/dev/null"
check "and exits 0" test "$SRC" -eq 0
start_sched || bad "scheduler restarts"
"$SYNCBIT" dataset ls "${A[@]}" --json >"$T/ls3"
check "datasets survive a restart" test "$(jget "$T/ls3" 'len(d["datasets"])')" -eq 2
check "versions survive a restart" test "$(jget "$T/ls3" 'd["datasets"][0]["version"]')" = "$V2"
check "selectors survive a restart" test "$(jget "$T/ls3" 'd["datasets"][0]["selector"]["gpu"]')" = h100

check "dataset rm" bash -c "'$SYNCBIT' dataset rm web ${A[*]} | grep -q 'dataset web removed'"
expect_fail "removing it again" 1 "no dataset named 'web'" "$SYNCBIT" dataset rm web "${A[@]}"
"$SYNCBIT" dataset ls "${A[@]}" --json >"$T/ls4"
check "one dataset left" test "$(jget "$T/ls4" 'len(d["datasets"])')" -eq 1
stop_sched
check "the scheduler exits 0 again" test "$SRC" -eq 0
check "no sanitizer reports" bash -c "! grep -Eq 'Sanitizer|runtime error' '$T/sched.log'"
check "no stray processes or files in the source" test -z "$(find "$S" -name '.syncbit*')"
finish
