#!/usr/bin/env bash
# --layout on pull and sync: triton (model repository, load call against
# tests/fixtures/triton_server.py) and hf-cache (the Hugging Face hub cache,
# resolved the way huggingface_hub resolves it offline, from a local mirror
# and from the hub fixture).
. "$(dirname "$0")/lib.sh"

DATA=$T/data
pull() { "$SYNCBIT" pull "$@" --data "$DATA"; }

# wait_for SECONDS command...: poll until the command succeeds.
wait_for() {
	local n=$(($1 * 20)); shift
	for _ in $(seq "$n"); do "$@" && return 0; sleep 0.05; done
	return 1
}

# ---- triton -------------------------------------------------------------------------
M=$T/resnet
mkdir -p "$M/labels"
head -c 150000 /dev/urandom >"$M/model.onnx"
echo cat >"$M/labels/classes.txt"
printf 'name: "resnet"\nbackend: "onnxruntime"\nmax_batch_size: 8\n' >"$M/config.pbtxt"
REPO=$T/model-repo
mkdir -p "$REPO"
python3 "$FIXTURES/triton_server.py" --repo "$REPO" >"$T/triton.port" 2>"$T/triton.err" &
PIDS+=($!)
wait_for 10 test -s "$T/triton.port"
TRITON=http://127.0.0.1:$(cat "$T/triton.port")

pull "$M" --to "$REPO" --layout triton --model resnet --model-version 2 --triton-url "$TRITON" --json >"$T/p1" 2>"$T/p1.err"
check "triton: pull and load exit 0" test $? -eq 0
check "config.pbtxt from the source in NAME/" cmp "$M/config.pbtxt" "$REPO/resnet/config.pbtxt"
check "model files in NAME/VERSION/" cmp "$M/model.onnx" "$REPO/resnet/2/model.onnx"
check "nested model files too" cmp "$M/labels/classes.txt" "$REPO/resnet/2/labels/classes.txt"
check "config.pbtxt not repeated in the version" test ! -e "$REPO/resnet/2/config.pbtxt"
check "the server got one successful load" \
	test "$(curl -sf "$TRITON/__loads")" = '[{"name": "resnet", "status": 200}]'
check "the model is ready" curl -sf -o /dev/null "$TRITON/v2/models/resnet/versions/2/ready"
check "the repository index lists it READY" \
	bash -c "curl -sf -X POST '$TRITON/v2/repository/index' | grep -q '\"name\": \"resnet\", \"version\": \"2\", \"state\": \"READY\"'"

# A new version of the source replaces the version directory whole.
rm "$M/labels/classes.txt"; echo v2 >"$M/extra.txt"
pull "$M" --to "$REPO" --layout triton --model resnet --model-version 2 >/dev/null 2>&1
check "a file the source dropped leaves the version" test ! -e "$REPO/resnet/2/labels/classes.txt" -a -f "$REPO/resnet/2/extra.txt"
check "no staging directory left in the model" test -z "$(find "$REPO/resnet" -name '.syncbit-*')"

# No config.pbtxt in the source: a minimal one naming the model.
W=$T/bert; mkdir -p "$W"; head -c 5000 /dev/urandom >"$W/model.pt"
pull "$W" --to "$REPO" --layout triton --model bert --triton-url "$TRITON" >/dev/null 2>&1
check "minimal config.pbtxt and version 1 by default, load ok" \
	test $? -eq 0 -a "$(cat "$REPO/bert/config.pbtxt")" = 'name: "bert"' -a -f "$REPO/bert/1/model.pt"

# A load the server refuses: status and message, exit 1.
X=$T/wrong; mkdir -p "$X"; echo w >"$X/model.onnx"
printf 'name: "other"\n' >"$X/config.pbtxt"
expect_fail "refused load: exit 1 with the HTTP status and the server's message" 1 \
	"HTTP 400: failed to load 'wrong': config.pbtxt names the model 'other'" \
	"$SYNCBIT" pull "$X" --to "$REPO" --layout triton --model wrong --triton-url "$TRITON" --data "$DATA"
