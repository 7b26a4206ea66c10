#!/usr/bin/env bash
# syncbit pull of hf:// repositories from tests/fixtures/hub_server.py, a
# stand-in for the Hub API as its clients document it: nested files, an LFS
# file of several blocks behind a CDN redirect, tree pagination, a branch
# resolved to its commit, a dataset, 429 with Retry-After, malformed JSON, a
# corrupt LFS blob, a repository that moves mid-pull, gated and missing
# repositories.
. "$(dirname "$0")/lib.sh"

R=$T/root DATA=$T/data
M=$R/models/acme/llm G=$R/models/acme/gated D=$R/datasets/acme/corpus
mkdir -p "$M/weights/shard" "$G" "$D/train"
head -c $((9 * 1024 * 1024 + 17)) /dev/urandom >"$M/weights/model.safetensors"
head -c 300000 /dev/urandom >"$M/weights/shard/part-00001.bin"
printf '{"model_type": "llama"}\n' >"$M/config.json"
printf 'hello\n' >"$M/weights/shard/README.md"
: >"$M/empty.txt"
printf 'a b c\n' >"$M/name with spaces.txt"
head -c 2000000 /dev/urandom >"$G/model.safetensors"
printf '{}\n' >"$G/config.json"
printf 'a,b\n1,2\n' >"$D/train/data.csv"
head -c 200000 /dev/urandom >"$D/train/data.parquet"

python3 "$FIXTURES/hub_server.py" --root "$R" --token hf_secret --page-size 2 >"$T/ports" 2>"$T/hub.err" &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$T/ports" ] && break; sleep 0.1; done
API=$(cut -d' ' -f1 "$T/ports")
[ -n "$API" ] || { bad "hub fixture starts" "$(cat "$T/hub.err")"; finish; exit 1; }
export HF_ENDPOINT=http://127.0.0.1:$API HF_HOME=$T/hf-home # no token file there
unset HF_TOKEN HUGGING_FACE_HUB_TOKEN HF_TOKEN_PATH

ctl() { curl -sf "http://127.0.0.1:$API/__control?repo=$1&$2" >/dev/null; }
stats() { curl -sf "http://127.0.0.1:$API/__stats?repo=$1"; }
pull() { "$SYNCBIT" pull "$@" --data "$DATA" --json; }
# count REPO PYTHON-CONDITION: requests of REPO for which the condition on r holds.
count() {
	stats "$1" | python3 -c "import json,sys; print(sum(1 for r in json.load(sys.stdin)['requests'] if $2))"
}
leaks() { stats x | python3 -c "import json,sys; print(json.load(sys.stdin)['cdn_auth_leaks'])"; }

pull hf://acme/llm --to "$T/m1" --block-size 4MiB >"$T/p1" 2>"$T/p1.err"
check "pull hf://acme/llm (nested paths, LFS file of 3 blocks, empty file)" test -s "$T/p1"
check "published tree equals the repository" diff -r "$M" "$T/m1"
check "the LFS file came from the CDN in 3 ranges" test "$(count models/acme/llm "r['cdn'] and r['status'] == 206")" -ge 3
check "the tree listing followed its Link pages" test "$(count models/acme/llm "'/tree/' in r['path']")" -ge 4
check "files were asked for at the resolved commit" test "$(count models/acme/llm "'/resolve/main/' in r['path']")" -eq 0
pull hf://acme/llm --to "$T/m1" >"$T/p2"
check "second pull fetches 0 bytes" test "$(json_field "$T/p2" bytes_from_source)" -eq 0 -a "$(json_field "$T/p2" bytes_read)" -eq 0

COMMIT=$(curl -sf "$HF_ENDPOINT/api/models/acme/llm/revision/main" | python3 -c "import json,sys; print(json.load(sys.stdin)['sha'])")
ctl models/acme/llm "ref=v1.0"
check "a tag resolves to the commit" pull hf://acme/llm@v1.0 --to "$T/m2"
check "tag pull content" diff -r "$M" "$T/m2"
check "a commit hash is a revision too" pull "hf://acme/llm@$COMMIT" --to "$T/m3"
check "commit pull content" diff -r "$M" "$T/m3"
expect_fail "a missing revision is one 404 line" 1 "hf://acme/llm@v9: revision v9 not found \(HTTP 404\)" \
	"$SYNCBIT" pull hf://acme/llm@v9 --to "$T/x1" --data "$DATA"

check "pull hf://datasets/acme/corpus" pull hf://datasets/acme/corpus --to "$T/d1"
check "dataset content" diff -r "$D" "$T/d1"

