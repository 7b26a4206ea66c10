#!/usr/bin/env bash
# The registry mirror pulls images no dataset holds on demand
# (--registry-mirror-pull, agent/mirror_pull.c). Debian's docker-registry fed
# by skopeo with images built here (tests/fixtures/oci_image.py), behind
# tests/fixtures/oci_proxy.py, whose log (method, path, Range, User-Agent,
# status) counts what left the registry; a second docker-registry holds an
# image the first lacks. A scheduler and four agents with mirrors: n1 and
# n2 pull on demand (n2 from 127.0.0.1, any port), n3 does not, n4 does only
# from the proxy and a registry that never answers, for linux/arm64,
# waiting 8 s.
#
# Debian's containerd (its own root, state and socket under $T, as in
# test_mirror.sh) pulls an image that no dataset holds through n1's mirror:
# one pull through the scheduler, containerd never asks the registry, the
# unpacked files are the layers'. Then through n2's mirror: every blob left
# the registry once for both nodes. Concurrent requests share one pull; a
# pull by digest; an image index by tag is the registry's index, each node
# pulling its own platform (another platform by digest on demand); the flag off,
# another ns, or a registry not allowed are 404s at once; an image the
# registry does not have fails fast and containerd gets it from its next
# host; a registry that never answers keeps a request only for
# --registry-mirror-pull-wait; `dataset rm` of a pull-* dataset unpins it; once
# --pull-linger drops the dataset, the next request pulls it again.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/registry.sh"
. "$(dirname "$0")/containerd.sh"
. "$HERE/cluster.sh"

