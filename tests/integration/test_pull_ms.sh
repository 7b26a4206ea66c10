#!/usr/bin/env bash
# syncbit pull of ms:// repositories from tests/fixtures/hub_server.py, a
# stand-in for the ModelScope API as its SDK documents it: a model with
# nested files and an LFS file of several blocks behind a redirect, a dataset
# whose tree takes several pages, the Sha256 check, 429, malformed JSON,
# gated and missing repositories, and the token kept from the CDN.
. "$(dirname "$0")/lib.sh"

R=$T/root DATA=$T/data
M=$R/models/qwen/tiny G=$R/models/qwen/gated D=$R/datasets/qwen/eval
mkdir -p "$M/onnx" "$G" "$D/part"
head -c $((5 * 1024 * 1024 + 99)) /dev/urandom >"$M/model.safetensors"
head -c 100000 /dev/urandom >"$M/onnx/model.onnx"
printf '{"architectures": ["Qwen2ForCausalLM"]}\n' >"$M/config.json"
printf 'license\n' >"$M/LICENSE"
printf '*.safetensors filter=lfs\n' >"$M/.gitattributes"
head -c 1000000 /dev/urandom >"$G/model.safetensors"
for i in $(seq 130); do printf 'row %d\n' "$i" >"$D/part/$i.jsonl"; done

python3 "$FIXTURES/hub_server.py" --root "$R" --token ms_secret >"$T/ports" 2>"$T/hub.err" &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$T/ports" ] && break; sleep 0.1; done
API=$(cut -d' ' -f1 "$T/ports")
[ -n "$API" ] || { bad "hub fixture starts" "$(cat "$T/hub.err")"; finish; exit 1; }
unset MODELSCOPE_API_TOKEN MODELSCOPE_ENDPOINT
export MODELSCOPE_DOMAIN=http://127.0.0.1:$API

ctl() { curl -sf "http://127.0.0.1:$API/__control?repo=$1&$2" >/dev/null; }
stats() { curl -sf "http://127.0.0.1:$API/__stats?repo=$1"; }
pull() { "$SYNCBIT" pull "$@" --data "$DATA" --json; }
count() {
	stats "$1" | python3 -c "import json,sys; print(sum(1 for r in json.load(sys.stdin)['requests'] if $2))"
}
leaks() { stats x | python3 -c "import json,sys; print(json.load(sys.stdin)['cdn_auth_leaks'])"; }
# The repository as the SDK downloads it: without .gitignore/.gitattributes.
expected() { rm -rf "$T/want" && cp -r "$1" "$T/want" && find "$T/want" -name .gitattributes -delete; }

pull ms://qwen/tiny --to "$T/m1" --block-size 2MiB >"$T/p1" 2>"$T/p1.err"
check "pull ms://qwen/tiny (nested paths, LFS file of 3 blocks)" test -s "$T/p1"
expected "$M"
check "published tree equals the repository (as the SDK skips .gitattributes)" diff -r "$T/want" "$T/m1"
check "the LFS file came through the redirect" test "$(count models/qwen/tiny "r['cdn'] and r['status'] == 206")" -ge 3
check "the files were listed with Revision=master&Recursive=True" \
	test "$(count models/qwen/tiny "'repo/files?Revision=master&Recursive=True' in r['path']")" -eq 1
pull ms://qwen/tiny --to "$T/m1" --block-size 2MiB >"$T/p2"
check "second pull fetches 0 bytes" test "$(json_field "$T/p2" bytes_from_source)" -eq 0 -a "$(json_field "$T/p2" bytes_read)" -eq 0
ctl models/qwen/tiny "ref=v1.0.0"
check "a tag is a revision" pull ms://qwen/tiny@v1.0.0 --to "$T/m2"
check "tag content" diff -r "$T/want" "$T/m2"
expect_fail "a missing revision is one 404 line" 1 "ms://qwen/tiny@v9: repository or revision v9 not found \(HTTP 404" \
	"$SYNCBIT" pull ms://qwen/tiny@v9 --to "$T/x1" --data "$DATA"

