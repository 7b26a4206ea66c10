#!/usr/bin/env bash
# A source URL that carries credentials (a presigned URL's signature and
# credential, userinfo) is read with them but never shown with them: the
# unauthenticated scheduler API, the admin commands, agent status, logs and
# error lines print REDACTED in their place.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster.sh"

SECRET=c0ffee5ec2e7
W=$T/www
mkdir -p "$W"
head -c $((3 << 20)) /dev/urandom >"$W/model.bin"
python3 "$FIXTURES/faulty_http.py" --dir "$W" >"$T/http.port" 2>"$T/http.log" &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$T/http.port" ] && break; sleep 0.1; done
H=127.0.0.1:$(head -1 "$T/http.port")
Q="X-Amz-Credential=AKID$SECRET%2F20250101&X-Amz-Signature=$SECRET&x=1"
URL="http://$H/model.bin?$Q"
BAD="http://user:pw$SECRET@$H/m/status=403/model.bin?$Q"

# no_secret FILE...: none of the files holds the secret.
no_secret() { ! grep -l "$SECRET" "$@"; }

expect_fail "a pull error names the URL without its credentials" 1 \
	"X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&x=1" \
	"$SYNCBIT" pull "$BAD" --to "$T/d0" --data "$T/data" --retries 0
check "  ... and without the secret" no_secret "$T/.err"
"$SYNCBIT" pull "$URL" --to "$T/d1" --data "$T/data" --json >"$T/pull.json" 2>"$T/pull.err"
check "pull reads the source with its credentials" cmp "$W/model.bin" "$T/d1/model.bin"
check "pull --json shows the source redacted" grep -q "X-Amz-Signature=REDACTED" "$T/pull.json"
check "  ... and no secret" no_secret "$T/pull.json" "$T/pull.err"

LOG_LEVEL=debug start_scheduler || { bad "scheduler starts"; finish; exit 1; }
LOG_LEVEL=debug start_agent 1 || bad "agent n1 starts"
check "dataset add of a presigned URL" add_dataset m "$URL"
check "the agent gets the dataset" wait_ready 30 m 1
check "  ... with the source's bytes" cmp "$W/model.bin" "$T/t1/m/model.bin"
expect_fail "dataset add of a source that fails says why" 1 "model.bin: HTTP 403" \
	add_dataset bad "$BAD"
check "  ... and without the secret" no_secret "$T/.err"
for p in datasets nodes status; do
	curl -sf "http://$SCHED_HTTP/api/v1/$p" >"$T/api-$p.json"
done
check "/api/v1/datasets shows the source redacted" \
	grep -q 'X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&x=1' "$T/api-datasets.json"
check "the unauthenticated API shows no secret" no_secret "$T"/api-*.json
"$SYNCBIT" dataset ls --scheduler "$SCHED" --token-file "$TOKEN" --json >"$T/ls.json"
"$SYNCBIT" dataset ls --scheduler "$SCHED" --token-file "$TOKEN" >"$T/ls.txt"
"$SYNCBIT" status --socket "$T/a1.sock" --json >"$T/status.json"
check "dataset ls and agent status show no secret" no_secret "$T/ls.json" "$T/ls.txt" "$T/status.json"
check "the scheduler logged the source (redacted)" grep -q "X-Amz-Signature=REDACTED" "$T/sched.log"
check "no secret in the scheduler's or the agent's log" no_secret "$T/sched.log" "$T/a1.log"

stop_cluster
finish
