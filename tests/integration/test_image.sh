#!/usr/bin/env bash
# The container image (deploy/image/build.sh, what `make image` runs): built
# with no network, reproducible, one layer holding only what ldd lists plus
# CA certificates and the syncbit user, no set-id file; `skopeo inspect` of
# the OCI layout and the docker-archive; then the docker-archive imported
# into a containerd of the test's own (Debian's containerd and runc; config,
# root, state and socket under $T) and run: its default command, `version`,
# a pull of a read-only bind-mounted tree into a bind-mounted target as uid
# 65532, and an HTTP pull by host name over the host network.
# Only the shims' sockets go elsewhere: containerd (1.6 to 2.x) puts them in
# /run/containerd/s/ whatever its config says, named by a hash of our
# socket's path, so they never meet a system containerd's; a shim exits and
# removes its own, and the cleanup removes those of shims it had to kill.
# SNAPSHOTTER=native runs the containers without overlayfs.
#
# The image packs $SYNCBIT, the binary this run of the suite tests: under
# SAN=1 that is the ASan+UBSan build, and the image then also carries
# libasan and libubsan, which ldd lists like any other library. So nothing
# is compiled here (bin/syncbit may be missing or stale when only build-san/
# is fresh), what runs in the container runs under the sanitizers too, and
# the assembly is shown not to depend on one fixed list of libraries.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/containerd.sh"

ROOT=$(cd "$HERE/../.." && pwd)
NS=syncbit-test
UID_=65532
for tool in "$CONTAINERD_BIN" "$CTR_BIN" runc skopeo unshare nginx; do
	command -v "$tool" >/dev/null || { bad "$tool is installed (tests/deps.sh)"; finish; exit 1; }
done
[ "$(id -u)" -eq 0 ] || { bad "runs as root (containerd and runc need it)"; finish; exit 1; }
export ASAN_OPTIONS="log_path=$T/san${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="log_path=$T/san${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

VERSION=$("$SYNCBIT" version | awk 'NR == 1 {print $2}')
case $(dpkg --print-architecture) in
amd64) ARCH=amd64 ;; arm64) ARCH=arm64 ;; armhf | armel) ARCH=arm ;; i386) ARCH=386 ;;
ppc64el) ARCH=ppc64le ;; *) ARCH=$(dpkg --print-architecture) ;;
esac
EPOCH=$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 1700000000)

# ---- build, offline and reproducible ----
build() { # build DIR: the image of $SYNCBIT into DIR, in a network namespace with no network
	unshare --net env BIN="$SYNCBIT" IMAGE_DIR="$1" SOURCE_DATE_EPOCH="$EPOCH" "$ROOT/deploy/image/build.sh"
}
started=$(date +%s.%N)
check "the image builds with no network (unshare --net)" build "$T/image" || { cat "$T/.out"; finish; exit 1; }
echo "       built in $(python3 -c "import time; print(round(time.time() - $started, 1))") s"
OCI=$T/image/oci
check "a second build gives the same digests" build "$T/image2"
check "  (index.json, and with it every blob, is byte for byte the same)" cmp "$OCI/index.json" "$T/image2/oci/index.json"