check "pull ms://datasets/qwen/eval (130 files, 2 pages)" pull ms://datasets/qwen/eval --to "$T/d1"
check "dataset content" diff -r "$D" "$T/d1"
check "the dataset tree was read page by page" \
	test "$(count datasets/qwen/eval "'repo/tree' in r['path'] and 'PageSize=100' in r['path']")" -eq 2

ctl models/qwen/tiny "r429=1&ra=1"
check "a 429 is retried" pull ms://qwen/tiny --to "$T/m3" --data "$T/data-m3"
check "content after the 429" diff -r "$T/want" "$T/m3"
ctl models/qwen/tiny "reset=1&malformed=1"
expect_fail "malformed JSON is one clear line" 1 "ms://qwen/tiny: GET .*: malformed answer" \
	"$SYNCBIT" pull ms://qwen/tiny --to "$T/x2" --data "$T/data-x2"
ctl models/qwen/tiny "reset=1&corrupt=model.safetensors"
expect_fail "a file whose bytes do not match Sha256 fails the pull" 1 "SHA-256 of the download is" \
	"$SYNCBIT" pull ms://qwen/tiny --to "$T/c1" --data "$T/data-c"
check "nothing published after a corrupt file" test ! -e "$T/c1"
ctl models/qwen/tiny "reset=1"

ctl models/qwen/gated "gated=1"
expect_fail "gated repository without a token: one clear line" 1 \
	"ms://qwen/gated: access denied: set MODELSCOPE_API_TOKEN \(gated or private repository\)" \
	"$SYNCBIT" pull ms://qwen/gated --to "$T/g1" --data "$DATA"
MODELSCOPE_API_TOKEN=ms_secret check "gated repository with MODELSCOPE_API_TOKEN" pull ms://qwen/gated --to "$T/g1"
check "gated content" diff -r "$G" "$T/g1"
check "the API calls carried the cookie" test "$(count models/qwen/gated "not r['cdn'] and r['cookie'] == 'm_session_id=ms_secret'")" -ge 2
check "the CDN never saw the cookie" test "$(leaks)" -eq 0
expect_fail "a missing repository is one 404 line" 1 "ms://qwen/nothing: repository or revision master not found \(HTTP 404" \
	"$SYNCBIT" pull ms://qwen/nothing --to "$T/x3" --data "$DATA"
check "nothing published for a missing repository" test ! -e "$T/x3"
MODELSCOPE_DOMAIN='' MODELSCOPE_ENDPOINT="http://127.0.0.1:$API/" check "MODELSCOPE_ENDPOINT names the whole endpoint" \
	pull ms://qwen/tiny --to "$T/m4" --data "$T/data-m4"

# In a cluster: the scheduler lists the repository, two agents fetch it from
# the hub between them and swap blocks; the repository's bytes leave the hub
# about once (each agent pulling everything would be twice).
. "$HERE/cluster.sh"
ctl models/qwen/tiny "reset=1"
stats_before=$(hub_range_bytes "$API" models/qwen/tiny)
# shellcheck disable=SC2119 # start_scheduler takes optional flags
if start_scheduler && start_agent 1 && start_agent 2; then
	check "dataset add ms://qwen/tiny" add_dataset tiny ms://qwen/tiny --block-size 1MiB
	check "both agents have it ready" wait_ready 90 tiny 1 2
	expected "$M"
	check "agent 1's copy equals the repository" diff -r "$T/want" "$T/t1/tiny"
	check "agent 2's copy equals the repository" diff -r "$T/want" "$T/t2/tiny"
	check "the two agents' copies are byte-identical" diff -r "$T/t1/tiny" "$T/t2/tiny"
	size=$(du -sb --apparent-size "$T/want" | cut -f1)
	served=$(($(hub_range_bytes "$API" models/qwen/tiny) - stats_before))
	check "the repository left the hub about once ($served of $size bytes)" \
		test "$served" -ge $((5 * 1024 * 1024 + 99)) -a "$served" -le $((size * 5 / 4))
	stop_cluster
else
	bad "a scheduler and two agents start"
fi

finish