ctl models/acme/llm "r429=1&ra=1"
pull hf://acme/llm --to "$T/m4" >"$T/p4" 2>&1
check "a 429 is retried after its Retry-After" test "$(count models/acme/llm "r['status'] == 429")" -eq 1 -a -d "$T/m4/weights"
check "the retry waited Retry-After" python3 -c "import json,sys; sys.exit(json.loads(open('$T/p4').read().splitlines()[-1])['seconds'] < 0.9)"

ctl models/acme/llm "malformed=1"
expect_fail "malformed JSON is one clear line" 1 "hf://acme/llm: GET .*: malformed answer: malformed JSON" \
	"$SYNCBIT" pull hf://acme/llm --to "$T/x2" --data "$T/data-x2"
ctl models/acme/llm "reset=1"

ctl models/acme/llm "corrupt=weights/model.safetensors"
expect_fail "a corrupt LFS blob fails the pull" 1 "SHA-256 of the download is [0-9a-f]{64}, the hub lists [0-9a-f]{64}" \
	"$SYNCBIT" pull hf://acme/llm --to "$T/c1" --data "$T/data-c"
check "nothing published after a corrupt blob" test ! -e "$T/c1"
expect_fail "and again: no corrupt block was kept to resume from" 1 "SHA-256 of the download" \
	"$SYNCBIT" pull hf://acme/llm --to "$T/c1" --data "$T/data-c"
check "still nothing published" test ! -e "$T/c1"
ctl models/acme/llm "reset=1"
check "once the hub serves good bytes the pull succeeds" pull hf://acme/llm --to "$T/c1" --data "$T/data-c"
check "good content" diff -r "$M" "$T/c1"

ctl models/acme/llm "change_after=1"
expect_fail "a repository that moves mid-pull fails clearly" 1 "changed while it was read" \
	"$SYNCBIT" pull hf://acme/llm --to "$T/x3" --data "$T/data-x3" --jobs 1 --block-size 1MiB
check "nothing published after a mid-pull change" test ! -e "$T/x3"
ctl models/acme/llm "reset=1"

ctl models/acme/llm "stall=1&stall_s=20"
pull hf://acme/llm --to "$T/m6" --data "$T/data-m6" --stall-timeout 2 >"$T/p6" 2>&1
check "a stalled transfer is dropped and asked for again" diff -r "$M" "$T/m6"
check "without waiting for the stall to end" python3 -c "import json,sys; sys.exit(json.loads(open('$T/p6').read().splitlines()[-1])['seconds'] > 15)"
ctl models/acme/llm "reset=1"

ctl models/acme/llm "cdn_expire=1"
check "an expired CDN link is asked for again" pull hf://acme/llm --to "$T/m5" --data "$T/data-m5"
check "content after the CDN refusal" diff -r "$M" "$T/m5"

ctl models/acme/gated "gated=1"
expect_fail "gated repository without a token: one clear line" 1 \
	"hf://acme/gated: access denied: set HF_TOKEN \(gated or private repository\)" \
	"$SYNCBIT" pull hf://acme/gated --to "$T/g1" --data "$DATA"
check "nothing published for a gated repository" test ! -e "$T/g1"
HF_TOKEN=wrong expect_fail "a wrong token is named" 1 "hf://acme/gated: access denied: the HF_TOKEN given has no access" \
	"$SYNCBIT" pull hf://acme/gated --to "$T/g1" --data "$DATA"
HF_TOKEN=hf_secret check "gated repository with HF_TOKEN" pull hf://acme/gated --to "$T/g1"
check "gated content" diff -r "$G" "$T/g1"
check "the API calls carried the token" test "$(count models/acme/gated "not r['cdn'] and r['auth'] == 'Bearer hf_secret'")" -ge 3
check "the CDN never saw the token" test "$(leaks)" -eq 0
mkdir -p "$T/hf-home" && printf 'hf_secret\n' >"$T/hf-home/token"
check "the token file under HF_HOME is used" pull hf://acme/gated --to "$T/g2"
rm -f "$T/hf-home/token"
HUGGING_FACE_HUB_TOKEN=hf_secret check "HUGGING_FACE_HUB_TOKEN works too" pull hf://acme/gated --to "$T/g3"

HF_TOKEN=hf_secret expect_fail "a missing repository is one 404 line" 1 "hf://acme/nothing: repository not found \(HTTP 404\)" \
	"$SYNCBIT" pull hf://acme/nothing --to "$T/x4" --data "$DATA"
expect_fail "without a token the Hub's 401 for a missing repository is explained" 1 \
	"hf://acme/nothing: repository not found, or private or gated: set HF_TOKEN" \
	"$SYNCBIT" pull hf://acme/nothing --to "$T/x4" --data "$DATA"
