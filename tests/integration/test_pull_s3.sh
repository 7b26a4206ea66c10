#!/usr/bin/env bash
# syncbit pull of s3:// prefixes from a real S3-compatible server on
# loopback (s3rver, fixtures uploaded with the aws CLI): nested keys, empty
# and multi-block objects, reuse, change detection, addressing styles and
# the errors a user meets. Then tests/fixtures/s3_fixture.py, which checks
# every SigV4 signature strictly and injects what s3rver cannot: a wrong
# secret key, malformed XML, 429 with Retry-After, 5xx, stalls, keys that
# escape the prefix and an object replaced mid-pull.
. "$(dirname "$0")/lib.sh"

S3RVER=$(bash "$FIXTURES/s3rver.sh" bin) || { bad "s3rver is installed (tests/deps.sh)"; finish; exit 1; }
if [ -x /usr/bin/aws ]; then AWS=/usr/bin/aws; else AWS=$(command -v aws) || AWS=; fi
[ -n "$AWS" ] || { bad "the aws CLI is installed (tests/deps.sh)"; finish; exit 1; }

# Nothing from the caller's AWS setup may leak in.
unset AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_SESSION_TOKEN AWS_PROFILE AWS_DEFAULT_REGION
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=$T/no-aws-config
export AWS_SHARED_CREDENTIALS_FILE=$T/no-aws-credentials AWS_PAGER=

PORT=$(free_port)
mkdir -p "$T/s3rver"
"$S3RVER" -d "$T/s3rver" -a 127.0.0.1 -p "$PORT" --silent --service-endpoint localhost \
	>"$T/s3rver.log" 2>&1 &
PIDS+=($!)
E=http://127.0.0.1:$PORT
for _ in $(seq 100); do curl -s -o /dev/null "$E/" && break; sleep 0.1; done
awss3() { timeout 120 "$AWS" --endpoint-url "$E" "$@" >>"$T/aws.log" 2>&1; }
awss3 s3 mb s3://models || { bad "s3rver starts and makes a bucket" "$(tail -3 "$T/aws.log")"; finish; exit 1; }

# The tree: nested keys, a key with spaces, a non-ASCII key, an empty
# object and objects of several 1 MiB blocks.
S=$T/src/llama DATA=$T/data
mkdir -p "$S/weights" "$S/dir with space" "$S/deep/a/b/c"
head -c $((9 * 1024 * 1024 + 5)) /dev/urandom >"$S/weights/model-00001.safetensors"
head -c $((3 * 1024 * 1024)) /dev/urandom >"$S/weights/model-00002.safetensors"
echo '{"model_type": "llama"}' >"$S/config.json"
: >"$S/empty.bin"
echo spaced >"$S/dir with space/a b+c.txt"
echo unicode >"$S/deep/a/b/c/é-ü.txt"
awss3 s3 cp --recursive "$S" s3://models/llama/ || bad "upload the tree" "$(tail -3 "$T/aws.log")"
awss3 s3api put-object --bucket models --key llama/folder/
echo other >"$T/other"
awss3 s3 cp "$T/other" s3://models/llama-old/x
TOTAL=$(find "$S" -type f -printf '%s\n' | awk '{ n += $1 } END { print n }')

pull() { timeout 120 "$SYNCBIT" pull "$@" --data "$DATA" --json --block-size 1MiB; }
sb() { timeout 120 "$SYNCBIT" "$@"; }
pull_to() { local out=$1; shift; pull "$@" >"$out"; }