for tool in docker-registry skopeo "$CONTAINERD_BIN" "$CTR_BIN"; do
	command -v "$tool" >/dev/null || { bad "$tool is installed (tests/deps.sh)"; finish; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { bad "runs as root (containerd needs it)"; finish; exit 1; }
L=$T/layout

# blobs TAG: the config's hex, then each layer's, of TAG's manifest in $L.
# platform_digest TAG ARCH: the digest of ARCH's manifest in TAG's index.
platform_digest() {
	python3 - "$L" "$1" "$2" <<'PY'
import json, sys
L, tag, arch = sys.argv[1:4]
idx = json.load(open(f"{L}/index.json"))
d = [m for m in idx["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == tag][0]
ix = json.load(open(f"{L}/blobs/sha256/{d['digest'][7:]}"))
print([m for m in ix["manifests"] if m["platform"]["architecture"] == arch][0]["digest"])
PY
}

# An image of a config and three layers (about 3.5 MB), and smaller ones.
D_APP=$(image app --seed app --size 1000000 --layers 2 --base-seed base --base-size 1500000)
D_TOOL=$(image tool --seed tool --size 200000)
D_DIG=$(image dig --seed dig --size 150000)
D_MULTI=$(image multi --seed multi --size 50000 --arch amd64,arm64)
image ghost --seed ghost --size 120000 >/dev/null
read -r -a APP <<<"$(blobs app)"
read -r -a GHOST <<<"$(blobs ghost)"
MULTI_AMD=$(platform_digest multi amd64) MULTI_ARM=$(platform_digest multi arm64)
check "the app image has a config and three layers" test "${#APP[@]}" = 4

start_registry reg "$T/store" || { bad "docker-registry starts"; finish; exit 1; }
REG=127.0.0.1:$REG_PORT
start_registry reg2 "$T/store2" || { bad "a second docker-registry starts"; finish; exit 1; }
R2=127.0.0.1:$REG_PORT
push "oci:$L:app" "docker://$REG/team/app:v1"
push "oci:$L:tool" "docker://$REG/team/tool:v1"
push "oci:$L:dig" "docker://$REG/team/dig:v1"
push --all "oci:$L:multi" "docker://$REG/team/multi:v1"
push "oci:$L:ghost" "docker://$R2/team/ghost:v1" # only in the second registry
check "skopeo pushed the images" curl -sf -o /dev/null \
	-H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/team/app/manifests/v1"
coproc PROXY { exec python3 "$FIXTURES/oci_proxy.py" --upstream "http://$REG" 2>"$T/proxy.err"; }
PIDS+=($PROXY_PID)
read -r PPORT <&"${PROXY[0]}"
R=127.0.0.1:$PPORT NS="?ns=127.0.0.1:$PPORT"
check "the logging proxy answers" curl -sf -o /dev/null "http://$R/v2/"
# A registry that takes connections and never answers.
python3 -c '
import os, socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
with open(sys.argv[1] + ".tmp", "w") as f:
    print(s.getsockname()[1], file=f)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
held = []
while True:
    c, _ = s.accept(); held.append(c)
' "$T/silent.port" &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$T/silent.port" ] && break; sleep 0.1; done
SPORT=$(cat "$T/silent.port")
SILENT_REG=127.0.0.1:$SPORT

start_scheduler --pull-linger 15 || { bad "scheduler starts"; finish; exit 1; }
M1=127.0.0.1:$(free_port) M2=127.0.0.1:$(free_port) M3=127.0.0.1:$(free_port) M4=127.0.0.1:$(free_port)
H1=127.0.0.1:$(free_port) H2=127.0.0.1:$(free_port) H3=127.0.0.1:$(free_port) H4=127.0.0.1:$(free_port)
start_agent 1 --registry-mirror "$M1" --http "$H1" --registry-mirror-pull --registry-mirror-pull-wait 60 &&
	start_agent 2 --registry-mirror "$M2" --http "$H2" --registry-mirror-pull \
		--registry-mirror-pull-from 127.0.0.1 &&
	start_agent 3 --registry-mirror "$M3" --http "$H3" &&
	start_agent 4 --registry-mirror "$M4" --http "$H4" --registry-mirror-pull \
		--registry-mirror-pull-from "$R,$SILENT_REG" --registry-mirror-pull-wait 8 \
		--registry-mirror-platform linux/arm64 ||
	{ bad "agents start"; finish; exit 1; }
metric() { curl -sf "http://$1/metrics" | awk -v k="$2" '$1 == k {print $2}'; }
started() { metric "$1" 'syncbit_mirror_pulls_total{result="started"}'; }
expect_fail "--registry-mirror-pull without --registry-mirror: one line, exit 2" 2 \
	"needs --registry-mirror" "$SYNCBIT" daemon --scheduler "$SCHED" --target "$T/x" \
	--token-file "$TOKEN" --data "$T/x" --registry-mirror-pull
expect_fail "a malformed --registry-mirror-pull-from: one line, exit 2" 2 "not a registry" \
	"$SYNCBIT" daemon --scheduler "$SCHED" --target "$T/x" --token-file "$TOKEN" --data "$T/x" \
	--registry-mirror "127.0.0.1:0" --registry-mirror-pull --registry-mirror-pull-from "reg/x"

# quick CODE MIRROR PATH: 404 with that OCI error code in < 0.25 s.
quick() {
	local out
	out=$(curl -s -o "$T/err" -w '%{http_code} %{time_total}' "http://$2$3") || return 1
	python3 - "$out" "$1" "$T/err" <<'PY'
import json, sys
code, secs = sys.argv[1].split()
assert code == "404", code
assert json.load(open(sys.argv[3]))["errors"][0]["code"] == sys.argv[2]
assert float(secs) < 0.25, secs
PY
}
# ---- nothing pulled where it must not be ----
check "the flag off (n3): an image no dataset holds is a 404 at once" \
	quick NAME_UNKNOWN "$M3" "/v2/team/app/manifests/v1$NS"
check "without ns (n1): a 404 at once" quick NAME_UNKNOWN "$M1" "/v2/team/app/manifests/v1"
check "a blob (n1): a 404 at once" quick NAME_UNKNOWN "$M1" "/v2/team/app/blobs/sha256:${APP[1]}$NS"
check "a registry not in --registry-mirror-pull-from (n4): a 404 at once" \
	quick NAME_UNKNOWN "$M4" "/v2/team/ghost/manifests/v1?ns=$R2"
check "  no pull was started on n1 or n4" test "$(started "$H1")" = 0 -a "$(started "$H4")" = 0
check "n3 has no pull counters" bash -c "! curl -sf 'http://$H3/metrics' | grep -q syncbit_mirror_pulls_total"

# ---- containerd ----
check "containerd starts with its root, state and socket under \$T" \
	containerd_start "$T/containerd" k8s.io 180 || { finish; exit 1; }
echo "       $(containerd_version), snapshotter $SNAP"
check "containerd-hosts for n1's and n2's mirrors" bash -c \
	"'$SYNCBIT' containerd-hosts --dir '$T/hosts1' --mirror 'http://$M1' '$R' >/dev/null &&
	 '$SYNCBIT' containerd-hosts --dir '$T/hosts2' --mirror 'http://$M2' '$R' >/dev/null"
forget() { # forget REF...: the images and all content leave containerd
	local d
	"${CTR[@]}" images rm --sync "$@" >/dev/null 2>&1
	for d in $("${CTR[@]}" content ls -q 2>/dev/null); do "${CTR[@]}" content rm "$d" >/dev/null 2>&1; done
	test -z "$("${CTR[@]}" images ls -q)" -a -z "$("${CTR[@]}" content ls -q)"
}
proxy_log() { curl -s "http://$R/__log" >"$T/log.json"; }
# containerd_asked: requests with containerd's User-Agent that reached the registry.
containerd_asked() {
	proxy_log
	python3 -c "
import json, sys
print(sum(1 for r in json.load(open('$T/log.json')) if 'containerd' in r['agent'].lower()))"
}

# ---- n1: containerd pulls an image no dataset holds ----
started_at=$(date +%s.%N)
check "ctr pulls and unpacks $R/team/app:v1 through n1's mirror, no dataset holding it" \
	pulled "$R/team/app:v1" "$T/hosts1"
echo "       pulled in $(python3 -c "import time; print(round(time.time() - $started_at, 2))") s"
check "  the unpacked files are the layers'" same_files "$R/team/app:v1" "${APP[@]:1}"
check "  the image has the registry's digest" \
	bash -c "$(printf '%q ' "${CTR[@]}") images ls | grep -F '$R/team/app:v1' | grep -qF '$D_APP'"
check "  containerd never asked the registry itself" test "$(containerd_asked)" = 0
check "  n1 started one pull for containerd's requests" test "$(started "$H1")" = 1
check "  the scheduler listed it for n1 as a pull" \
	grep -q "node n1 pulls oci://$R/team/app:v1?platform=linux/amd64 through it" "$T/sched.log"
"$SYNCBIT" status --socket "$T/a1.sock" --json 2>/dev/null | tail -1 >"$T/st1.json"
check "  n1's status shows the pulled dataset" python3 - "$T/st1.json" "$R" <<'PY'
import json, sys
st, r = json.load(open(sys.argv[1])), sys.argv[2]
d = [d for d in st["datasets"] if d["name"].startswith("pull-")]
assert len(d) == 1 and d[0]["pulled"] is True, d
assert d[0].get("source", "").startswith(f"oci://{r}/team/app:v1"), d
PY
check "  nothing is published at TARGET/NAME for it" test -z "$(ls "$T/t1")"

# ---- n2: the same image through its own mirror, peers first ----
check "containerd forgets the image and its content" forget "$R/team/app:v1"
check "ctr pulls and unpacks it through n2's mirror" pulled "$R/team/app:v1" "$T/hosts2"
check "  the unpacked files are the layers'" same_files "$R/team/app:v1" "${APP[@]:1}"
check "  containerd never asked the registry itself" test "$(containerd_asked)" = 0
check "every blob of the image left the registry once for both nodes (Range bytes summed)" \
	python3 "$FIXTURES/oci_layout.py" sent-once "$T/log.json" "$L" team/app "${APP[@]}"
check "  n2 started one pull" test "$(started "$H2")" = 1
check "  its blocks came from n1 (a peer)" \
	grep -Eq "mirror: pulled oci://$R/team/app:v1.* [1-9][0-9]* from peers\)" "$T/a2.log"

# ---- requests for one image share its pull ----
before=$(started "$H1")
cons=()
for i in 1 2 3; do
	curl -s -I -o /dev/null -D "$T/con$i" "http://$M1/v2/team/tool/manifests/v1$NS" &
	cons+=($!)
done
wait "${cons[@]}"
check "three requests at once for another image: each 200 with its digest" bash -c \
	"for i in 1 2 3; do tr -d '\r' <'$T/con'\$i | grep -qx 'Docker-Content-Digest: $D_TOOL' || exit 1; done"
check "  one pull for them" test "$(started "$H1")" = $((before + 1))
tool_ds=$("$SYNCBIT" status --socket "$T/a1.sock" --json 2>/dev/null | tail -1 | python3 -c "
import json, sys
print([d['name'] for d in json.load(sys.stdin)['datasets'] if '/team/tool:v1' in (d.get('source') or '')][0])")
check "  syncbit dataset rm of its pull-* dataset on the scheduler" \
	"$SYNCBIT" dataset rm "$tool_ds" --scheduler "$SCHED" --token-file "$TOKEN"
for _ in $(seq 100); do grep -q "dataset $tool_ds: no longer assigned here; unpinning it" "$T/a1.log" && break; sleep 0.1; done
check "  n1 unpins it" grep -q "dataset $tool_ds: no longer assigned here; unpinning it" "$T/a1.log"
check "an image by digest (no tag): pulled as oci://…@DIGEST and served" bash -c \
	"curl -sf 'http://$M1/v2/team/dig/manifests/$D_DIG$NS' | sha256sum | grep -q '^${D_DIG#sha256:} ' &&
	 grep -q 'pulling oci://$R/team/dig@$D_DIG?platform=linux/amd64' '$T/a1.log'"

# ---- an index: the registry's, each node pulling its own platform ----
tagdigest() { curl -sf -I "http://$1/v2/team/multi/manifests/v1$NS" | tr -d '\r' | awk '/^Docker-Content-Digest:/ {print $2}'; }
# doc MIRROR DIGEST: GET of the manifest by digest is 200 and hashes to it.
doc() { test "sha256:$(curl -sf "http://$1/v2/team/multi/manifests/$2$NS" | sha256sum | cut -c1-64)" = "$2"; }
check "an image index by tag: n1 pulls it for linux/amd64 and answers the registry's index" \
	test "$(tagdigest "$M1")" = "$D_MULTI"
check "  n1 pulled oci://…:v1?platform=linux/amd64" grep -q "pulling oci://$R/team/multi:v1?platform=linux/amd64" "$T/a1.log"
check "  n4 pulls it for the platform --registry-mirror-platform names and answers the index too" \
	test "$(tagdigest "$M4")" = "$D_MULTI"
check "  n4 pulled oci://…:v1?platform=linux/arm64" grep -q "pulling oci://$R/team/multi:v1?platform=linux/arm64" "$T/a4.log"
check "  n1 serves the index and the amd64 manifest by digest, no other pull" bash -c \
	"$(declare -f doc); NS='$NS' doc '$M1' '$D_MULTI' && doc '$M1' '$MULTI_AMD' &&
	 test \"\$(grep -c 'pulling oci://$R/team/multi' '$T/a1.log')\" = 1"
check "  n4 serves the index and the arm64 manifest by digest, no other pull" bash -c \
	"$(declare -f doc); NS='$NS' doc '$M4' '$D_MULTI' && doc '$M4' '$MULTI_ARM' &&
	 test \"\$(grep -c 'pulling oci://$R/team/multi' '$T/a4.log')\" = 1"
check "another platform's manifest on n1: pulled on demand as oci://…@DIGEST and served" bash -c \
	"$(declare -f doc); NS='$NS' doc '$M1' '$MULTI_ARM' &&
	 grep -q 'pulling oci://$R/team/multi@$MULTI_ARM?platform=linux/amd64' '$T/a1.log'"

# ---- an image the registry does not have: fast, and containerd goes on ----
cat >"$T/ghost.toml" <<CONF
server = "http://$R"

[host."http://$M1"]
  capabilities = ["pull", "resolve"]

[host."http://$R2"]
  capabilities = ["pull", "resolve"]
CONF
mkdir -p "$T/hosts3/$R" && cp "$T/ghost.toml" "$T/hosts3/$R/hosts.toml"
out=$(curl -s -o "$T/err" -w '%{http_code} %{time_total}' "http://$M1/v2/team/ghost/manifests/nope$NS")
check "a tag the registry lacks: the pull fails fast, 404 MANIFEST_UNKNOWN in < 10 s" \
	python3 - "$out" "$T/err" <<'PY'
import json, sys
code, secs = sys.argv[1].split()
assert code == "404", code
e = json.load(open(sys.argv[2]))["errors"][0]
assert e["code"] == "MANIFEST_UNKNOWN" and "failed" in e["message"], e
assert float(secs) < 10, secs
PY
check "  the reason is logged at warn" grep -Eq 'warn: .*on-demand pull of oci://[^ ]*/team/ghost:nope.* failed' "$T/a1.log"
check "  asked again: 404 at once (the failure is remembered)" quick MANIFEST_UNKNOWN "$M1" "/v2/team/ghost/manifests/nope$NS"
started_at=$(date +%s.%N)
check "ctr pulls $R/team/ghost:v1 (only in the next host) after n1's mirror fails" pulled "$R/team/ghost:v1" "$T/hosts3"
secs=$(python3 -c "import time; print(round(time.time() - $started_at, 2))")
echo "       pulled in $secs s"
check "  the unpacked files are its layer's" same_files "$R/team/ghost:v1" "${GHOST[1]}"
check "  n1's mirror tried an on-demand pull of it first" \
	grep -q "on-demand pull of oci://$R/team/ghost:v1?platform=linux/amd64 failed" "$T/a1.log"

# ---- a registry that never answers: the request waits the bound only ----
out=$(curl -s -o "$T/err" -w '%{http_code} %{time_total}' "http://$M4/v2/team/slow/manifests/v1?ns=$SILENT_REG")
check "a registry that never answers: 404 after --registry-mirror-pull-wait (8 s)" \
	python3 - "$out" "$T/err" <<'PY'
import json, sys
code, secs = sys.argv[1].split()
assert code == "404", code
assert json.load(open(sys.argv[2]))["errors"][0]["code"] == "MANIFEST_UNKNOWN"
assert 7.5 <= float(secs) < 30, secs
PY
check "  the reason is logged at warn" grep -Eq 'warn: .*pull of oci://[^ ]*/team/slow:v1.*no manifest within 8 s' "$T/a4.log"
check "  counted" test "$(metric "$H4" syncbit_mirror_pull_wait_expired_total)" = 1
check "  while that pull runs, its repository is a 404 at once" \
	quick MANIFEST_UNKNOWN "$M4" "/v2/team/slow/manifests/sha256:$(printf '%064d' 0)?ns=$SILENT_REG"

# ---- the scheduler drops the pulled dataset after --pull-linger; asked again, it comes again ----
gone=0
for _ in $(seq 300); do
	"$SYNCBIT" status --socket "$T/a1.sock" --json 2>/dev/null | tail -1 >"$T/st1.json"
	if ! grep -q "\"source\": *\"oci://$R/team/app:v1" "$T/st1.json"; then gone=1; break; fi
	sleep 0.2
done
check "the pulled dataset leaves n1 after --pull-linger" test "$gone" = 1
before=$(started "$H1")
check "  then the image is pulled again when asked for" bash -c \
	"curl -sf -I 'http://$M1/v2/team/app/manifests/v1$NS' | tr -d '\r' | grep -qx 'Docker-Content-Digest: $D_APP'"
check "  by a new pull" test "$(started "$H1")" = $((before + 1))

containerd_stop_simple
stop_cluster
finish
