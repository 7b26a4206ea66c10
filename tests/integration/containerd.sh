# shellcheck shell=bash
# Debian's containerd for the image tests, private to the test: root, state,
# socket and log under a directory in $T. Sourced after lib.sh.
#
# CONTAINERD_BIN and CTR_BIN run the same tests against another containerd
# (default: Debian's `containerd` and `ctr` from PATH), e.g. one built from
# source: CONTAINERD_BIN=/opt/containerd-2.0/bin/containerd
# CTR_BIN=/opt/containerd-2.0/bin/ctr. A containerd given by path runs with
# its own directory first in PATH, so it starts the shim built beside it
# (containerd-shim-runc-v2), not Debian's.
CONTAINERD_BIN=${CONTAINERD_BIN:-containerd}
CTR_BIN=${CTR_BIN:-ctr}

# containerd_major: the major version of $CONTAINERD_BIN (1 or 2), from
# `containerd --version` ("containerd PACKAGE VERSION REVISION").
containerd_major() {
	"$CONTAINERD_BIN" --version | awk '{ v = $3; sub(/^v/, "", v); split(v, a, "."); print a[1] }'
}

# containerd_version: "containerd VERSION" of $CONTAINERD_BIN, for the log.
containerd_version() {
	"$CONTAINERD_BIN" --version | awk '{print $1, $3}'
}