check "pull an s3:// prefix with nested keys" pull_to "$T/p1" s3://models/llama/ --to "$T/d1" --s3-endpoint "$E"
check "content matches the uploaded tree" diff -r "$S" "$T/d1"
check "directory markers and neighbouring prefixes stay out" test ! -e "$T/d1/folder" -a ! -e "$T/d1/x"
check "the empty object is an empty file" test -f "$T/d1/empty.bin" -a ! -s "$T/d1/empty.bin"
check "every byte came from the source" test "$(json_field "$T/p1" bytes_from_source)" -eq "$TOTAL"
check "LastModified becomes the mtime" test "$(stat -c %Y "$T/d1/config.json")" -gt $(($(date +%s) - 3600))
pull s3://models/llama/ --to "$T/d1" --s3-endpoint "$E" >"$T/p2"
check "second pull reads 0 bytes" test "$(json_field "$T/p2" bytes_read)" -eq 0 -a "$(json_field "$T/p2" bytes_from_source)" -eq 0
echo '{"model_type": "llama", "changed": true}' >"$S/config.json"
awss3 s3 cp "$S/config.json" s3://models/llama/config.json
pull s3://models/llama/ --to "$T/d1" --s3-endpoint "$E" >"$T/p3"
check "a changed object is the only one read again" test "$(json_field "$T/p3" bytes_read)" -eq "$(stat -c %s "$S/config.json")"
check "the change is published" diff -r "$S" "$T/d1"
check "a prefix without '/' names the same directory" pull s3://models/llama --to "$T/d2" --s3-endpoint "$E"
check "its content matches" diff -r "$S" "$T/d2"
check "one object lands as DIR/<basename>" pull s3://models/llama/weights/model-00002.safetensors --to "$T/d3" --s3-endpoint "$E"
check "its content matches" cmp "$S/weights/model-00002.safetensors" "$T/d3/model-00002.safetensors"
check "AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_S3 are read" env AWS_ENDPOINT_URL=http://127.0.0.1:1 AWS_ENDPOINT_URL_S3="$E" timeout 120 "$SYNCBIT" pull s3://models/llama/ --to "$T/d4" --data "$DATA"
check "virtual-hosted addressing (bucket.s3.localhost)" pull s3://models/llama/ --to "$T/d5" --s3-endpoint "http://s3.localhost:$PORT" --no-s3-path-style
check "its content matches" diff -r "$S" "$T/d5"
check "anonymous when no credentials are set" env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY timeout 120 "$SYNCBIT" pull s3://models/llama/ --to "$T/d6" --data "$T/data6" --s3-endpoint "$E"
expect_fail "an unknown access key is one clear line" 1 "InvalidAccessKeyId.*AWS_ACCESS_KEY_ID" \
	env AWS_ACCESS_KEY_ID=NOBODY timeout 120 "$SYNCBIT" pull s3://models/llama/ --to "$T/e1" --data "$DATA" --s3-endpoint "$E"
expect_fail "a missing bucket is one clear line" 1 "bucket nosuchbucket does not exist" \
	sb pull s3://nosuchbucket/llama/ --to "$T/e1" --data "$DATA" --s3-endpoint "$E"
expect_fail "an empty prefix is one clear line" 1 "no objects under s3://models/nothing/" \
	sb pull s3://models/nothing/ --to "$T/e1" --data "$DATA" --s3-endpoint "$E"
expect_fail "half a key pair is one clear line" 1 "AWS_SECRET_ACCESS_KEY is not" \
	env -u AWS_SECRET_ACCESS_KEY timeout 120 "$SYNCBIT" pull s3://models/llama/ --to "$T/e1" --data "$DATA" --s3-endpoint "$E"
expect_fail "an unreachable endpoint fails after retries" 1 "127.0.0.1:1" \
	sb pull s3://models/llama/ --to "$T/e1" --data "$DATA" --s3-endpoint http://127.0.0.1:1 --retries 1
check "nothing published after the failures" test ! -e "$T/e1"

# sync takes the same source flags as pull.
check "sync --once of an s3:// prefix with --s3-endpoint --s3-region --s3-path-style" \
	sb sync s3://models/llama/ "$T/sy1" --once --data "$DATA" --s3-endpoint "$E" --s3-region us-east-1 --s3-path-style
check "its content matches" diff -r "$S" "$T/sy1"
expect_fail "sync: an --s3-endpoint that is no URL is a usage error" 2 "s3-endpoint 127.0.0.1:1: expected an http" \
	sb sync s3://models/llama/ "$T/sy2" --once --data "$DATA" --s3-endpoint 127.0.0.1:1
expect_fail "daemon: an --s3-endpoint that is no URL is a usage error" 2 "s3-endpoint s3.local: expected an http" \
	sb daemon --scheduler 127.0.0.1:1 --target "$T/x" --token-file "$T/x" --s3-endpoint s3.local