check "nothing published for a missing repository" test ! -e "$T/x4"
HF_ENDPOINT=http://127.0.0.1:1 expect_fail "an unreachable hub fails after its retries" 1 "127.0.0.1:1" \
	"$SYNCBIT" pull hf://acme/llm --to "$T/x5" --data "$DATA" --retries 1
check "... naming the repository and the request once" \
	test "$(grep -o 'hf://acme/llm' "$T/.err" | wc -l),$(grep -o 'GET http' "$T/.err" | wc -l)" = 1,1
expect_fail "a missing revision names the repository once" 1 "^syncbit: pull hf://acme/llm@v9: revision v9" \
	"$SYNCBIT" pull hf://acme/llm@v9 --to "$T/x1" --data "$DATA"

# In a cluster: the scheduler lists the repository, two agents fetch it from
# the hub between them and swap blocks; the LFS bytes leave the hub less
# than twice (each agent pulling the whole file would be twice).
. "$HERE/cluster.sh"
ctl models/acme/llm "reset=1"
# shellcheck disable=SC2119 # start_scheduler takes optional flags
if start_scheduler && start_agent 1 && start_agent 2; then
	check "dataset add hf://acme/llm" add_dataset llm hf://acme/llm --block-size 1MiB
	check "both agents have it ready" wait_ready 90 llm 1 2
	check "agent 1's copy equals the repository" diff -r "$M" "$T/t1/llm"
	check "agent 2's copy equals the repository" diff -r "$M" "$T/t2/llm"
	served=$(hub_range_bytes "$API" models/acme/llm)
	check "the LFS file left the hub less than twice ($served bytes)" \
		test "$served" -ge $((9 * 1024 * 1024 + 17)) -a "$served" -lt $((2 * (9 * 1024 * 1024 + 17)))
	stop_cluster
else
	bad "a scheduler and two agents start"
fi

# The Hub's own JS client (npm @huggingface/hub, installed once with a
# bounded npm install --prefix): it downloads the repository from the
# fixture into the cache layout, and finds nothing to download in the
# cache Syncbit lays out for the same commit.
if [ "$(id -u)" -eq 0 ]; then HFJS=${HFJS_PREFIX:-/opt/syncbit-hfjs}; else HFJS=${HFJS_PREFIX:-$HOME/.cache/syncbit-hfjs}; fi
if [ ! -f "$HFJS/node_modules/@huggingface/hub/package.json" ] && command -v npm >/dev/null; then
	mkdir -p "$HFJS"
	timeout 300 npm install --prefix "$HFJS" --no-audit --no-fund --loglevel=error "@huggingface/hub@2.17" >/dev/null 2>&1
fi
if [ -f "$HFJS/node_modules/@huggingface/hub/package.json" ] && command -v node >/dev/null; then
	ln -s "$HFJS/node_modules" "$T/node_modules"
	cat >"$T/snapshot.mjs" <<'JS'
import { snapshotDownload } from "@huggingface/hub";
const [hubUrl, name, cacheDir, revision] = process.argv.slice(2);
const log = [];
const fetchLogged = async (input, init) => {
	const r = await fetch(input, init);
	log.push(`${init?.method ?? "GET"} ${r.status} ${input instanceof Request ? input.url : String(input)}`);
	return r;
};
try {
	await snapshotDownload({ repo: { type: "model", name }, cacheDir, hubUrl, revision, fetch: fetchLogged });
	console.log(log.join("\n"));
} catch (e) {
	console.log(log.join("\n"));
	console.error(String(e));
	process.exit(1);
}
JS
	jsnap() { timeout 120 node "$T/snapshot.mjs" "$HF_ENDPOINT" "$@"; }
	check "the Hub's JS client downloads the repository from the fixture" jsnap acme/llm "$T/js-cache" main
	check "Syncbit lays out the commit as a Hub cache" pull hf://acme/llm --layout hf-cache --to "$T/hf-cache"
	check "the same files, blobs and links as the JS client's cache" diff -r "$T/js-cache" "$T/hf-cache"
	check "the same symlink targets" bash -c "diff <(cd '$T/js-cache' && find . -type l -printf '%p %l\n' | sort) <(cd '$T/hf-cache' && find . -type l -printf '%p %l\n' | sort)"
	jsnap acme/llm "$T/hf-cache" "$COMMIT" >"$T/js2.log" 2>&1
	check "the JS client finds nothing to download in Syncbit's cache" bash -c "! grep -q '/resolve/' '$T/js2.log' && grep -q '/tree/' '$T/js2.log'"
else
	skip "the Hub's JS client" "npm @huggingface/hub not installable here"
fi

finish