mkdir -p "$T/empty"
expect_fail "empty version directory: refused" 1 "HTTP 400: .*is empty" \
	"$SYNCBIT" pull "$T/empty" --to "$REPO" --layout triton --model hollow --triton-url "$TRITON" --data "$DATA"
expect_fail "unreachable server: exit 1" 1 "POST http://127.0.0.1:9/v2/repository/models/bert/load" \
	"$SYNCBIT" pull "$W" --to "$REPO" --layout triton --model bert --triton-url http://127.0.0.1:9 --data "$DATA"

# sync takes the same layout and loads after each run.
SR=$T/sync-repo; mkdir -p "$SR"
"$SYNCBIT" sync "$M" "$REPO" --once --layout triton --model resnet --model-version 3 --triton-url "$TRITON" --data "$DATA" >"$T/s1" 2>&1
check "sync --layout triton: run ok and loaded" \
	test $? -eq 0 -a -f "$REPO/resnet/3/model.onnx" -a "$(curl -sf "$TRITON/__loads" | grep -o '"resnet", "status": 200' | wc -l)" -eq 2

expect_fail "--triton-url needs --layout triton" 2 "syncbit: --triton-url goes with --layout triton" \
	"$SYNCBIT" pull "$M" --to "$T/x" --triton-url "$TRITON" --data "$DATA"
expect_fail "--layout triton needs --model" 2 "needs --model" \
	"$SYNCBIT" pull "$M" --to "$T/x" --layout triton --data "$DATA"
expect_fail "--model-version must be a Triton version" 2 "syncbit: --model-version: '01'" \
	"$SYNCBIT" pull "$M" --to "$T/x" --layout triton --model m --model-version 01 --data "$DATA"
expect_fail "unknown --layout" 2 "syncbit: --layout: 'flat'" "$SYNCBIT" pull "$M" --to "$T/x" --layout flat --data "$DATA"
expect_fail "a layout needs --to" 2 "needs --to DIR" "$SYNCBIT" pull "$M" --layout triton --model m --data "$DATA"
expect_fail "hf-cache of a local source needs --repo" 2 "name the repo with --repo" \
	"$SYNCBIT" pull "$M" --to "$T/x" --layout hf-cache --data "$DATA"

# ---- hf-cache -------------------------------------------------------------------------
# How huggingface_hub finds a file offline (HF_HUB_OFFLINE=1,
# HF_HUB_CACHE=cache): the repo folder, refs/REVISION read whole (no strip)
# unless the revision is a commit, then snapshots/COMMIT/PATH, a symlink into
# blobs/. Prints the file.
cat >"$T/resolve.py" <<'PY'
import os, re, sys
cache, kind, repo_id, revision, filename = sys.argv[1:6]
folder = os.path.join(cache, kind + "s--" + repo_id.replace("/", "--"))
if re.fullmatch(r"[0-9a-f]{40}", revision):
    commit = revision
else:
    with open(os.path.join(folder, "refs", revision)) as f:
        commit = f.read()
path = os.path.join(folder, "snapshots", commit, filename)
if not os.path.islink(path):
    sys.exit("%s is not a symlink" % path)
target = os.readlink(path)
if os.path.isabs(target):
    sys.exit("absolute link %s" % target)
real = os.path.realpath(path)
if os.path.dirname(real) != os.path.realpath(os.path.join(folder, "blobs")):
    sys.exit("%s does not lead into blobs/" % path)
with open(path, "rb") as f:
    sys.stdout.buffer.write(f.read())
PY
resolves() { # resolves CACHE KIND REPO REV FILE EXPECTED-FILE
	python3 "$T/resolve.py" "$1" "$2" "$3" "$4" "$5" >"$T/.resolved" && cmp -s "$T/.resolved" "$6"
}