# The layout holds the three blobs of one image and nothing else: no base.
manifest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"][7:])' "$OCI/index.json")
layer=$(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(len(m["layers"]), m["layers"][0]["digest"][7:])' "$OCI/blobs/sha256/$manifest")
check "one layer in the manifest" test "${layer%% *}" = 1
layer=$OCI/blobs/sha256/${layer#* }
check "three blobs in the layout: manifest, config, layer" test "$(ls "$OCI/blobs/sha256" | wc -l)" = 3
echo "       layer $(stat -c %s "$layer") bytes gzip'd, $(gzip -dc "$layer" | wc -c) bytes; docker-archive $(stat -c %s "$T/image/syncbit.tar") bytes"

# ---- what the layer holds ----
ldd "$SYNCBIT" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' >"$T/libs"
layer_check() { # layer_check WHAT: python over the layer's members, exits non-zero on a finding
	python3 - "$layer" "$1" "$T/libs" "$EPOCH" "$UID_" <<'PY'
import hashlib, sys, tarfile
path, what, libs, epoch, uid = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
t = tarfile.open(path, "r:gz")
m = {x.name.rstrip("/"): x for x in t.getmembers()}
def fail(msg):
    sys.exit(msg)
if what == "setid":
    bad = [n for n, x in m.items() if x.mode & 0o6000 or x.isdev() or x.ischr() or x.isblk()]
    bad and fail("set-id or device entries: %s" % bad)
elif what == "owners":
    bad = [n for n, x in m.items() if (x.uid, x.gid) != ((uid, uid) if n == "var/lib/syncbit" else (0, 0))]
    bad += [n for n, x in m.items() if x.uname or x.gname]
    bad and fail("wrong owners: %s" % bad)
elif what == "mtimes":
    bad = [n for n, x in m.items() if x.mtime != epoch]
    bad and fail("mtimes not SOURCE_DATE_EPOCH: %s" % bad)
elif what == "libs":
    want = [l.strip().lstrip("/") for l in open(libs) if l.strip()]
    missing = [l for l in want if l not in m or not m[l].isfile()]
    missing and fail("missing: %s" % missing)
elif what == "tree":
    for n, kind in [("usr/bin/syncbit", "file"), ("etc/ssl/certs/ca-certificates.crt", "file"),
                    ("etc/passwd", "file"), ("etc/group", "file"), ("etc/nsswitch.conf", "file"),
                    ("tmp", "dir"), ("var/lib/syncbit", "dir")]:
        x = m.get(n)
        if x is None or (kind == "file") != x.isfile():
            fail("%s is not a %s" % (n, kind))
    m["tmp"].mode & 0o7777 == 0o1777 or fail("/tmp mode %o" % m["tmp"].mode)
    m["usr/bin/syncbit"].mode & 0o777 == 0o755 or fail("syncbit mode %o" % m["usr/bin/syncbit"].mode)
    ca = t.extractfile("etc/ssl/certs/ca-certificates.crt").read()
    ca == open("/etc/ssl/certs/ca-certificates.crt", "rb").read() or fail("CA bundle differs from the host's")
    pw = t.extractfile("etc/passwd").read().decode().splitlines()
    "syncbit:x:%d:%d:syncbit:/var/lib/syncbit:/sbin/nologin" % (uid, uid) in pw or fail("passwd: %s" % pw)
    gr = t.extractfile("etc/group").read().decode().splitlines()
    "syncbit:x:%d:" % uid in gr or fail("group: %s" % gr)
    others = [n for n in m if not n.startswith(("etc", "lib", "usr", "tmp", "var"))]
    others and fail("unexpected top-level entries: %s" % others)
PY
}
check "no setuid, setgid or device file in the layer" layer_check setid
check "everything root's but /var/lib/syncbit ($UID_:$UID_), numeric owners" layer_check owners
check "every mtime is SOURCE_DATE_EPOCH" layer_check mtimes
check "every library ldd lists, and the loader, at its path" layer_check libs
check "syncbit, the host's CA bundle, passwd and group, /tmp 1777" layer_check tree

# ---- skopeo inspect ----
inspect_check() { # inspect_check REF
	skopeo inspect "$1" >"$T/inspect.json" && skopeo inspect --config "$1" >"$T/config.json" &&
	python3 - "$T/inspect.json" "$T/config.json" "$ARCH" "$VERSION" "$(git -C "$ROOT" rev-parse HEAD)" <<'PY'
import json, sys
i, c = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
arch, version, rev = sys.argv[3:6]
cc = c["config"]
want = [("Architecture", i["Architecture"], arch), ("Os", i["Os"], "linux"),
        ("layers", len(i["Layers"]), 1),
        ("User", cc.get("User"), "65532:65532"),
        ("Entrypoint", cc.get("Entrypoint"), ["/usr/bin/syncbit"]),
        ("Cmd", cc.get("Cmd"), ["--help"]),
        ("SSL_CERT_FILE", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" in cc.get("Env", []), True),
        ("version label", cc["Labels"].get("org.opencontainers.image.version"), version),
        ("revision label", cc["Labels"].get("org.opencontainers.image.revision", "").split("-")[0], rev)]
bad = ["%s %r, not %r" % w for w in want if w[1] != w[2]]
if bad:
    sys.exit("; ".join(bad))
PY
}
check "skopeo inspect oci:…:$VERSION: $ARCH linux, 1 layer, user 65532, entrypoint, labels" inspect_check "oci:$OCI:$VERSION"
check "skopeo inspect docker-archive: the same" inspect_check "docker-archive:$T/image/syncbit.tar"

# ---- containerd of our own ----
C=$T/containerd
SOCK=$C/containerd.sock
CG=$(basename "$T") # cgroup parent of our containers, removed at the end
mkdir -p "$C/runc" "$C/fifo"
containerd_config "$C"
CTR=(timeout -k 5 30 "$CTR_BIN" --address "$SOCK" --namespace "$NS")

# Stop what we started, even after a failure halfway or a containerd that
# died: tasks, containerd, containers runc still knows, shims (found by our
# socket's path, which only ours carry), any process left in our cgroups,
# mounts under $T, the cgroups. Runs before lib.sh removes $T.
containerd_stop() {
	local id pid mnt d
	if [ -S "$SOCK" ] && "${CTR[@]}" version >/dev/null 2>&1; then
		for id in $("${CTR[@]}" tasks ls -q); do
			"${CTR[@]}" tasks kill -s SIGKILL "$id"; "${CTR[@]}" tasks delete "$id"
		done
		for id in $("${CTR[@]}" containers ls -q); do "${CTR[@]}" containers delete "$id"; done
	fi
	if [ -n "${CTRD_PID:-}" ]; then
		kill -TERM "$CTRD_PID" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$CTRD_PID" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$CTRD_PID" 2>/dev/null
	fi
	for id in $(runc --root "$C/runc/$NS" list -q 2>/dev/null); do
		timeout 10 runc --root "$C/runc/$NS" delete --force "$id"
	done
	# "[.]": the pattern must not match grep's own command line.
	for pid in $(grep -ls -- "${SOCK%.sock}[.]sock" /proc/[0-9]*/cmdline | cut -d/ -f3); do kill -9 "$pid"; done
	for pid in $(cat /sys/fs/cgroup/pids/"$CG"/*/cgroup.procs /sys/fs/cgroup/"$CG"/*/cgroup.procs 2>/dev/null); do
		kill -9 "$pid"
	done
	# A shim killed above leaves its socket, named as containerd 1.6 names it.
	for id in $(seq -f "sb-$$-%g" 1 "$n"); do
		rm -f "/run/containerd/s/$(printf '%s' "$SOCK/$NS/$id" | sha256sum | cut -c1-64)"
	done
	grep -F " $T/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r mnt; do umount -l "$mnt"; done
	for d in /sys/fs/cgroup/*/"$CG" /sys/fs/cgroup/"$CG"; do
		[ -d "$d" ] || continue
		for _ in $(seq 20); do find "$d" -depth -type d -exec rmdir {} + 2>/dev/null; [ -d "$d" ] || break; sleep 0.1; done
	done
	return 0
}
n=0
CLEANUPS+=(containerd_stop)

# runc needs the cgroup hierarchy a booted system mounts. Where none is
# mounted (a bare chroot), containerd and its shims run in a mount namespace
# of their own in which the kernel's controllers are mounted as systemd
# would: cgroup v1 controllers under a tmpfs, or cgroup2 alone.
launch() {
	if grep -qE ' - cgroup2? ' /proc/self/mountinfo; then
		containerd_run --config "$C/config.toml" >"$C/log" 2>&1 &
	else
		echo "       no cgroup hierarchy mounted: containerd gets one in its own mount namespace"
		PATH=$(containerd_path) unshare -m --propagation private bash -c '
			if awk "NR > 1 && \$2 != 0 { v1 = 1 } END { exit !v1 }" /proc/cgroups; then
				mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup || exit 1
				for c in $(awk "NR > 1 && \$2 != 0 && \$4 == 1 { print \$1 }" /proc/cgroups); do
					mkdir -p "/sys/fs/cgroup/$c" && mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"
				done
				mkdir -p /sys/fs/cgroup/unified && mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
			else
				mount -t cgroup2 cgroup2 /sys/fs/cgroup || exit 1
			fi
			exec "$2" --config "$1"' _ "$C/config.toml" "$CONTAINERD_BIN" >"$C/log" 2>&1 &
	fi
	CTRD_PID=$!
	PIDS+=("$CTRD_PID")
}
check "containerd starts with its root, state and socket under \$T" containerd_up launch || { finish; exit 1; }
echo "       $(containerd_version), snapshotter $SNAP"
REF=docker.io/library/syncbit:$VERSION
check "ctr images import of the docker-archive" "${CTR[@]}" images import --snapshotter "$SNAP" "$T/image/syncbit.tar"
check "  it is $REF" bash -c "$(printf '%q ' "${CTR[@]}") images ls -q | grep -qxF '$REF'"

# crun [ctr run flags...] -- [command...]: runs the image once, seccomp on
# (the default profile, like Kubernetes' RuntimeDefault), removed after.
crun() {
	local flags=()
	while [ "$1" != -- ]; do flags+=("$1"); shift; done
	shift
	n=$((n + 1))
	"${CTR[@]}" run --rm --seccomp --snapshotter "$SNAP" --runc-root "$C/runc" --fifo-dir "$C/fifo" \
		--cgroup "/$CG/c$n" "${flags[@]}" "$REF" "sb-$$-$n" "$@"
}
# ran RC FILE command...: the run exited 0 and the command passes; shows
# the run's last lines when not.
ran() {
	local rc=$1 out=$2; shift 2
	[ "$rc" -eq 0 ] && "$@" || { echo "exit $rc: $(tail -3 "$out" | tr '\n' ' ')"; return 1; }
}
crun -- >"$T/help.out" 2>&1
check "the default command (Entrypoint + Cmd) is syncbit --help" ran $? "$T/help.out" grep -q '^usage: syncbit COMMAND' "$T/help.out"
crun -- /usr/bin/syncbit version >"$T/version.out" 2>&1
check "syncbit version in the container: $VERSION" ran $? "$T/version.out" grep -q "^syncbit $VERSION " "$T/version.out"

# A tree on a read-only bind mount pulled into a bind-mounted target owned
# by the image's user: the files it writes show which uid it ran as, and
# the cache goes to the image's /var/lib/syncbit (SYNCBIT_DATA), which
# only a layer giving that directory to uid 65532 lets it write.
S=$T/src OUT=$T/out
mkdir -p "$S/sub" "$OUT"
head -c $((3 << 20)) /dev/urandom >"$S/sub/weights.bin"
echo "config" >"$S/config.json"
chmod -R a+rX "$S"
chown "$UID_:$UID_" "$OUT"
crun --mount "type=bind,src=$S,dst=/src,options=rbind:ro" --mount "type=bind,src=$OUT,dst=/out,options=rbind:rw" \
	-- /usr/bin/syncbit pull /src --to /out/model --json >"$T/pull.out" 2>&1
check "syncbit pull of a read-only bind mount in the container" ran $? "$T/pull.out" \
	test "$(json_field "$T/pull.out" files 2>/dev/null)" = 2
check "  the tree arrived intact" diff -r "$S" "$OUT/model"
check "  written as uid:gid $UID_:$UID_ (the image's User)" \
	test "$(stat -c %u:%g "$OUT/model/sub/weights.bin")" = "$UID_:$UID_"
check "  every byte from the source" test "$(json_field "$T/pull.out" bytes_from_source 2>/dev/null)" = $(((3 << 20) + 7))

# Over the host's network, by host name: libcurl and glibc's built-in
# "files" NSS service work in an image without libnss_*.so.
W=$T/www
mkdir -p "$W"
head -c 100000 /dev/urandom >"$W/blob"
start_nginx "$W"
crun --net-host --mount "type=bind,src=$OUT,dst=/out,options=rbind:rw" \
	-- /usr/bin/syncbit pull "http://localhost:$NGINX_PORT/blob" --to /out/http --json >"$T/http.out" 2>&1
check "syncbit pull http://localhost:… in the container" ran $? "$T/http.out" cmp "$W/blob" "$OUT/http/blob"

check "no sanitizer report" bash -c "! ls '$T'/san.* 2>/dev/null"
check "no container left behind" test -z "$("${CTR[@]}" containers ls -q)"
finish