# In a cluster: the scheduler lists the prefix and two agents fetch it; the
# scheduler takes the endpoint as a flag, agent 1 as a flag and agent 2 from
# its environment (AWS_ENDPOINT_URL), each with credentials from the
# environment.
SCHED=127.0.0.1:$(free_port)
"$SYNCBIT" scheduler --listen "$SCHED" --data "$T/sched" --s3-endpoint "$E" --s3-region us-east-1 \
	>"$T/sched.log" 2>&1 &
PIDS+=($!)
SB_PIDS=($!)
for _ in $(seq 100); do [ -s "$T/sched/join-token" ] && break; sleep 0.1; done
for n in 1 2; do
	if [ $n = 1 ]; then flags=(--s3-endpoint "$E" --s3-path-style); else flags=(); fi
	AWS_ENDPOINT_URL=$([ $n = 2 ] && echo "$E") "$SYNCBIT" daemon --scheduler "$SCHED" --listen 127.0.0.1:0 \
		--data "$T/node$n/cache" --target "$T/node$n/models" --node "gpu-$n" --labels pool=s3 \
		--token-file "$T/sched/join-token" --socket "$T/node$n.sock" "${flags[@]}" >"$T/node$n.log" 2>&1 &
	PIDS+=($!)
	SB_PIDS+=($!)
done
for n in 1 2; do for _ in $(seq 100); do [ -S "$T/node$n.sock" ] && break; sleep 0.1; done; done
check "dataset add of an s3:// prefix" timeout 60 "$SYNCBIT" dataset add llama s3://models/llama/ \
	--selector pool=s3 --scheduler "$SCHED" --token-file "$T/sched/join-token"
both_ready() {
	for _ in $(seq 120); do
		"$SYNCBIT" ready llama --socket "$T/node1.sock" && "$SYNCBIT" ready llama --socket "$T/node2.sock" && return 0
		sleep 0.5
	done
	return 1
}
check "both agents get it ready" both_ready
check "agent 1 holds the prefix" diff -r "$S" "$T/node1/models/llama"
check "agent 2 holds the prefix" diff -r "$S" "$T/node2/models/llama"

# Credentials from the shared files: a profile's keys, region and
# endpoint_url; the environment's keys win over the files.
AW=$T/aws
mkdir -p "$AW"
cat >"$AW/credentials" <<INI
# the default profile holds a key s3rver does not know
[default]
aws_access_key_id = NOBODY
aws_secret_access_key = NOBODY
[ci]
aws_access_key_id=S3RVER
aws_secret_access_key = S3RVER
INI
cat >"$AW/config" <<INI
[default]
region = us-east-1
[profile ci]
region = us-east-1
endpoint_url = $E
s3 =
  max_concurrent_requests = 4
INI
printf '[default]\naws_access_key_id\n' >"$AW/broken"
nokeys=(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY AWS_SHARED_CREDENTIALS_FILE="$AW/credentials" AWS_CONFIG_FILE="$AW/config")
check "AWS_PROFILE: keys from the credentials file, endpoint_url from the config file" \
	"${nokeys[@]}" AWS_PROFILE=ci timeout 120 "$SYNCBIT" pull s3://models/llama/ --to "$T/k1" --data "$T/kdata"
check "its content matches" diff -r "$S" "$T/k1"
expect_fail "the default profile's keys are used (and named) when AWS_PROFILE is unset" 1 "InvalidAccessKeyId.*check $AW/credentials, profile default" \
	"${nokeys[@]}" timeout 120 "$SYNCBIT" pull s3://models/llama/ --to "$T/k2" --data "$T/kdata" --s3-endpoint "$E"
check "the environment's keys win over the credentials file" env AWS_SHARED_CREDENTIALS_FILE="$AW/credentials" \
	timeout 120 "$SYNCBIT" pull s3://models/llama/ --to "$T/k3" --data "$T/kdata" --s3-endpoint "$E"
expect_fail "an unknown AWS_PROFILE is one clear line" 1 "AWS_PROFILE nope: no \[nope\] in $AW/credentials" \
	"${nokeys[@]}" AWS_PROFILE=nope timeout 120 "$SYNCBIT" pull s3://models/llama/ --to "$T/k4" --data "$T/kdata" --s3-endpoint "$E"