HL=$T/hub-local
pull "$M" --to "$HL" --layout hf-cache --repo acme/resnet >/dev/null 2>&1
check "hf-cache of a local mirror: main resolves to the files" resolves "$HL" model acme/resnet main model.onnx "$M/model.onnx"
check "...nested ones too (deeper relative links)" bash -c "mkdir -p '$M/a/b' && echo deep >'$M/a/b/c.txt' && $(printf %q "$SYNCBIT") pull '$M' --to '$HL' --layout hf-cache --repo acme/resnet --data '$DATA' >/dev/null 2>&1 && python3 '$T/resolve.py' '$HL' model acme/resnet main a/b/c.txt | grep -qx deep"
pull "$M" --to "$HL" --layout hf-cache --repo datasets/acme/images >/dev/null 2>&1
check "--repo datasets/ORG/NAME makes a dataset folder" resolves "$HL" dataset acme/images main model.onnx "$M/model.onnx"

# From the hub fixture: blob names are the hub's etags, the ref its commit.
HR=$T/hub
mkdir -p "$HR/models/acme/llm/tokenizer" "$HR/datasets/acme/corpus"
head -c 300000 /dev/urandom >"$HR/models/acme/llm/model.safetensors"
echo '{"model_type": "llama"}' >"$HR/models/acme/llm/config.json"
echo '{"vocab": {}}' >"$HR/models/acme/llm/tokenizer/tokenizer.json"
echo 'a,b' >"$HR/datasets/acme/corpus/train.csv"
python3 "$FIXTURES/hub_server.py" --root "$HR" >"$T/hub.ports" 2>"$T/hub.err" &
PIDS+=($!)
wait_for 10 test -s "$T/hub.ports"
API=http://127.0.0.1:$(cut -d' ' -f1 "$T/hub.ports")
export HF_ENDPOINT=$API HF_HOME=$T/hf-home
unset HF_TOKEN HUGGING_FACE_HUB_TOKEN HF_TOKEN_PATH
HC=$T/hf-cache
commit=$(curl -sf "$API/api/models/acme/llm" | python3 -c "import json,sys; print(json.load(sys.stdin)['sha'])")
pull hf://acme/llm --to "$HC" --layout hf-cache --json >"$T/h1" 2>"$T/h1.err"
check "hf:// into hf-cache: exit 0" test $? -eq 0
R=$HC/models--acme--llm
check "refs/main holds the hub's commit, no newline" test "$(cat "$R/refs/main")" = "$commit" -a "$(wc -c <"$R/refs/main")" -eq 40
sha=$(sha256sum "$HR/models/acme/llm/model.safetensors" | cut -d' ' -f1)
gitid=$(python3 -c "import hashlib,sys; d=open(sys.argv[1],'rb').read(); print(hashlib.sha1(b'blob %d\0' % len(d) + d).hexdigest())" "$HR/models/acme/llm/config.json")
check "an LFS file's blob is named by its sha256" test -f "$R/blobs/$sha"
check "a git file's blob is named by its git blob id" test -f "$R/blobs/$gitid"
check "main resolves to the weights" resolves "$HC" model acme/llm main model.safetensors "$HR/models/acme/llm/model.safetensors"
check "...and to a nested file" resolves "$HC" model acme/llm main tokenizer/tokenizer.json "$HR/models/acme/llm/tokenizer/tokenizer.json"
check "the commit itself resolves" resolves "$HC" model acme/llm "$commit" config.json "$HR/models/acme/llm/config.json"
check "blobs share the cache's disk (hardlinks)" test "$(stat -c %h "$R/blobs/$sha")" -ge 2
ino=$(stat -c %i "$R/blobs/$sha")
pull hf://acme/llm --to "$HC" --layout hf-cache --json >"$T/h2" 2>&1
check "a second pull fetches nothing and keeps the blobs" \
	test "$(json_field "$T/h2" bytes_from_source)" -eq 0 -a "$(stat -c %i "$R/blobs/$sha")" = "$ino"
pull hf://datasets/acme/corpus --to "$HC" --layout hf-cache >/dev/null 2>&1
check "a dataset lands in datasets--org--name" resolves "$HC" dataset acme/corpus main train.csv "$HR/datasets/acme/corpus/train.csv"

