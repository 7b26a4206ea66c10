# shellcheck shell=bash
# Debian's containerd for the image tests, private to the test: root, state,
# socket and log under a directory in $T. Sourced after lib.sh.

# containerd_config DIR: DIR/config.toml for a containerd whose root, state
# and socket (DIR/containerd.sock) are in DIR. No CRI (Kubernetes' API,
# CNI), no tracing and no snapshotters for other filesystems: ctr needs none.
containerd_config() {
	local c=$1
	mkdir -p "$c"
	cat >"$c/config.toml" <<CONF
version = 2
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs",
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

# containerd_start DIR NAMESPACE SECONDS: a containerd pulling images only
# (no containers run), its log DIR/log; sets C, SOCK, CTR (ctr on that
# socket and namespace, each call bounded by SECONDS), CTRD_PID and SNAP.
# Returns 1, with containerd's last errors shown, when it does not answer.
containerd_start() {
	C=$1
	SOCK=$C/containerd.sock
	CTR=(timeout -k 5 "$3" ctr --address "$SOCK" --namespace "$2")
	containerd_config "$C"
	CLEANUPS+=(containerd_stop_simple)
	containerd --config "$C/config.toml" >"$C/log" 2>&1 &
	CTRD_PID=$!
	PIDS+=("$CTRD_PID")
	if ! containerd_wait; then
		grep -E 'level=(error|fatal)' "$C/log" | tail -5
		return 1
	fi
	containerd_snapshotter
}

# pulled REF HOSTS [ARG...]: ctr pulls and unpacks REF with that hosts dir
# (ARGs to ctr images pull, e.g. --platform linux/arm64).
pulled() {
	local ref=$1 hosts=$2
	shift 2
	"${CTR[@]}" images pull --hosts-dir "$hosts" --snapshotter "$SNAP" "$@" "$ref" >"$T/pull.out" 2>&1 ||
		{ tail -3 "$T/pull.out"; return 1; }
}

# same_files REF LAYER...: the image's unpacked root holds what the layers
# do (the layers' tarballs in the test's OCI layout $L); the image of
# platform $MOUNT_PLATFORM when it is set.
same_files() {
	local ref=$1 mnt=$T/mnt x=$T/expect rc=0 f l; shift
	rm -rf "$x"; mkdir -p "$mnt" "$x"
	for l in "$@"; do tar -xzf "$L/blobs/sha256/$l" -C "$x"; done
	"${CTR[@]}" images mount --snapshotter "$SNAP" ${MOUNT_PLATFORM:+--platform "$MOUNT_PLATFORM"} \
		"$ref" "$mnt" >/dev/null || return 1
	for f in $(cd "$x" && ls); do cmp "$x/$f" "$mnt/$f" || rc=1; done
	"${CTR[@]}" images unmount --rm "$mnt" >/dev/null
	return $rc
}
