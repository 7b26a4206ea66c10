#!/usr/bin/env bash
# syncbit sync oci://A/src oci://B/dst: registry to registry between two
# Debian docker-registry instances on loopback (each its own config and
# storage), images built here (tests/fixtures/oci_image.py) sharing a base
# layer, one layer above --push-chunk so it goes in PATCH chunks. Checks
# with skopeo that every tag arrives with the source's manifest digest
# (Docker schema 2 included; a multi-arch tag becomes its platform's
# manifest) and the same layers; that a second run uploads nothing and
# reads no blob from the source; that a new tag uploads only its own blobs;
# that a second repository of the destination gets the blobs by
# cross-repository mount; a destination with token auth; and the usage
# errors. With --all an OCI index and a Docker manifest list go whole:
# `skopeo inspect --raw` of each at the destination, and of each platform's
# manifest, is the source's, the index went in after its manifests, a
# second run is up to date, and `skopeo copy --all` from the destination
# gives the layers built here. Requests are counted from the registries'
# access logs.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry.sh"

for tool in docker-registry skopeo openssl; do
	command -v "$tool" >/dev/null || { bad "$tool is installed (tests/deps.sh)"; finish; exit 1; }
done
L=$T/layout DATA=$T/data
export ASAN_OPTIONS="log_path=$T/san${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="log_path=$T/san${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
unset REGISTRY_AUTH DEST_REGISTRY_AUTH SRC DST CRON_SCHEDULE RUN_ON_START CRONTAB CRONTAB_FILE

digest() { "${SKOPEO[@]}" inspect --tls-verify=false "docker://$1" 2>/dev/null | python3 -c "import json,sys; print(json.load(sys.stdin)['Digest'])"; }
sync_() { "$SYNCBIT" sync "$@" --once --data "$DATA" --push-chunk 128KiB --json; }
field() { json_field "$1" "$2"; }
# tagfield FILE TAG KEY: a field of one tag in the run's JSON.
tagfield() {
	tail -1 "$1" | python3 -c "import json,sys; print([t for t in json.load(sys.stdin)['tags'] if t['tag']=='$2'][0]['$3'])"
}
# mark NAME / since NAME: the access log lines of registry NAME after the mark.
mark() { wc -l <"$T/$1.log" >"$T/$1.mark"; }
since() { tail -n +$(($(cat "$T/$1.mark") + 1)) "$T/$1.log" | grep '"syncbit/'; }
count() { since "$1" | grep -cE "\"($2) /v2/" || true; }

# Images: v1 and v2 share a base layer; v1's own layer is above the chunk
# size; v3 comes later; multi is an index; docker is v1 as Docker schema 2.
image v1 --size 300000 --seed v1 --base-seed base --base-size 60000 >/dev/null
image v2 --size 20000 --seed v2 --base-seed base --base-size 60000 >/dev/null
image v3 --size 30000 --seed v3 --base-seed base --base-size 60000 >/dev/null
image multi --arch amd64,arm64 --seed multi >/dev/null
image x-other --seed other >/dev/null
start_registry a "$T/store-a" || { bad "registry a starts"; finish; exit 1; }
A=127.0.0.1:$REG_PORT
start_registry b "$T/store-b" || { bad "registry b starts"; finish; exit 1; }
B=127.0.0.1:$REG_PORT
for t in v1 v2 x-other; do push "oci:$L:$t" "docker://$A/src:$t"; done
push --all "oci:$L:multi" "docker://$A/src:multi"
push --format v2s2 "oci:$L:v1" "docker://$A/src:docker"
push --all --format v2s2 "oci:$L:multi" "docker://$A/src:dlist" # a Docker manifest list
check "skopeo pushed the source images" grep -q x-other <(curl -s "http://$A/v2/src/tags/list")
AMD64=$(python3 - "$L" <<'PY'
import json, sys
L = sys.argv[1]
idx = json.load(open(f"{L}/index.json"))
top = [m for m in idx["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "multi"][0]
sub = json.load(open(f"{L}/blobs/sha256/{top['digest'][7:]}"))
print([m["digest"] for m in sub["manifests"] if m["platform"]["architecture"] == "amd64"][0])
PY
)
RE='^(v[0-9]+|docker|multi)$'

# same_digests REPO TAG...: each tag in REPO on B has A's src digest.
same_digests() {
	local repo=$1 t; shift
	for t in "$@"; do
		[ "$(digest "$B/$repo:$t")" = "$(digest "$A/src:$t")" ] || { echo "$t differs"; return 1; }
	done
}
# same_layers TAG: skopeo copies B/dst:TAG to a layout whose layers are
# the files built here.
same_layers() {
	rm -rf "$T/out" && "${SKOPEO[@]}" copy -q --src-tls-verify=false "docker://$B/dst:$1" "oci:$T/out:$1" || return 1
	python3 - "$T/out" "$L" "$1" <<'PY'
import json, sys, filecmp
out, L, tag = sys.argv[1:]
idx = json.load(open(f"{out}/index.json"))
m = json.load(open(f"{out}/blobs/sha256/{idx['manifests'][0]['digest'][7:]}"))
assert len(m["layers"]) == 2, m
for l in m["layers"]:
    h = l["digest"][7:]
    assert filecmp.cmp(f"{out}/blobs/sha256/{h}", f"{L}/blobs/sha256/{h}", shallow=False), h
PY
}

# ---- the first run copies every matching tag --------------------------------
mark a; mark b
sync_ "oci://$A/src" "oci://$B/dst" --tag-regex "$RE" >"$T/r1" 2>"$T/r1.err"
check "sync oci://A/src oci://B/dst --tag-regex: exit 0, status ok" test $? -eq 0 -a "$(field "$T/r1" status)" = ok
check "four images copied" test "$(field "$T/r1" copied)" -eq 4 -a "$(field "$T/r1" up_to_date)" -eq 0
# Tags go in order: docker (v1's blobs under a Docker manifest) uploads
# them, v1 finds them there, v2 finds the base.
check "each blob is uploaded once, by the first tag naming it" test "$(tagfield "$T/r1" docker blobs_uploaded)" -eq 3 -a \
	"$(tagfield "$T/r1" v1 blobs_present)" -eq 3 -a "$(tagfield "$T/r1" v2 blobs_uploaded)" -eq 2 -a \
	"$(tagfield "$T/r1" v2 blobs_present)" -eq 1 -a "$(field "$T/r1" blobs_uploaded)" -eq 7
check "each tag has the source's manifest digest (Docker schema 2 too)" same_digests dst v1 v2 docker
check "the multi-arch tag is its linux/amd64 manifest" test "$(digest "$B/dst:multi")" = "$AMD64"
check "skopeo copy of dst:v1 has the layers built here" same_layers v1
check "skopeo copy of dst:v2 has the layers built here" same_layers v2
check "a tag the regex does not match stays behind" bash -c "! curl -s 'http://$B/v2/dst/tags/list' | grep -q x-other"
check "the layer above --push-chunk went in PATCH chunks" test "$(count b PATCH)" -ge 3
check "smaller blobs went in one PUT each, manifests after them" python3 - "$T/b.log" "$(cat "$T/b.mark")" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()[int(sys.argv[2]):]
reqs = [m.groups() for m in (re.search(r'"(\w+) (/v2/\S+) HTTP/1.1" (\d+)', l) for l in lines) if m]
for tag in ("v1", "v2", "docker", "multi"):
    put = [i for i, r in enumerate(reqs) if r[0] == "PUT" and r[1] == f"/v2/dst/manifests/{tag}"]
    assert len(put) == 1 and reqs[put[0]][2] == "201", (tag, put)
blobs = [i for i, r in enumerate(reqs) if r[0] == "PUT" and "digest=" in r[1]]
assert blobs and all(reqs[i][2] == "201" for i in blobs), blobs
first_manifest = min(i for i, r in enumerate(reqs) if "/manifests/" in r[1] and r[0] == "PUT")
assert any(i < first_manifest for i in blobs)
PY
check "the pull read the blobs through the cache" test "$(field "$T/r1" bytes_read)" -gt 300000

# ---- a second run uploads nothing -------------------------------------------
mark a; mark b
sync_ "oci://$A/src" "oci://$B/dst" --tag-regex "$RE" >"$T/r2" 2>"$T/r2.err"
check "second run: ok, every tag up to date" test "$(field "$T/r2" status)" = ok -a "$(field "$T/r2" up_to_date)" -eq 4
check "second run: no blob uploaded, no byte sent" test "$(field "$T/r2" blobs_uploaded)" -eq 0 -a "$(field "$T/r2" bytes_uploaded)" -eq 0
check "second run: no PUT, PATCH or POST reached the destination" test "$(count b 'PUT|PATCH|POST')" -eq 0
check "second run: the source served manifests and tags, no blob" test "$(count a GET)" -ge 1 -a "$(since a | grep -c /blobs/)" -eq 0
check "second run: nothing read from the source's blobs" test "$(field "$T/r2" bytes_read)" -eq 0

# ---- a new tag: only its own blobs ------------------------------------------
push "oci:$L:v3" "docker://$A/src:v3"
mark b
sync_ "oci://$A/src" "oci://$B/dst" --tag-regex "$RE" >"$T/r3" 2>"$T/r3.err"
check "third run: v3 copied, the rest up to date" test "$(tagfield "$T/r3" v3 status)" = copied -a "$(field "$T/r3" up_to_date)" -eq 4
check "third run: v3 uploads config and layer, finds the base" test "$(tagfield "$T/r3" v3 blobs_uploaded)" -eq 2 -a \
	"$(tagfield "$T/r3" v3 blobs_present)" -eq 1 -a "$(field "$T/r3" blobs_uploaded)" -eq 2
check "third run: two blob uploads reached the destination" test "$(since b | grep -c 'PUT /v2/dst/blobs/uploads/')" -eq 2
check "v3 has the source's digest" same_digests dst v3

# ---- another repository of the destination: mounts --------------------------
mark b
sync_ "oci://$A/src" "oci://$B/team/dst2" --tag-regex '^v[12]$' >"$T/r4" 2>"$T/r4.err"
check "a second repository gets every blob by cross-repository mount" test "$(field "$T/r4" status)" = ok -a \
	"$(field "$T/r4" blobs_mounted)" -eq 5 -a "$(field "$T/r4" blobs_uploaded)" -eq 0
check "the registry saw the mounts from dst (201)" test "$(since b | grep -c 'POST /v2/team/dst2/blobs/uploads/?mount=sha256:[0-9a-f]*&from=dst HTTP/1.1" 201')" -eq 5
check "team/dst2 has the source's digests" same_digests team/dst2 v1 v2
"$SYNCBIT" sync "oci://$A/src:v2" "oci://$B/renamed:stable" --once --data "$DATA" >"$T/r5" 2>&1
check "a DST tag renames one image (same registry: mounted from dst), text lines" grep -q "stable copied -> oci://$B/renamed:stable" "$T/r5"
check "the renamed tag keeps the digest" test "$(digest "$B/renamed:stable")" = "$(digest "$A/src:v2")"

# ---- --all: multi-arch images whole ------------------------------------------
rawof() { "${SKOPEO[@]}" inspect --raw --tls-verify=false "docker://$1"; }
# same_raw REF...: skopeo inspect --raw of B/whole REF is A/src REF's.
same_raw() {
	local r
	for r in "$@"; do
		cmp -s <(rawof "$B/whole$r") <(rawof "$A/src$r") || { echo "$r differs"; return 1; }
	done
}
children() { rawof "$A/src:$1" | python3 -c "import json,sys; print(' '.join(m['digest'] for m in json.load(sys.stdin)['manifests']))"; }
mark b
sync_ "oci://$A/src" "oci://$B/whole" --tag-regex '^(multi|dlist)$' --all >"$T/r7" 2>"$T/r7.err"
check "sync --all: exit 0, both indexes copied" test $? -eq 0 -a "$(field "$T/r7" copied)" -eq 2
check "  each tag reports the index's digest" test "$(tagfield "$T/r7" multi digest)" = "$(digest "$A/src:multi")"
check "  skopeo inspect --raw of the OCI index and the Docker list equals the source's" same_raw :multi :dlist
read -r -a KIDS <<<"$(children multi) $(children dlist)"
check "  and of each platform's manifest, by digest" same_raw "${KIDS[@]/#/@}"
check "  every platform's manifests went in by digest, then the index under its tag" python3 - "$T/b.log" "$(cat "$T/b.mark")" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()[int(sys.argv[2]):]
puts = [m.group(1) for m in (re.search(r'"PUT /v2/whole/manifests/(\S+) HTTP/1.1" 201', l) for l in lines) if m]
for tag in ("multi", "dlist"):
    assert puts.count(tag) == 1, (tag, puts)
at = {p: i for i, p in enumerate(puts)}
digests = [p for p in puts if p.startswith("sha256:")]
assert len(digests) == 4, puts
assert all(at[d] < max(at["multi"], at["dlist"]) for d in digests), puts
assert at["multi"] > min(at[d] for d in digests), puts
PY
check "  skopeo copy --all from the destination: every platform's layers are the ones built here" bash -c \
	"rm -rf '$T/all' && $(printf '%q ' "${SKOPEO[@]}") copy -q --all --src-tls-verify=false 'docker://$B/whole:multi' 'oci:$T/all:multi' &&
	 for a in amd64 arm64; do for h in \$(python3 '$FIXTURES/oci_layout.py' layers '$T/all' multi \$a); do
	   cmp '$T/all/blobs/sha256/'\$h '$L/blobs/sha256/'\$h || exit 1; done; done"
mark b
sync_ "oci://$A/src" "oci://$B/whole" --tag-regex '^(multi|dlist)$' --all >"$T/r8" 2>"$T/r8.err"
check "a second sync --all: both up to date, no PUT, PATCH or POST" \
	test "$(field "$T/r8" up_to_date)" -eq 2 -a "$(count b 'PUT|PATCH|POST')" -eq 0
expect_fail "--all with --platform is a usage error" 2 "does not go with --platform" \
	"$SYNCBIT" sync "oci://$A/src:multi" "oci://$B/whole" --all --platform linux/amd64 --once --data "$DATA"
expect_fail "--all with a directory DST is a usage error" 2 "takes a registry DST" \
	"$SYNCBIT" sync "oci://$A/src:multi" "$T/dir" --all --once --data "$DATA"

# ---- a destination with token auth ------------------------------------------
"$FIXTURES/oci_token.py" --dir "$T/token" --user alice:s3cret --grant pull,push >"$T/token.port" 2>"$T/token.err" &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$T/token.port" ] && break; sleep 0.1; done
TP=$(head -1 "$T/token.port")
start_registry c "$T/store-c" "auth:
  token:
    realm: http://127.0.0.1:$TP/token
    service: syncbit-test
    issuer: syncbit-fixture
    rootcertbundle: $T/token/cert.pem" || { bad "registry with token auth starts"; finish; exit 1; }
C=127.0.0.1:$REG_PORT
check "sync to a registry with token auth (--dest-registry-user)" sync_ "oci://$A/src" "oci://$C/team/app" \
	--tag-regex '^v[12]$' --dest-registry-user alice:s3cret
check "sync to another repository there, DEST_REGISTRY_AUTH" env DEST_REGISTRY_AUTH=alice:s3cret \
	"$SYNCBIT" sync "oci://$A/src" "oci://$C/team/copy" --tag-regex '^v1$' --once --data "$DATA" --json
check "the pushed image is there for skopeo with the credentials" test \
	"$("${SKOPEO[@]}" inspect --tls-verify=false --creds alice:s3cret "docker://$C/team/copy:v1" | python3 -c "import json,sys; print(json.load(sys.stdin)['Digest'])")" = "$(digest "$A/src:v1")"
check "tokens asked for pull,push on the destination, and pull on the mount's source" python3 - "$(curl -s "http://127.0.0.1:$TP/__log")" <<'PY'
import json, sys
log = json.loads(sys.argv[1])
scopes = [e["query"].get("scope", []) for e in log if e["basic"]]
assert ["repository:team/app:pull,push"] in scopes, scopes
assert any(s[:1] == ["repository:team/copy:pull,push"] and "repository:team/app:pull" in s for s in scopes), scopes
PY
expect_fail "wrong destination credentials are one clear line" 1 "refused the credentials" \
	"$SYNCBIT" sync "oci://$A/src" "oci://$C/team/app" --tag-regex '^v1$' --once --data "$DATA" \
	--dest-registry-user alice:wrong

# ---- usage ------------------------------------------------------------------
expect_fail "--delete with a registry DST is a usage error" 2 "delete is not supported when DST is a registry" \
	"$SYNCBIT" sync "oci://$A/src" "oci://$B/dst" --once --delete --data "$DATA"
expect_fail "a non-oci SRC with a registry DST is a usage error" 2 "takes an oci:// SRC" \
	"$SYNCBIT" sync "$T" "oci://$B/dst" --once --data "$DATA"
expect_fail "a DST digest is a usage error" 2 "a tag, not a digest" \
	"$SYNCBIT" sync "oci://$A/src:v1" "oci://$B/dst@sha256:0000" --once --data "$DATA"
expect_fail "a DST tag with --tag-regex is a usage error" 2 "names a tag" \
	"$SYNCBIT" sync "oci://$A/src" "oci://$B/dst:x" --tag-regex v --once --data "$DATA"
expect_fail "an unreachable destination fails the run with one line" 1 "127.0.0.1:1/" \
	"$SYNCBIT" sync "oci://$A/src:v1" "oci://127.0.0.1:1/dst" --once --data "$DATA" --retries 0

check "no sanitizer report" bash -c "! ls '$T'/san.* 2>/dev/null | grep -q ."
finish
