#!/usr/bin/env bash
# syncbit pull of oci:// images from Debian's docker-registry (the CNCF
# distribution registry) on loopback, fed by skopeo from an OCI layout built
# here (tests/fixtures/oci_image.py): a tag, a digest, a multi-arch index and
# platform choice, Docker schema 2, a tag regex, a missing tag, a corrupted
# blob, a re-pull that fetches nothing; the registry again with token auth
# (tests/fixtures/oci_token.py signs the tokens it checks), and behind
# tests/fixtures/oci_proxy.py for 429 Retry-After and blob redirects to
# another host; then a scheduler and two agents distribute a multi-arch
# image and a tag regex as datasets. Every result must pass
# `skopeo inspect oci:DIR:TAG`.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry.sh"
. "$HERE/cluster.sh"

for tool in docker-registry skopeo openssl; do
	command -v "$tool" >/dev/null || { bad "$tool is installed (tests/deps.sh)"; finish; exit 1; }
done
L=$T/layout STORE=$T/store DATA=$T/data
# Under SAN=1 a report goes to a file, so one in a failing pull still shows.
export ASAN_OPTIONS="log_path=$T/san${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="log_path=$T/san${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

# start_fixture VAR OUTFILE command...: a fixture that prints its port
# first; sets VAR to that port.
start_fixture() {
	local var=$1 out=$2; shift 2
	"$@" >"$out" 2>"$out.err" &
	PIDS+=($!)
	for _ in $(seq 100); do
		[ -s "$out" ] && { printf -v "$var" '%s' "$(head -1 "$out")"; return 0; }
		sleep 0.1
	done
	cat "$out.err" >&2; return 1
}

pull() { "$SYNCBIT" pull "$@" --data "$DATA" --json; }
inspect() { "${SKOPEO[@]}" inspect "oci:$1" 2>&1; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin).get('$1'))"; }
refs() { python3 -c "import json,sys; print(' '.join(m.get('annotations',{}).get('org.opencontainers.image.ref.name','-') for m in json.load(open(sys.argv[1]))['manifests']))" "$1/index.json"; }
# first_layer TAG: the hex of the first layer of TAG's image manifest in $L.
first_layer() {
	python3 - "$L" "$1" <<'PY'
import json, sys
L, tag = sys.argv[1], sys.argv[2]
idx = json.load(open(f"{L}/index.json"))
d = [m for m in idx["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag][0]
m = json.load(open(f"{L}/blobs/sha256/{d['digest'][7:]}"))
print(m["layers"][0]["digest"][7:])
PY
}

# Images: 3 MB of layer so several blocks travel in parallel.
D_V1=$(image v1 --size 3000000 --seed v1)
image multi --arch amd64,arm64 --seed multi >/dev/null
image cann-8.0 --seed c80 >/dev/null
image cann-8.1-a3 --seed c81 >/dev/null
image other --seed other >/dev/null
image bad --size 2500000 --seed bad >/dev/null
start_registry plain "$STORE" || { bad "docker-registry starts"; finish; exit 1; }
R=127.0.0.1:$REG_PORT PLAIN_PORT=$REG_PORT
for t in v1 cann-8.0 cann-8.1-a3 other; do push "oci:$L:$t" "docker://$R/test/app:$t"; done
push --all "oci:$L:multi" "docker://$R/test/app:multi"
push "oci:$L:cann-8.0" "docker://$R/test/app:cann-copy" # the same image under two tags
push --format v2s2 "oci:$L:v1" "docker://$R/test/app:docker"
push "oci:$L:bad" "docker://$R/test/bad:v1"
check "skopeo pushed the test images" grep -q cann-8.1-a3 <(curl -s "http://$R/v2/test/app/tags/list")

# A tag.
check "pull by tag" pull "oci://$R/test/app:v1" --to "$T/d1" --block-size 1MiB --jobs 4
check "skopeo inspect oci:DIR:v1" inspect "$T/d1:v1"
check "skopeo copy oci:DIR:v1 dir:" "${SKOPEO[@]}" copy -q "oci:$T/d1:v1" "dir:$T/copy1"
LAYER=$(first_layer v1)
check "the layer is the pushed one" cmp "$L/blobs/sha256/$LAYER" "$T/d1/blobs/sha256/$LAYER"
check "index.json names the tag" test "$(refs "$T/d1")" = v1
check "the manifest is stored under its digest" test -f "$T/d1/blobs/sha256/${D_V1#sha256:}"
pull "oci://$R/test/app:v1" --to "$T/d1" --block-size 1MiB >"$T/p2" 2>&1
check "a second pull fetches 0 bytes" test "$(json_field "$T/p2" bytes_from_source)" -eq 0 -a "$(json_field "$T/p2" bytes_read)" -eq 0

# A digest.
check "pull by digest" pull "oci://$R/test/app@$D_V1" --to "$T/d2"
check "index.json holds that digest" grep -q "$D_V1" "$T/d2/index.json"
check "skopeo inspect oci:DIR (digest pull, no tag)" inspect "$T/d2"

# A multi-arch index.
check "pull a multi-arch tag" pull "oci://$R/test/app:multi" --to "$T/d3"
check "linux/amd64 is the default" test "$(inspect "$T/d3:multi" | field Architecture)" = amd64
check "pull --platform linux/arm64" pull "oci://$R/test/app:multi" --to "$T/d4" --platform linux/arm64
check "the arm64 image was chosen" test "$(inspect "$T/d4:multi" | field Architecture)" = arm64
expect_fail "a platform the index lacks is one clear line" 1 "no linux/s390x image.*linux/amd64" \
	"$SYNCBIT" pull "oci://$R/test/app:multi" --to "$T/d5" --data "$DATA" --platform linux/s390x
expect_fail "a malformed --platform is a usage error" 2 "os/arch" \
	"$SYNCBIT" pull "oci://$R/test/app:multi" --to "$T/d5" --data "$DATA" --platform linux
expect_fail "a platform named twice is a usage error" 2 "none twice" \
	"$SYNCBIT" pull "oci://$R/test/app:multi" --to "$T/d5" --data "$DATA" --platform linux/arm64 --platform linux/arm64
# entries DIR: each index.json entry's tag, architecture and registry digest.
entries() { python3 -c "
import json, sys
for m in json.load(open(sys.argv[1] + '/index.json'))['manifests']:
    a = m.get('annotations', {})
    print(a.get('org.opencontainers.image.ref.name'), m.get('platform', {}).get('architecture'), a.get('io.syncbit.registry.digest'))" "$1"; }
D_INDEX=sha256:$(curl -sf -H 'Accept: application/vnd.oci.image.index.v1+json' "http://$R/v2/test/app/manifests/multi" | sha256sum | cut -c1-64)
check "pull --platform linux/amd64 --platform linux/arm64" pull "oci://$R/test/app:multi" --to "$T/d11" \
	--platform linux/amd64 --platform linux/arm64
check "  index.json has both platforms under the tag, each naming the registry's index" \
	test "$(entries "$T/d11" | tr '\n' ' ')" = "multi amd64 $D_INDEX multi arm64 $D_INDEX "
check "  the index is kept byte for byte" bash -c \
	"curl -sf -H 'Accept: application/vnd.oci.image.index.v1+json' 'http://$R/v2/test/app/manifests/multi' | cmp - '$T/d11/blobs/sha256/${D_INDEX#sha256:}'"
check "  skopeo inspect oci:DIR:multi" inspect "$T/d11:multi"
check "pull --platform all" pull "oci://$R/test/app:multi" --to "$T/d12" --platform all
check "  the same layout as naming both" cmp "$T/d11/index.json" "$T/d12/index.json"

# sync takes the same oci:// flags as pull.
check "sync --once --platform linux/arm64" "$SYNCBIT" sync "oci://$R/test/app:multi" "$T/s4" --once \
	--platform linux/arm64 --data "$DATA"
check "sync chose the arm64 image" test "$(inspect "$T/s4:multi" | field Architecture)" = arm64
check "sync --once --tag-regex" "$SYNCBIT" sync "oci://$R/test/app" "$T/s8" --once --tag-regex '^cann-8\.0$' --data "$DATA"
check "sync's layout names the matching tag" test "$(refs "$T/s8")" = cann-8.0

# Docker schema 2.
check "pull a Docker schema 2 image" pull "oci://$R/test/app:docker" --to "$T/d6"
D_DOCKER=$(curl -sf -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$R/v2/test/app/manifests/docker" | sha256sum | cut -c1-64)
check "its manifest is retyped to OCI, its layers kept" bash -c "grep -q oci.image.manifest.v1 '$T/d6/index.json' && cmp '$L/blobs/sha256/$LAYER' '$T/d6/blobs/sha256/$LAYER'"
check "  the registry's Docker manifest is kept beside, byte for byte, named in index.json" bash -c \
	"curl -sf -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' 'http://$R/v2/test/app/manifests/docker' | cmp - '$T/d6/blobs/sha256/$D_DOCKER' &&
	 grep -q '\"io.syncbit.registry.digest\":\"sha256:$D_DOCKER\"' '$T/d6/index.json'"
check "skopeo inspect of the Docker schema 2 layout" inspect "$T/d6:docker"

# Missing things.
expect_fail "a missing tag is one clear line" 1 "tag nope not found.*404" \
	"$SYNCBIT" pull "oci://$R/test/app:nope" --to "$T/d7" --data "$DATA"
expect_fail "a missing repository is one clear line" 1 "test/none: tag v1 not found.*404" \
	"$SYNCBIT" pull "oci://$R/test/none:v1" --to "$T/d7" --data "$DATA"
check "nothing published after a 404" test ! -e "$T/d7"

# A tag regex: every matching tag into one layout.
check "pull --tag-regex cann" pull "oci://$R/test/app" --tag-regex cann --to "$T/d8"
check "index.json names exactly the matching tags" test "$(refs "$T/d8")" = "cann-8.0 cann-8.1-a3 cann-copy"
check "an image under two tags is stored once" test "$(ls "$T/d8/blobs/sha256" | wc -l)" -eq 6
check "skopeo inspect oci:DIR:cann-8.0" inspect "$T/d8:cann-8.0"
check "skopeo inspect oci:DIR:cann-8.1-a3" inspect "$T/d8:cann-8.1-a3"
expect_fail "a regex matching no tag is one clear line" 1 "none of its [0-9]+ tags matches" \
	"$SYNCBIT" pull "oci://$R/test/app" --tag-regex '^zzz' --to "$T/d9" --data "$DATA"
expect_fail "--tag-regex with a tag is a usage error" 2 "without a :tag" \
	"$SYNCBIT" pull "oci://$R/test/app:v1" --tag-regex cann --to "$T/d9" --data "$DATA"

# A blob corrupted in the registry's storage: its digest gives it away.
BAD=$(first_layer bad)
flip_byte "$STORE/docker/registry/v2/blobs/sha256/${BAD:0:2}/$BAD/data" 1234567
expect_fail "a corrupted blob fails the pull" 1 "sha256:$BAD arrived with digest" \
	"$SYNCBIT" pull "oci://$R/test/bad:v1" --to "$T/d10" --data "$DATA" --block-size 1MiB
check "nothing published after a corrupted blob" test ! -e "$T/d10/index.json"

# Plain HTTP only for loopback and --insecure-registry hosts.
expect_fail "another host is spoken to over HTTPS" 1 "https://registry.invalid:5000/v2/" \
	"$SYNCBIT" pull "oci://registry.invalid:5000/a/b:c" --to "$T/d11" --data "$DATA" --retries 0
expect_fail "--insecure-registry allows plain HTTP" 1 "http://registry.invalid:5000/v2/" \
	"$SYNCBIT" pull "oci://registry.invalid:5000/a/b:c" --to "$T/d11" --data "$DATA" --retries 0 \
	--insecure-registry registry.invalid:5000

# Token auth: the same storage behind a registry that checks signed tokens.
# Tokens last 1 s, so a pull that waits out a Retry-After must get another.
start_fixture TP "$T/token.port" python3 "$FIXTURES/oci_token.py" --dir "$T/token" --user alice:s3cret \
	--expires 1 ||
	{ bad "token service starts"; finish; exit 1; }
start_registry token "$STORE" "auth:
  token:
    realm: http://127.0.0.1:$TP/token
    service: syncbit-test
    issuer: syncbit-fixture
    rootcertbundle: $T/token/cert.pem" || { bad "registry with token auth starts"; finish; exit 1; }
A=127.0.0.1:$REG_PORT
check "the registry asks for a Bearer token" bash -c "curl -si http://$A/v2/test/app/manifests/v1 | grep -qi '^www-authenticate: Bearer realm=\"http://127.0.0.1:$TP/token\"'"
check "pull with REGISTRY_AUTH through the token flow" env REGISTRY_AUTH=alice:s3cret \
	"$SYNCBIT" pull "oci://$A/test/app:multi" --to "$T/a1" --data "$T/data-a" --json
check "skopeo inspect of the authenticated pull" inspect "$T/a1:multi"
check "the token was asked for with Basic auth and the pull scope" python3 - "$(curl -s "http://127.0.0.1:$TP/__log")" <<'PY'
import json, sys
log = json.loads(sys.argv[1])
assert any(e["basic"] and e["query"].get("scope") == ["repository:test/app:pull"]
           and e["query"].get("service") == ["syncbit-test"] for e in log), log
PY
expect_fail "wrong credentials are one clear line" 1 "refused the credentials" \
	env REGISTRY_AUTH=alice:wrong "$SYNCBIT" pull "oci://$A/test/app:v1" --to "$T/a2" --data "$T/data-a"
expect_fail "no credentials are one clear line" 1 "refused anonymous access" \
	env -u REGISTRY_AUTH "$SYNCBIT" pull "oci://$A/test/app:v1" --to "$T/a2" --data "$T/data-a"

# 429 with Retry-After and blobs redirected to another host, with auth.
start_fixture PP "$T/proxy.port" python3 "$FIXTURES/oci_proxy.py" --upstream "http://$A" --throttle 2 --redirect \
	--tag-page 2 ||
	{ bad "proxy starts"; finish; exit 1; }
tokens() { curl -s "http://127.0.0.1:$TP/__log" | grep -o '"path": "/token"' | wc -l; }
TOKENS=$(tokens)
check "pull through 429s and redirects" "$SYNCBIT" pull "oci://127.0.0.1:$PP/test/app:v1" \
	--registry-user alice:s3cret --to "$T/a3" --data "$T/data-p" --json
check "an expired token is replaced before it is refused" test "$(tokens)" -ge $((TOKENS + 2))
check "content after 429s and redirects" cmp "$L/blobs/sha256/$LAYER" "$T/a3/blobs/sha256/$LAYER"
check "Retry-After was waited for, and no token went to the blob host" python3 - "$(curl -s "http://127.0.0.1:$PP/__log")" <<'PY'
import json, sys
log = json.loads(sys.argv[1])
throttled = [e for e in log if e["status"] == 429]
assert len(throttled) == 2, log
later = [e for e in log if "/blobs/" in e["path"] and e["status"] == 307]
assert later and min(e["t"] for e in later) - max(e["t"] for e in throttled) >= 0.9, log
storage = [e for e in log if e["path"].startswith("/_storage/")]
assert storage and not any(e["auth"] for e in storage), storage
assert sum(e["status"] == 206 for e in storage) >= 2, storage
PY
check "a tag list paged 2 at a time through Link headers" "$SYNCBIT" pull "oci://127.0.0.1:$PP/test/app" \
	--tag-regex '^cann-8\.[0-9]$' --registry-user alice:s3cret --to "$T/a4" --data "$T/data-p"
check "every page was asked for" test "$(curl -s "http://127.0.0.1:$PP/__log" | grep -o 'tags/list' | wc -l)" -ge 3
check "the paged regex pull has its one tag" test "$(refs "$T/a4")" = "cann-8.0"

# In a cluster: the scheduler lists the registry once, the agents fetch.
unset ASAN_OPTIONS UBSAN_OPTIONS # stop_cluster reads the reports in the logs
# The registry credentials and insecure hosts are source flags of the
# scheduler and the agents (agent 2 takes them from SYNCBIT_REGISTRY_USER).
start_scheduler --registry-user alice:s3cret --insecure-registry registry.invalid:5000 ||
	{ bad "scheduler starts"; finish; exit 1; }
start_agent 1 --registry-user alice:s3cret && SYNCBIT_REGISTRY_USER=alice:s3cret start_agent 2 ||
	{ bad "agents start"; finish; exit 1; }
check "dataset add --platform linux/arm64" add_dataset img "oci://$R/test/app:multi" --platform linux/arm64
check "dataset add of an oci:// tag regex as ?tag-regex=" add_dataset cann "oci://$R/test/app?tag-regex=cann"
check "dataset add --tag-regex from a registry with token auth" add_dataset auth "oci://$A/test/app" \
	--tag-regex '^cann-8\.1'
if wait_ready 60 img 1 2 && wait_ready 60 cann 1 2 && wait_ready 60 auth 1 2; then
	ok "the datasets are ready on both agents"
else
	bad "the datasets are ready on both agents" "$(tail -3 "$T/a1.log" | tr '\n' ' ')"
fi
check "agent 2 has the arm64 image" test "$(inspect "$T/t2/img:multi" | field Architecture)" = arm64
check "agent 1 has every cann tag" test "$(refs "$T/t1/cann")" = "cann-8.0 cann-8.1-a3 cann-copy"
check "skopeo inspect on an agent's target" inspect "$T/t1/cann:cann-8.1-a3"
check "both agents have the token-auth tag regex" test "$(refs "$T/t1/auth")" = cann-8.1-a3 -a "$(refs "$T/t2/auth")" = cann-8.1-a3
check "the agents' copies are identical" diff -r "$T/t1/auth" "$T/t2/auth"
check "dataset ls shows the platform in the source" bash -c "'$SYNCBIT' dataset ls --scheduler '$SCHED' --token-file '$TOKEN' | grep -q 'platform=linux%2Farm64\|platform=linux/arm64'"
expect_fail "the scheduler speaks plain HTTP to an --insecure-registry host" 1 "http://registry.invalid:5000/v2/" \
	add_dataset far "oci://registry.invalid:5000/a/b:c"
expect_fail "dataset add --platform on a non-oci source is a usage error" 2 "oci:// sources only" \
	add_dataset wrong "http://127.0.0.1:1/x" --platform linux/arm64
expect_fail "dataset add: a malformed --platform is a usage error" 2 "os/arch" \
	add_dataset wrong "oci://$R/test/app:multi" --platform linux
stop_cluster

check "no sanitizer report from a pull" bash -c "! ls '$T'/san.* 2>/dev/null | grep -q ."
finish