# The repo moves on: main follows, the old snapshot stays (as the hub's
# cache keeps it) until sync --delete drops what no ref names.
echo '{"model_type": "llama", "v": 2}' >"$HR/models/acme/llm/config.json"
commit2=$(curl -sf "$API/api/models/acme/llm" | python3 -c "import json,sys; print(json.load(sys.stdin)['sha'])")
pull hf://acme/llm --to "$HC" --layout hf-cache >/dev/null 2>&1
check "main moves to the new commit" test "$(cat "$R/refs/main")" = "$commit2" -a "$commit2" != "$commit"
check "the new config resolves" resolves "$HC" model acme/llm main config.json "$HR/models/acme/llm/config.json"
check "the old snapshot is kept" test -d "$R/snapshots/$commit" -a -f "$R/blobs/$gitid"
"$SYNCBIT" sync hf://acme/llm "$HC" --once --delete --layout hf-cache --data "$DATA" >"$T/h3" 2>&1
check "sync --delete drops the unreferenced snapshot and its blob" \
	test ! -e "$R/snapshots/$commit" -a ! -e "$R/blobs/$gitid" -a -f "$R/blobs/$sha"
check "...and main still resolves" resolves "$HC" model acme/llm main model.safetensors "$HR/models/acme/llm/model.safetensors"

# The Hub's own JS client (npm @huggingface/hub, REFERENCES.md) on the cache
# written above: asked for the commit it must find every file in place and
# download nothing; filling a fresh cache itself it must make the same tree.
# Runs where node and the npm registry are at hand; a counted skip otherwise.
NPM_DIR=${SYNCBIT_NPM_CACHE:-$HOME/.cache/syncbit-tests}/hf-hub-2.17.5
if command -v node >/dev/null && { [ -e "$NPM_DIR/.installed" ] ||
	(mkdir -p "$NPM_DIR" && cd "$NPM_DIR" &&
		timeout 60 npm install --no-audit --no-fund --silent @huggingface/hub@2.17.5 >/dev/null 2>&1 &&
		touch .installed); }; then
	cat >"$NPM_DIR/snapshot.mjs" <<'JS'
import { snapshotDownload } from "@huggingface/hub";
const [hubUrl, cacheDir, repo, revision] = process.argv.slice(2);
console.log(await snapshotDownload({ repo, cacheDir, hubUrl, revision }));
JS
	resolves_before=$(curl -sf "$API/__stats?repo=models/acme/llm" | python3 -c "import json,sys; print(sum('/resolve/' in r['path'] for r in json.load(sys.stdin)['requests']))")
	got=$(cd "$NPM_DIR" && timeout 60 node snapshot.mjs "$API" "$HC" acme/llm "$commit2" 2>"$T/js.err")
	resolves_after=$(curl -sf "$API/__stats?repo=models/acme/llm" | python3 -c "import json,sys; print(sum('/resolve/' in r['path'] for r in json.load(sys.stdin)['requests']))")
	check "@huggingface/hub accepts the cache: the snapshot is ours, nothing downloaded" \
		test "$got" = "$R/snapshots/$commit2" -a "$resolves_after" = "$resolves_before"
	(cd "$NPM_DIR" && timeout 60 node snapshot.mjs "$API" "$T/js-cache" acme/llm main >/dev/null 2>>"$T/js.err")
	tree() { (cd "$1" && find . ! -name '.*' -printf '%p %l\n' | grep -v '^\./\.' | sort); }
	check "...and fills a fresh cache with the same tree (blob names, links, refs)" \
		diff <(tree "$T/js-cache/models--acme--llm") <(tree "$R")
else
	skip "@huggingface/hub checks" "no node, or npm install of @huggingface/hub@2.17.5 failed"
fi

# A list of hub repos into one hub cache.
printf 'acme/llm\n' >"$T/models.ini"
LC=$T/list-cache
"$SYNCBIT" sync --list "$T/models.ini" "$LC" --once --layout hf-cache --data "$DATA" >"$T/l1" 2>&1
check "sync --list with hf-cache: every repo in one cache" resolves "$LC" model acme/llm main config.json "$HR/models/acme/llm/config.json"

finish