# containerd_path: the PATH $CONTAINERD_BIN runs with: its directory first
# when it is given by path (so its own shim is the one started), else PATH.
containerd_path() {
	case $CONTAINERD_BIN in
	*/*) echo "$(dirname "$CONTAINERD_BIN"):$PATH" ;;
	*) echo "$PATH" ;;
	esac
}

# containerd_run ARG...: exec $CONTAINERD_BIN with ARGs and that PATH (in a
# subshell: `containerd_run ... &`).
containerd_run() {
	PATH=$(containerd_path) exec "$CONTAINERD_BIN" "$@"
}

# containerd_config DIR [SNAP]: DIR/config.toml for a containerd whose root,
# state and socket (DIR/containerd.sock) are in DIR. No CRI (Kubernetes' API,
# CNI), no NRI, no tracing and no snapshotters for other filesystems: ctr
# needs none. The same settings for every containerd: config version 2 for
# 1.6 and 1.7, version 3 for 2.x (which would otherwise migrate version 2
# at each start, with a warning). The disabled list names the plugins of
# both: 2.x split CRI into io.containerd.cri.v1.images and .runtime beside
# io.containerd.grpc.v1.cri (the pod sandbox controller and its gRPC
# service need the runtime one, so they go too), and enables NRI (a socket
# in /var/run/nri) by default; a name a version does not have is ignored.
# containerd 2.x pulls and imports through its transfer service, which
# unpacks only for the platforms and snapshotters of its unpack_config (by
# default the host's platform on overlayfs): with SNAP, the config lets it
# unpack linux/amd64 and linux/arm64 (the platforms the tests' images have;
# "walking" is the differ for both, a platform the host does not run is only
# unpacked, never run) with snapshotter SNAP. 1.6 and 1.7 unpack in ctr.
containerd_config() {
	local c=$1 snap=${2:-} v=2 p
	[ "$(containerd_major)" -ge 2 ] && v=3
	mkdir -p "$c"
	cat >"$c/config.toml" <<CONF
version = $v
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images",
  "io.containerd.cri.v1.runtime", "io.containerd.podsandbox.controller.v1.podsandbox",
  "io.containerd.grpc.v1.sandbox-controllers", "io.containerd.nri.v1.nri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
CONF
	[ "$v" = 3 ] && [ -n "$snap" ] || return 0
	for p in linux/amd64 linux/arm64; do
		cat >>"$c/config.toml" <<CONF
[[plugins."io.containerd.transfer.v1.local".unpack_config]]
  platform = "$p"
  snapshotter = "$snap"
  differ = "walking"
CONF
	done
}

# containerd_wait: until the containerd started as CTRD_PID answers ctr
# (CTR), for up to 10 s; 1 when it died or never answered.
containerd_wait() {
	for _ in $(seq 100); do
		"${CTR[@]}" version >/dev/null 2>&1 && return 0
		kill -0 "$CTRD_PID" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# containerd_snapshotter: SNAP = $SNAPSHOTTER, else overlayfs where this
# containerd can use it ($T on overlayfs itself, in a container, cannot),
# else native; says why when it falls back. C is the containerd's dir.
containerd_snapshotter() {
	SNAP=${SNAPSHOTTER:-overlayfs}
	if [ "$SNAP" = overlayfs ] &&
		! "${CTR[@]}" plugins ls | grep -Eq '^io\.containerd\.snapshotter\.v1 +overlayfs .* ok'; then
		echo "       overlayfs snapshotter unavailable, using native: $(grep -m1 -E 'overlayfs.*(skip|fail)' "$C/log" | cut -c1-240)"
		SNAP=native
	fi
}

# containerd_stop_simple: stop the containerd of containerd_start and lift
# any mount left under $T (runs from CLEANUPS, before lib.sh removes $T).
containerd_stop_simple() {
	if [ -n "${CTRD_PID:-}" ]; then
		kill -TERM "$CTRD_PID" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$CTRD_PID" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$CTRD_PID" 2>/dev/null
	fi
	grep -F " $T/" /proc/self/mountinfo | awk '{print $5}' | sort -r | while read -r mnt; do umount -l "$mnt"; done
	return 0
}

# containerd_launch: start containerd on $C/config.toml in the background,
# its log $C/log; sets CTRD_PID. A test that must start it otherwise (in a
# mount namespace of its own) gives containerd_up a function of its own.
containerd_launch() {
	containerd_run --config "$C/config.toml" >"$C/log" 2>&1 &
	CTRD_PID=$!
	PIDS+=("$CTRD_PID")
}

# containerd_up LAUNCH: start containerd with the function LAUNCH (e.g.
# containerd_launch) on $C/config.toml, wait until it answers and choose
# SNAP. containerd 2.x is then stopped and started again with the unpack
# platforms for SNAP in its config (containerd_config; which snapshotter
# works is only known once it ran), the first start's log kept as
# $C/log.probe. Returns 1, with containerd's last errors shown, when it
# does not answer.
containerd_up() {
	local launch=$1
	"$launch"
	if ! containerd_wait; then
		grep -E 'level=(error|fatal)' "$C/log" | tail -5
		return 1
	fi
	containerd_snapshotter
	[ "$(containerd_major)" -ge 2 ] || return 0
	kill -TERM "$CTRD_PID"
	for _ in $(seq 100); do kill -0 "$CTRD_PID" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$CTRD_PID" 2>/dev/null
	mv "$C/log" "$C/log.probe"
	containerd_config "$C" "$SNAP"
	"$launch"
	if ! containerd_wait; then
		grep -E 'level=(error|fatal)' "$C/log" | tail -5
		return 1
	fi
}

# containerd_start DIR NAMESPACE SECONDS: a containerd pulling images only
# (no containers run), its log DIR/log; sets C, SOCK, CTR (ctr on that
# socket and namespace, each call bounded by SECONDS), CTRD_PID and SNAP.
# Returns 1, with containerd's last errors shown, when it does not answer.
containerd_start() {
	C=$1
	SOCK=$C/containerd.sock
	CTR=(timeout -k 5 "$3" "$CTR_BIN" --address "$SOCK" --namespace "$2")
	containerd_config "$C"
	CLEANUPS+=(containerd_stop_simple)
	containerd_up containerd_launch
}

# ctr_major: the major version of $CTR_BIN (1 or 2), from `ctr --version`
# ("ctr PACKAGE VERSION").
ctr_major() {
	"$CTR_BIN" --version | awk '{ v = $3; sub(/^v/, "", v); split(v, a, "."); print a[1] }'
}

# pulled REF HOSTS [ARG...]: ctr pulls and unpacks REF with that hosts dir
# (ARGs to ctr images pull, e.g. --platform linux/arm64). The platforms
# pulled only (this host's, or --platform's), as the kubelet's pulls through
# the CRI plugin do in every version: ctr 2.x otherwise also fetches the
# manifest and config of every other platform an image index lists
# (--skip-metadata turns that off; ctr 1.x has no such fetch), which a
# mirror holding some platforms does not have and the stopped registry
# cannot give.
pulled() {
	local ref=$1 hosts=$2 meta=()
	shift 2
	[ "$(ctr_major)" -ge 2 ] && meta=(--skip-metadata)
	"${CTR[@]}" images pull --hosts-dir "$hosts" --snapshotter "$SNAP" "${meta[@]}" "$@" "$ref" >"$T/pull.out" 2>&1 ||
		{ tail -3 "$T/pull.out"; return 1; }
}

# same_files REF LAYER...: the image's unpacked root holds what the layers
# do (the layers' tarballs in the test's OCI layout $L); the image of
# platform $MOUNT_PLATFORM when it is set. Each call mounts at a path of its
# own, the key of its view snapshot: a view left behind is never mounted
# again for another image, as one under a reused key would be. One is left
# with ctr 1.6, whose `images mount` takes the view from overlayfs whatever
# --snapshotter says (fixed in 1.7) while `images unmount --rm` removes it
# from the snapshotter named (here $SNAP, where 1.7 and 2.x made it); its
# lease is gone with the unmount, so containerd's collector takes it.
SAME_FILES_N=0
same_files() {
	local ref=$1 mnt x=$T/expect rc=0 f l; shift
	SAME_FILES_N=$((SAME_FILES_N + 1))
	mnt=$T/mnt.$SAME_FILES_N
	rm -rf "$x"; mkdir -p "$mnt" "$x"
	for l in "$@"; do tar -xzf "$L/blobs/sha256/$l" -C "$x"; done
	"${CTR[@]}" images mount --snapshotter "$SNAP" ${MOUNT_PLATFORM:+--platform "$MOUNT_PLATFORM"} \
		"$ref" "$mnt" >/dev/null || return 1
	for f in $(cd "$x" && ls); do cmp "$x/$f" "$mnt/$f" || rc=1; done
	"${CTR[@]}" images unmount --snapshotter "$SNAP" --rm "$mnt" >/dev/null
	return $rc
}
