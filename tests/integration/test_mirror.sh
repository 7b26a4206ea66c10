#!/usr/bin/env bash
# Every agent as a registry mirror for containerd (agent/mirror.c): Debian's
# docker-registry fed by skopeo with two images built here that share a base
# layer (tests/fixtures/oci_image.py), a scheduler and two agents with
# --registry-mirror, `dataset add` of both images; the mirror's answers
# checked with curl (API version, HEAD = GET without a body, digests, media
# types, Range, 416, 404s with OCI error bodies at once (< 2 s: not parked
# for the wait), ns matching, refused names and digests). Then the registry is
# STOPPED and a containerd of the test's own (Debian's containerd; config,
# root, state and socket under $T, as in test_image.sh) pulls and unpacks the
# images through each node's mirror with hosts.toml from `syncbit
# containerd-hosts`; the unpacked files are compared with the layers pushed.
# An image the mirror does not hold comes from a second, live registry after
# the mirror's 404.
# A flipped byte in one node's published layer is never served: that node
# answers 404, keeps serving the image's other blobs, and repairs the layer
# from the other node (the registry still down); containerd then pulls the
# image through both mirrors.
#
# Multi-arch and Docker images answer with the registry's own documents: an
# OCI image index seeded for linux/amd64, a Docker manifest list seeded for
# two platforms, and a Docker schema 2 image are served byte for byte under
# the registry's digests and media types (tag and digest), a platform not
# seeded is a 404 at once, and containerd pulls each by the registry's
# digest (image@sha256:…) through the mirror with the registry stopped.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry.sh"
. "$(dirname "$0")/containerd.sh"
. "$HERE/cluster.sh"