expect_fail "a malformed credentials file is one clear line" 1 "credentials file $AW/broken: line 2: expected key = value" \
	"${nokeys[@]}" AWS_SHARED_CREDENTIALS_FILE="$AW/broken" timeout 120 "$SYNCBIT" pull s3://models/llama/ --to "$T/k4" --data "$T/kdata" --s3-endpoint "$E"

# Web identity (IRSA): the token file traded at STS (tests/fixtures/sts_fixture.py)
# for keys s3rver knows; web identity wins over the shared files.
start_sts() { # PORTVAR DURATION
	python3 "$FIXTURES/sts_fixture.py" --token tok-123 --access-key S3RVER --secret-key S3RVER \
		--duration "$2" >"$T/sts.$1" 2>"$T/sts.$1.err" &
	PIDS+=($!)
	for _ in $(seq 100); do [ -s "$T/sts.$1" ] && break; sleep 0.1; done
	printf -v "$1" '%s' "$(head -1 "$T/sts.$1")"
}
sts_calls() { curl -s "http://127.0.0.1:$1/__stats" | python3 -c "import json,sys; print(sum(c['status'] == 200 for c in json.load(sys.stdin)['calls']))"; }
start_sts STS1 3600
echo tok-123 >"$AW/token"
echo wrong >"$AW/bad-token"
ROLE=arn:aws:iam::123456789012:role/syncbit-reader
irsa=("${nokeys[@]}" AWS_ROLE_ARN=$ROLE AWS_ENDPOINT_URL_STS=http://127.0.0.1:$STS1)
check "web identity: AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE through STS" "${irsa[@]}" AWS_WEB_IDENTITY_TOKEN_FILE="$AW/token" \
	AWS_ROLE_SESSION_NAME=node-1 timeout 120 "$SYNCBIT" pull s3://models/llama/ --to "$T/w1" --data "$T/wdata" --s3-endpoint "$E"
check "its content matches" diff -r "$S" "$T/w1"
check "STS was asked once, for the role and session given" python3 - "$(curl -s "http://127.0.0.1:$STS1/__stats")" "$ROLE" <<'PY'
import json, sys
calls = json.loads(sys.argv[1])["calls"]
assert len(calls) == 1 and calls[0]["role"] == sys.argv[2] and calls[0]["session"] == "node-1", calls
assert calls[0]["method"] == "POST" and calls[0]["token_ok"], calls
PY
expect_fail "a token STS refuses is one clear line" 1 "AssumeRoleWithWebIdentity for $ROLE: HTTP 400 InvalidIdentityToken" \
	"${irsa[@]}" AWS_WEB_IDENTITY_TOKEN_FILE="$AW/bad-token" timeout 120 "$SYNCBIT" pull s3://models/llama/ --to "$T/w2" --data "$T/wdata" --s3-endpoint "$E"
expect_fail "a missing token file is one clear line" 1 "web identity token file $AW/none: No such file" \
	"${irsa[@]}" AWS_WEB_IDENTITY_TOKEN_FILE="$AW/none" timeout 120 "$SYNCBIT" pull s3://models/llama/ --to "$T/w2" --data "$T/wdata" --s3-endpoint "$E"
expect_fail "AWS_ROLE_ARN alone is one clear line" 1 "AWS_ROLE_ARN is set but AWS_WEB_IDENTITY_TOKEN_FILE is not" \
	"${irsa[@]}" timeout 120 "$SYNCBIT" pull s3://models/llama/ --to "$T/w2" --data "$T/wdata" --s3-endpoint "$E"

# A scheduler and an agent on web identity whose keys last 305 s: fresh keys
# are reused, keys within 300 s of Expiration are fetched again (in the
# background: they are still good for more than a minute).
start_sts STS2 305
SCHED2=127.0.0.1:$(free_port)
irsa2=("${nokeys[@]}" AWS_ROLE_ARN=$ROLE AWS_ENDPOINT_URL_STS=http://127.0.0.1:$STS2 AWS_WEB_IDENTITY_TOKEN_FILE="$AW/token")
"${irsa2[@]}" "$SYNCBIT" scheduler --listen "$SCHED2" --data "$T/sched2" --s3-endpoint "$E" >"$T/sched2.log" 2>&1 &
PIDS+=($!)
SB_PIDS+=($!)
for _ in $(seq 100); do [ -s "$T/sched2/join-token" ] && break; sleep 0.1; done
"${irsa2[@]}" "$SYNCBIT" daemon --scheduler "$SCHED2" --listen 127.0.0.1:0 --data "$T/node3/cache" \
	--target "$T/node3/models" --node gpu-3 --labels pool=s3 --token-file "$T/sched2/join-token" \
	--socket "$T/node3.sock" --s3-endpoint "$E" >"$T/node3.log" 2>&1 &
PIDS+=($!)
SB_PIDS+=($!)
for _ in $(seq 100); do [ -S "$T/node3.sock" ] && break; sleep 0.1; done
ready3() { for _ in $(seq 120); do "$SYNCBIT" ready "$1" --socket "$T/node3.sock" 2>/dev/null && return 0; sleep 0.5; done; return 1; }
add2() { timeout 60 "$SYNCBIT" dataset add "$1" "$2" --selector pool=s3 --scheduler "$SCHED2" --token-file "$T/sched2/join-token"; }
check "web identity in the cluster: dataset add" add2 llama s3://models/llama/
check "the agent fetched it with web identity keys" ready3 llama
check "its content matches" diff -r "$S" "$T/node3/models/llama"
check "fresh keys are reused: one STS call per process" test "$(sts_calls "$STS2")" -eq 2
sleep 6
check "after Expiration - 300 s: another dataset" add2 weights s3://models/llama/weights/
check "the agent fetched it" ready3 weights
check "its content matches" diff -r "$S/weights" "$T/node3/models/weights"
# The new keys are fetched beside the requests (the old ones still hold for
# a while): give the background fetches a moment to be counted.
renewed() { for _ in $(seq 50); do [ "$(sts_calls "$STS2")" -ge 4 ] && return 0; sleep 0.1; done; return 1; }
check "both processes fetched keys again before they expired" renewed

# The strict fixture.
FX=$T/fx
for b in strict badxml notxml throttle flaky stalled escape moving sumok sumbad sumpart; do mkdir -p "$FX/$b/p/sub"; done
cp -r "$S/." "$FX/strict/p/"
for b in badxml notxml throttle flaky stalled escape sumok sumbad sumpart; do head -c 300000 /dev/urandom >"$FX/$b/p/sub/a.bin"; done
head -c $((6 * 1024 * 1024)) /dev/urandom >"$FX/moving/p/big.bin"
python3 "$FIXTURES/s3_fixture.py" --root "$FX" --access-key AKFIXTURE --secret-key SKFIXTURE \
	--page 2 >"$T/fport" 2>"$T/ferr" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$T/fport" ] && break; sleep 0.1; done
F=http://127.0.0.1:$(head -1 "$T/fport")
fault() { curl -sf -X POST "$F/__fault?$1" >/dev/null; }
fpull() { AWS_ACCESS_KEY_ID=AKFIXTURE AWS_SECRET_ACCESS_KEY=SKFIXTURE timeout 120 "$SYNCBIT" pull "$@" --data "$T/fdata" --s3-endpoint "$F"; }

check "every request signed right (strict SigV4, pages of 2 keys)" fpull s3://strict/p/ --to "$T/f1" --json
check "its content matches" diff -r "$S" "$T/f1"
check "the listing took several pages" test "$(curl -s "$F/__stats?bucket=strict" | grep -o 'continuation-token=' | wc -l)" -ge 2
expect_fail "a wrong secret key is one clear line" 1 "SignatureDoesNotMatch.*AWS_SECRET_ACCESS_KEY" \
	env AWS_ACCESS_KEY_ID=AKFIXTURE AWS_SECRET_ACCESS_KEY=wrong timeout 120 "$SYNCBIT" pull s3://strict/p/ --to "$T/e2" --data "$T/fdata" --s3-endpoint "$F"
expect_fail "a wrong region names the right one" 1 "region us-east-1.*--s3-region" \
	fpull s3://strict/p/ --to "$T/e2" --s3-region eu-west-1
expect_fail "anonymous on a private bucket says no credentials were given" 1 "403 AccessDenied.*AWS_ACCESS_KEY_ID is not set" \
	env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY timeout 120 "$SYNCBIT" pull s3://strict/p/ --to "$T/e2" --data "$T/fdata" --s3-endpoint "$F"
fault "bucket=badxml&list=badxml"
expect_fail "malformed XML is one clear line" 1 "malformed ListObjectsV2 answer: byte [0-9]+: " \
	fpull s3://badxml/p/ --to "$T/e2"
fault "bucket=notxml&list=notxml"
expect_fail "an HTML page instead of XML is one clear line" 1 "malformed ListObjectsV2 answer.*<html>" \
	fpull s3://notxml/p/ --to "$T/e2"
fault "bucket=escape&list=dotdot"
expect_fail "a key escaping the prefix is refused" 1 "escapes the dataset directory" \
	fpull s3://escape/p/ --to "$T/e2"
check "nothing published after the refusals" test ! -e "$T/e2"
fault "bucket=throttle&r429=2&ra=2"
t0=$(date +%s%N)
check "429 with Retry-After is honoured" fpull s3://throttle/p/ --to "$T/f2"
t1=$(date +%s%N)
check "the pull waited as Retry-After asked (2 x 2 s)" test $(((t1 - t0) / 1000000)) -ge 3900
check "its content matches" cmp "$FX/throttle/p/sub/a.bin" "$T/f2/sub/a.bin"
fault "bucket=flaky&fail=3&code=503"
check "5xx answers are retried" fpull s3://flaky/p/ --to "$T/f3"
fault "bucket=stalled&stall=30&after=1000&times=1"
check "a stalled transfer is retried" fpull s3://stalled/p/ --to "$T/f4" --stall-timeout 2
check "its content matches" cmp "$FX/stalled/p/sub/a.bin" "$T/f4/sub/a.bin"
fault "bucket=moving&etag_change=2"
expect_fail "an object replaced mid-pull fails clearly" 1 "changed while it was read" \
	fpull s3://moving/p/ --to "$T/f5" --block-size 1MiB --jobs 1
check "nothing published after a mid-pull change" test ! -e "$T/f5/big.bin"
check "If-Match carried the listed ETag" bash -c "curl -s '$F/__stats?bucket=moving' | grep -q '\"status\": 412'"

# Full-object SHA-256 checksums: HeadObject tells them, and the assembled
# file is checked against them; a composite one (of parts) is not.
heads() { curl -s "$F/__stats?bucket=$1" | python3 -c "import json,sys; print(sum(r['method'] == 'HEAD' for r in json.load(sys.stdin)['requests']))"; }
fault "bucket=sumok&checksum=full"
check "an object with a full-object SHA-256 checksum" fpull s3://sumok/p/ --to "$T/s1" --block-size 64KiB
check "its content matches" cmp "$FX/sumok/p/sub/a.bin" "$T/s1/sub/a.bin"
check "its checksum was asked with HeadObject (signed, checksum mode on)" test "$(heads sumok)" -eq 1
fault "bucket=sumbad&checksum=wrong"
expect_fail "an object whose bytes differ from its SHA-256 checksum is not published" 1 \
	"sub/a.bin does not match the source's digest sha256:" \
	fpull s3://sumbad/p/ --to "$T/s2" --block-size 64KiB
check "nothing published after the mismatch" test ! -e "$T/s2/sub/a.bin"
fault "bucket=sumpart&checksum=composite"
check "a composite checksum is skipped (no HeadObject, no check)" fpull s3://sumpart/p/ --to "$T/s3" --block-size 64KiB
check "no HeadObject for a composite checksum" test "$(heads sumpart)" -eq 0

# The schedulers and agents stop on SIGTERM, and none logged a sanitizer
# report (under the ASan/UBSan build).
for p in "${SB_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
for p in "${SB_PIDS[@]}"; do for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done; done
check "the S3 schedulers and agents stop on SIGTERM" sh -c "! kill -0 ${SB_PIDS[*]} 2>/dev/null"
check "no sanitizer reports" sh -c "! grep -lE 'AddressSanitizer|LeakSanitizer|runtime error' '$T'/sched*.log '$T'/node*.log"

finish