for tool in docker-registry skopeo "$CONTAINERD_BIN" "$CTR_BIN" runc; do
	command -v "$tool" >/dev/null || { bad "$tool is installed (tests/deps.sh)"; finish; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { bad "runs as root (containerd needs it)"; finish; exit 1; }
L=$T/layout


# Two images sharing a 3 MB base layer, and one the mirror never holds.
D_APP=$(image app --seed app --size 400000 --base-seed base --base-size 3000000)
D_TOOL=$(image tool --seed tool --size 200000 --base-seed base --base-size 3000000)
image other --seed other --size 100000 >/dev/null
image multi --seed multi --size 150000 --arch amd64,arm64 >/dev/null
read -r BASE APP_TOP <<<"$(layers app)"
MULTI_AMD=$(layers multi amd64) MULTI_ARM=$(layers multi arm64)
read -r BASE2 TOOL_TOP <<<"$(layers tool)"
check "the two images share their base layer" test "$BASE" = "$BASE2"

start_registry reg "$T/store" || { bad "docker-registry starts"; finish; exit 1; }
R=127.0.0.1:$REG_PORT REG1_PID=$REG_PID
start_registry reg2 "$T/store2" || { bad "a second docker-registry starts"; finish; exit 1; }
R2=127.0.0.1:$REG_PORT
push "oci:$L:app" "docker://$R/team/app:v1"
push "oci:$L:tool" "docker://$R/team/tool:v1"
push "oci:$L:other" "docker://$R2/team/other:v1"
push "oci:$L:tool" "docker://$R/team/app:v2" # a second tag of team/app
push --all "oci:$L:multi" "docker://$R/team/multi:v1"                  # an OCI image index
push --all --format v2s2 "oci:$L:multi" "docker://$R/team/dlist:v1"    # a Docker manifest list
push --format v2s2 "oci:$L:app" "docker://$R/team/docker:v1"           # a Docker schema 2 manifest
check "skopeo pushed the images" curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
	"http://$R/v2/team/tool/manifests/v1" -o /dev/null
# raw REPO REF: the registry's bytes for a manifest into $T/raw.REPO, its
# digest printed. kind REPO: its media type.
ACCEPT='application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json'
raw() {
	curl -sf -H "Accept: $ACCEPT" -o "$T/raw.${1//\//_}" "http://$R/v2/$1/manifests/$2" &&
		echo "sha256:$(sha256sum <"$T/raw.${1//\//_}" | cut -c1-64)"
}
D_MULTI=$(raw team/multi v1) D_DLIST=$(raw team/dlist v1) D_DOCKER=$(raw team/docker v1)
# platform RAWFILE ARCH: the digest of ARCH's manifest in an index's bytes.
platform() { python3 -c "import json,sys; print([m['digest'] for m in json.load(open(sys.argv[1]))['manifests'] if m['platform']['architecture'] == sys.argv[2]][0])" "$1" "$2"; }
MULTI_AMD_D=$(platform "$T/raw.team_multi" amd64) MULTI_ARM_D=$(platform "$T/raw.team_multi" arm64)
DLIST_AMD_D=$(platform "$T/raw.team_dlist" amd64) DLIST_ARM_D=$(platform "$T/raw.team_dlist" arm64)
check "the registry holds an OCI index, a Docker list and a Docker manifest" \
	grep -q 'manifest.list.v2' "$T/raw.team_dlist" -a -n "$D_MULTI" -a -n "$D_DOCKER"

# ---- a scheduler and two agents, each a mirror ----
start_scheduler || { bad "scheduler starts"; finish; exit 1; }
M1=127.0.0.1:$(free_port) M2=127.0.0.1:$(free_port) H1=127.0.0.1:$(free_port) AH2=127.0.0.1:$(free_port)
start_agent 1 --registry-mirror "$M1" --http "$H1" && start_agent 2 --registry-mirror "$M2" --http "$AH2" ||
	{ bad "agents start"; finish; exit 1; }
check "dataset add of an image by tag" add_dataset app "oci://$R/team/app:v1"
check "dataset add of a second image with the same base" add_dataset tool "oci://$R/team/tool:v1"
check "dataset add of every v* tag of team/app" add_dataset apps "oci://$R/team/app" --tag-regex '^v[0-9]+$'
check "dataset add of an OCI index (linux/amd64, the default)" add_dataset multi "oci://$R/team/multi:v1"
check "dataset add of a Docker list, --platform twice" add_dataset dlist "oci://$R/team/dlist:v1" \
	--platform linux/amd64 --platform linux/arm64
check "dataset add of a Docker schema 2 image" add_dataset docker "oci://$R/team/docker:v1"
if wait_ready 60 app 1 2 && wait_ready 60 tool 1 2 && wait_ready 60 apps 1 2 &&
	wait_ready 60 multi 1 2 && wait_ready 60 dlist 1 2 && wait_ready 60 docker 1 2; then
	ok "both images are ready on both agents"
else
	bad "both images are ready on both agents" "$(tail -5 "$T/a1.log" "$T/a2.log" | tr '\n' ' ')"
fi
check "the shared base layer is one file in the cache (the same inode in both datasets)" \
	test "$(stat -c %i "$T/t1/app/blobs/sha256/$BASE")" = "$(stat -c %i "$T/t1/tool/blobs/sha256/$BASE")"

# ---- the mirror's answers ----
# hdrs METHOD URL [curl args]: status line and headers, lower-cased names,
# sorted; a GET's body goes to $T/body, a HEAD's byte count to $T/headbytes.
hdrs() {
	local m=$1 u=$2; shift 2
	if [ "$m" = HEAD ]; then
		curl -s -I -D "$T/hdr" -o /dev/null -w '%{size_download}' "$@" "$u" >"$T/headbytes"
	else
		curl -s -D "$T/hdr" -o "$T/body" "$@" "$u"
	fi
	tr -d '\r' <"$T/hdr" | grep -v '^$' | sed 's/^\([A-Za-z-]*\):/\L\1:/' | sort
}
hval() { grep "^$1: " "$2" | head -1 | cut -d' ' -f2-; } # hval NAME FILE
U1="http://$M1/v2/team/app" NS="?ns=$R"
check "GET /v2/ is 200 with Docker-Distribution-API-Version" \
	bash -c "curl -si http://$M1/v2/ | tr -d '\r' | grep -qx 'Docker-Distribution-API-Version: registry/2.0'"
hdrs HEAD "$U1/manifests/v1$NS" >"$T/h.head"
hdrs GET "$U1/manifests/v1$NS" >"$T/h.get"
check "HEAD of the tag: 200, its digest, the OCI manifest type" \
	test "$(head -1 "$T/h.head")" = "HTTP/1.1 200 OK" -a "$(hval docker-content-digest "$T/h.head")" = "$D_APP" \
	-a "$(hval content-type "$T/h.head")" = application/vnd.oci.image.manifest.v1+json
check "HEAD answers what GET does, without a body" diff "$T/h.head" "$T/h.get"
check "the manifest's bytes have that digest and length" \
	test "sha256:$(sha256sum <"$T/body" | cut -c1-64)" = "$D_APP" -a "$(stat -c %s "$T/body")" = "$(hval content-length "$T/h.get")"
check "the manifest by digest is the same bytes" bash -c "curl -sf '$U1/manifests/$D_APP$NS' | cmp - '$T/body'"
check "without ns the repository is found too" curl -sf -o /dev/null "$U1/manifests/v1"
check "ns=registry-1.docker.io is another registry" test "$(curl -s -o /dev/null -w '%{http_code}' "$U1/manifests/v1?ns=registry-1.docker.io")" = 404
hdrs GET "http://$M1/v2/team/app/blobs/sha256:$BASE$NS" >"$T/h.blob"
check "a layer by GET: 200, sent whole, the same bytes as pushed" \
	bash -c "test \"\$(head -1 '$T/h.blob')\" = 'HTTP/1.1 200 OK' && cmp '$T/body' '$L/blobs/sha256/$BASE'"
hdrs HEAD "http://$M1/v2/team/app/blobs/sha256:$BASE$NS" >"$T/h.blobhead"
check "HEAD of the layer matches GET (Content-Length, digest), no body" \
	bash -c "diff '$T/h.blobhead' '$T/h.blob' && test \"\$(cat '$T/headbytes')\" = 0"
SIZE=$(stat -c %s "$L/blobs/sha256/$BASE")
hdrs GET "http://$M1/v2/team/app/blobs/sha256:$BASE$NS" -H 'Range: bytes=1000-1999' >"$T/h.range"
tail -c +1001 "$L/blobs/sha256/$BASE" | head -c 1000 >"$T/slice"
check "Range: 206 with Content-Range and exactly those bytes" \
	test "$(head -1 "$T/h.range")" = "HTTP/1.1 206 Partial Content" \
	-a "$(hval content-range "$T/h.range")" = "bytes 1000-1999/$SIZE" -a "$(cmp "$T/body" "$T/slice" && echo same)" = same
check "a Range past the end is 416 with bytes */SIZE" \
	bash -c "curl -s -D - -o /dev/null -H 'Range: bytes=$SIZE-' 'http://$M1/v2/team/app/blobs/sha256:$BASE' | tr -d '\r' | grep -qx 'Content-Range: bytes \*/$SIZE'"
check "the shared layer is served under the other image's name too" \
	curl -sf -o /dev/null "http://$M1/v2/team/tool/blobs/sha256:$BASE$NS"
check "tags/list names the tag" bash -c "curl -sf 'http://$M1/v2/team/tool/tags/list$NS' | grep -q '\"v1\"'"
check "a tag regex dataset serves each of its tags: v2 is the tool image" \
	test "$(curl -sf -o /dev/null -D - "$U1/manifests/v2$NS" | tr -d '\r' | awk '/^Docker-Content-Digest:/ {print $2}')" = "$D_TOOL"
check "tags/list of team/app has v1 and v2" bash -c "curl -sf '$U1/tags/list$NS' | grep -q '\"v1\",\"v2\"'"

# notfound NAME PATH CODE: 404 with that OCI error code, at once: under 2 s,
# where a request parked for the mirror's wait takes seconds (0.19 s seen on a
# loaded full run, 0.51 s on another).
notfound() {
	local out
	out=$(curl -s --path-as-is -o "$T/err" -w '%{http_code} %{time_total}' "http://$M1$2") || return 1
	python3 - "$out" "$3" "$T/err" <<'PY'
import json, sys
code, secs = sys.argv[1].split()
body = json.load(open(sys.argv[3]))
assert code == "404", code
assert sys.argv[2] == "-" or body["errors"][0]["code"] == sys.argv[2], body
assert float(secs) < 2, secs
PY
}
check "an unknown tag: 404 MANIFEST_UNKNOWN at once" notfound tag "/v2/team/app/manifests/nope$NS" MANIFEST_UNKNOWN
check "an unknown repository: 404 NAME_UNKNOWN at once" notfound repo "/v2/team/none/manifests/v1$NS" NAME_UNKNOWN
check "another registry's ns: 404 NAME_UNKNOWN" notfound ns "/v2/team/app/manifests/v1?ns=quay.io" NAME_UNKNOWN
check "an unknown blob: 404 BLOB_UNKNOWN" notfound blob "/v2/team/app/blobs/sha256:$(printf '%064d' 0)$NS" BLOB_UNKNOWN
check "a malformed digest: 404 BLOB_UNKNOWN" notfound digest "/v2/team/app/blobs/sha256:ABC$NS" BLOB_UNKNOWN
check "a path that climbs: 404" notfound climb "/v2/team/app/blobs/sha256:../../../../etc/passwd" -
check "an invalid name: 404 NAME_UNKNOWN" notfound name "/v2/Team/../app/manifests/v1" NAME_UNKNOWN
check "the config blob of a manifest is not a manifest" notfound cfg \
	"/v2/team/app/manifests/sha256:$BASE$NS" MANIFEST_UNKNOWN

# ---- the registry's own documents: indexes, Docker manifests ----
# same_doc REPO REF DIGEST TYPE: the mirror's GET of the manifest is the
# registry's bytes, with its digest and media type; HEAD says the same.
same_doc() {
	hdrs GET "http://$M1/v2/$1/manifests/$2$NS" >"$T/h.doc" &&
		cmp -s "$T/body" "$T/raw.${1//\//_}" &&
		test "$(head -1 "$T/h.doc")" = "HTTP/1.1 200 OK" -a "$(hval docker-content-digest "$T/h.doc")" = "$3" \
			-a "$(hval content-type "$T/h.doc")" = "$4" &&
		hdrs HEAD "http://$M1/v2/$1/manifests/$2$NS" | diff - "$T/h.doc"
}
check "an OCI index by tag: the registry's bytes, digest and type" \
	same_doc team/multi v1 "$D_MULTI" application/vnd.oci.image.index.v1+json
check "  by its digest too" same_doc team/multi "$D_MULTI" "$D_MULTI" application/vnd.oci.image.index.v1+json
check "  the seeded platform's manifest by digest" curl -sf -o /dev/null "http://$M1/v2/team/multi/manifests/$MULTI_AMD_D$NS"
check "  a platform not seeded: 404 MANIFEST_UNKNOWN at once" notfound arm \
	"/v2/team/multi/manifests/$MULTI_ARM_D$NS" MANIFEST_UNKNOWN
check "a Docker manifest list by tag and digest: its bytes, digest and type" bash -c \
	"$(declare -f same_doc hdrs hval); T='$T' M1='$M1' NS='$NS'
	 same_doc team/dlist v1 '$D_DLIST' application/vnd.docker.distribution.manifest.list.v2+json &&
	 same_doc team/dlist '$D_DLIST' '$D_DLIST' application/vnd.docker.distribution.manifest.list.v2+json"
check "  skopeo inspect --raw through the mirror: the registry's list, byte for byte" bash -c \
	"$(printf '%q ' "${SKOPEO[@]}") inspect --raw --tls-verify=false 'docker://$M1/team/dlist:v1' | cmp - '$T/raw.team_dlist'"
check "  both seeded platforms' Docker manifests, byte for byte" bash -c \
	"for d in $DLIST_AMD_D $DLIST_ARM_D; do
	   curl -sfI 'http://$M1/v2/team/dlist/manifests/'\$d'$NS' | tr -d '\r' | grep -qx 'Content-Type: application/vnd.docker.distribution.manifest.v2+json' || exit 1
	   test \"sha256:\$(curl -sf 'http://$M1/v2/team/dlist/manifests/'\$d'$NS' | sha256sum | cut -c1-64)\" = \$d || exit 1
	 done"
check "a Docker schema 2 manifest by tag and digest: its bytes, digest and type" bash -c \
	"$(declare -f same_doc hdrs hval); T='$T' M1='$M1' NS='$NS'
	 same_doc team/docker v1 '$D_DOCKER' application/vnd.docker.distribution.manifest.v2+json &&
	 same_doc team/docker '$D_DOCKER' '$D_DOCKER' application/vnd.docker.distribution.manifest.v2+json"
check "  the layout names its manifest in OCI form (for layout readers), the registry's bytes beside" \
	bash -c "grep -q 'oci.image.manifest.v1' '$T/t1/docker/index.json' && grep -q '$D_DOCKER' '$T/t1/docker/index.json' &&
	 cmp '$T/t1/docker/blobs/sha256/${D_DOCKER#sha256:}' '$T/raw.team_docker'"
check "writes are refused (405)" test "$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://$M1/v2/team/app/blobs/uploads/")" = 405
check "/metrics counts the mirror's answers" bash -c "curl -sf http://$H1/metrics | grep -Eq '^syncbit_mirror_requests_total\{result=\"not_found\"\} [1-9]'"

# ---- the registry goes away; containerd pulls through the mirrors ----
kill -TERM "$REG1_PID"
wait "$REG1_PID" 2>/dev/null
check "the registry is stopped" bash -c "! curl -s -o /dev/null http://$R/v2/"

check "containerd starts with its root, state and socket under \$T" \
	containerd_start "$T/containerd" k8s.io 60 || { finish; exit 1; }
echo "       $(containerd_version), snapshotter $SNAP"

hosts() { # hosts DIR MIRROR_URL[,URL]: hosts.toml for both registries
	"$SYNCBIT" containerd-hosts --dir "$1" --mirror "$2" "$R" "$R2" >/dev/null
}
check "containerd-hosts for node 1's mirror" hosts "$T/hosts1" "http://$M1"
check "containerd-hosts for node 2's mirror" hosts "$T/hosts2" "http://$M2"
check "containerd-hosts again changes nothing" \
	bash -c "'$SYNCBIT' containerd-hosts --dir '$T/hosts1' --mirror 'http://$M1' '$R' | grep -q unchanged"
expect_fail "containerd-hosts refuses a malformed registry: one line, exit 2" 2 "not a registry" \
	"$SYNCBIT" containerd-hosts --dir "$T/hosts1" --mirror "http://$M1" "$R/team"
check "  and writes nothing for it" test ! -e "$T/hosts1/$R/team"
# forget REF...: images and all content leave containerd, so the next pull
# fetches every blob again.
forget() {
	local d
	"${CTR[@]}" images rm --sync "$@" >/dev/null 2>&1
	for d in $("${CTR[@]}" content ls -q 2>/dev/null); do "${CTR[@]}" content rm "$d" >/dev/null 2>&1; done
	test -z "$("${CTR[@]}" images ls -q)" -a -z "$("${CTR[@]}" content ls -q)"
}
served() { curl -sf "http://$1/metrics" | awk '/^syncbit_mirror_blob_bytes_total/ {print $2}'; }
started=$(date +%s.%N)
check "ctr pulls and unpacks $R/team/app:v1 through node 1's mirror, the registry down" \
	pulled "$R/team/app:v1" "$T/hosts1"
echo "       pulled in $(python3 -c "import time; print(round(time.time() - $started, 2))") s"
check "  the unpacked files are the layers' (base.bin, data.bin)" same_files "$R/team/app:v1" "$BASE" "$APP_TOP"
check "  the image has the digest the registry gave it" \
	bash -c "$(printf '%q ' "${CTR[@]}") images ls | grep -F '$R/team/app:v1' | grep -qF '$D_APP'"
check "the second image, which shares the base layer" pulled "$R/team/tool:v1" "$T/hosts1"
check "  its files are its layers'" same_files "$R/team/tool:v1" "$BASE" "$TOOL_TOP"
check "containerd forgets both images and their content" forget "$R/team/app:v1" "$R/team/tool:v1"
check "ctr pulls and unpacks through node 2's mirror" pulled "$R/team/app:v1" "$T/hosts2"
check "  the unpacked files are the layers'" same_files "$R/team/app:v1" "$BASE" "$APP_TOP"
check "  node 2's mirror sent the layers" test "$(served "$AH2")" -ge "$(stat -c %s "$L/blobs/sha256/$BASE")"

# By the registry's digest: an index, a Docker list, a Docker manifest.
check "ctr pulls $R/team/multi@<index digest> through node 1's mirror, the registry down" \
	pulled "$R/team/multi@$D_MULTI" "$T/hosts1"
check "  the unpacked files are the amd64 image's layer" same_files "$R/team/multi@$D_MULTI" $MULTI_AMD
check "ctr pulls $R/team/dlist@<Docker list digest> through node 2's mirror" \
	pulled "$R/team/dlist@$D_DLIST" "$T/hosts2"
check "  the unpacked files are the amd64 image's layer" same_files "$R/team/dlist@$D_DLIST" $MULTI_AMD
same_files_arm64() { MOUNT_PLATFORM=linux/arm64 same_files "$@"; }
check "ctr pulls $R/team/dlist:v1 --platform linux/arm64 (not this host's) through node 1's mirror" \
	pulled "$R/team/dlist:v1" "$T/hosts1" --platform linux/arm64
check "  the unpacked files are the arm64 image's layer" same_files_arm64 "$R/team/dlist:v1" $MULTI_ARM
check "ctr pulls $R/team/docker@<Docker manifest digest> through node 1's mirror" \
	pulled "$R/team/docker@$D_DOCKER" "$T/hosts1"
check "  the unpacked files are the layers'" same_files "$R/team/docker@$D_DOCKER" "$BASE" "$APP_TOP"
check "ctr pulls $R/team/multi:v1 by tag (the index, then its platform)" pulled "$R/team/multi:v1" "$T/hosts2"
check "  ctr lists it under the index's digest" \
	bash -c "$(printf '%q ' "${CTR[@]}") images ls | grep -F '$R/team/multi:v1' | grep -qF '$D_MULTI'"
check "containerd forgets these images" forget "$R/team/app:v1" "$R/team/multi@$D_MULTI" "$R/team/dlist@$D_DLIST" \
	"$R/team/dlist:v1" "$R/team/docker@$D_DOCKER" "$R/team/multi:v1"

# An image no mirror holds: a quick 404, then the registry in hosts.toml.
before=$(curl -sf "http://$H1/metrics" | awk -F'[ ]' '/result="not_found"/ {print $2}')
check "an image the mirror lacks comes from the live registry after its 404" \
	pulled "$R2/team/other:v1" "$T/hosts1"
check "  the mirror was asked first and said 404" \
	test "$(curl -sf "http://$H1/metrics" | awk -F'[ ]' '/result="not_found"/ {print $2}')" -gt "$before"

# A flipped byte in node 2's published base layer (the cache object too:
# they are one file) is never served; node 2 repairs it from node 1, the
# registry down. From a peer the repair takes well under a second, so node
# 1 is paused (SIGSTOP) while node 2's 404s are looked at.
check "containerd forgets the images again" forget "$R/team/app:v1" "$R2/team/other:v1"
resume1() { kill -CONT "${AGENT_PID[1]}"; }
CLEANUPS+=(resume1)
kill -STOP "${AGENT_PID[1]}"
flip_byte "$T/t2/app/blobs/sha256/$BASE" 123456
code() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
check "node 2 answers 404 for the corrupted layer" test "$(code "http://$M2/v2/team/app/blobs/sha256:$BASE$NS")" = 404
check "  and HEAD too" test "$(code -I "http://$M2/v2/team/app/blobs/sha256:$BASE$NS")" = 404
# The mirror's own full hash or the agent's watch on its cache objects
# (agent/watch.c) finds it first; either way it is logged and never served.
noticed() { grep -q -e "sha256:$BASE.*does not match its digest" -e "changed on disk" "$T/a2.log"; }
for _ in $(seq 100); do noticed && break; sleep 0.1; done
check "  the mismatch is noticed (logged)" noticed
# The layer is repaired (from node 1 or the registry's copy in the cache of
# node 1) and served again with its digest; the other blobs meanwhile.
blob_ok() { # URL DIGEST: 200 and the body hashes to DIGEST
	local h
	h=$(curl -sf "$1" | sha256sum | cut -d' ' -f1) && [ "$h" = "$2" ]
}
for _ in $(seq 200); do blob_ok "http://$M2/v2/team/app/blobs/sha256:$APP_TOP$NS" "$APP_TOP" && break; sleep 0.1; done
check "  its other blobs are still served" blob_ok "http://$M2/v2/team/app/blobs/sha256:$APP_TOP$NS" "$APP_TOP"
check "  node 2 says it is repairing" test "$(status_field 2 app state)" = repairing
resume1
for _ in $(seq 300); do blob_ok "http://$M2/v2/team/app/blobs/sha256:$BASE$NS" "$BASE" && break; sleep 0.1; done
check "  the layer is repaired and served again, its bytes the digest's" \
	blob_ok "http://$M2/v2/team/app/blobs/sha256:$BASE$NS" "$BASE"
check "  from node 1: the repair read nothing from the origin" \
	test "$(status_field 2 app bytes_from_origin)" = 0 -a "$(status_field 2 app bytes_from_peers)" -ge "$SIZE"
check "  only the changed file was put back" grep -q "dataset app: repaired .*: 1 file put back" "$T/a2.log"
check "  node 2 is ready again" wait_ready 30 app 2
check "containerd-hosts with node 2's mirror first, then node 1's" hosts "$T/hosts21" "http://$M2,http://$M1"
check "ctr pulls the image through them" pulled "$R/team/app:v1" "$T/hosts21"
check "  the unpacked files are the layers'" same_files "$R/team/app:v1" "$BASE" "$APP_TOP"

# A layer touched but intact: its time changed, so it is hashed again
# before it is served (by the mirror or the agent's watch), and then served.
touch "$T/t1/tool/blobs/sha256/$TOOL_TOP"
for _ in $(seq 100); do blob_ok "http://$M1/v2/team/tool/blobs/sha256:$TOOL_TOP" "$TOOL_TOP" && break; sleep 0.1; done
check "a touched layer is served again once its hash matches" \
	blob_ok "http://$M1/v2/team/tool/blobs/sha256:$TOOL_TOP" "$TOOL_TOP"
check "  its content was judged unchanged (logged)" \
	grep -q -e "sha256:$TOOL_TOP was touched but matches" -e "its time changed, its content did not" "$T/a1.log"

containerd_stop_simple
stop_cluster
finish
