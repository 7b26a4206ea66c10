#!/usr/bin/env bash
# Builds Syncbit's container image offline, from no base image: the binary,
# the shared libraries `ldd` lists for it (and the dynamic loader) at the
# paths it lists, the build machine's CA bundle, /etc/passwd and /etc/group
# with a non-root user, and the Debian copyright files of those libraries.
# One reproducible layer (sorted names, fixed mtime, numeric owners, gzip -n):
# the same tree and SOURCE_DATE_EPOCH give the same digests on any machine
# with the same packages. Written as an OCI layout and a docker-archive,
# then checked with `skopeo inspect`. Nothing is fetched from the network.
#
# Environment (all optional):
#   BIN                the binary to pack [bin/syncbit]
#   IMAGE_DIR          output: IMAGE_DIR/oci (OCI layout), IMAGE_DIR/syncbit.tar
#                      (docker-archive) [build/image]
#   IMAGE_NAME         name in the docker-archive [syncbit]
#   TAG                tag [the version `BIN version` prints]
#   IMAGE_SOURCE       org.opencontainers.image.source [git remote.origin.url]
#   SOURCE_DATE_EPOCH  every timestamp [the time of the last git commit]
set -euo pipefail
umask 022
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/bin/syncbit}
IMAGE_DIR=${IMAGE_DIR:-$ROOT/build/image}
IMAGE_NAME=${IMAGE_NAME:-syncbit}
USER_ID=65532 # the non-root user (distroless's "nonroot" uses the same id)
DATA_DIR=/var/lib/syncbit
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

die() { echo "image: $*" >&2; exit 1; }

[ -x "$BIN" ] || die "$BIN is not built (run 'make')"
case $IMAGE_DIR in *:*) die "IMAGE_DIR $IMAGE_DIR: skopeo references cannot hold ':'" ;; esac
for tool in ldd tar gzip sha256sum python3 skopeo strip dpkg; do
	command -v "$tool" >/dev/null || die "$tool is missing; run 'make deps'"
done
[ -f "$CA_BUNDLE" ] || die "$CA_BUNDLE is missing; install ca-certificates"

VERSION=$("$BIN" version | awk 'NR == 1 {print $2}')
[ -n "$VERSION" ] || die "$BIN version printed no version"
TAG=${TAG:-$VERSION}

git_() { git -C "$ROOT" "$@" 2>/dev/null; }
REVISION=$(git_ rev-parse HEAD || true)
if [ -n "$REVISION" ] && ! git_ diff --quiet HEAD; then
	REVISION=$REVISION-dirty
fi
# A remote URL may carry credentials (https://user:token@host/...): drop them.
SOURCE=${IMAGE_SOURCE:-$(git_ config --get remote.origin.url | sed -E 's#^([a-z+]+://)[^/@]*@#\1#' || true)}
EPOCH=${SOURCE_DATE_EPOCH:-$(git_ log -1 --format=%ct || echo 0)}

# OCI names the architectures as Go does, not as Debian does.
case $(dpkg --print-architecture) in
amd64) ARCH=amd64 VARIANT= ;;
arm64) ARCH=arm64 VARIANT=v8 ;;
armhf) ARCH=arm VARIANT=v7 ;;
armel) ARCH=arm VARIANT=v5 ;;
i386) ARCH=386 VARIANT= ;;
ppc64el) ARCH=ppc64le VARIANT= ;;
s390x) ARCH=s390x VARIANT= ;;
riscv64) ARCH=riscv64 VARIANT= ;;
mips64el) ARCH=mips64le VARIANT= ;;
*) die "no OCI name for Debian architecture $(dpkg --print-architecture)" ;;
esac

W=$(mktemp -d "${TMPDIR:-/tmp}/syncbit-image.XXXXXX")
trap 'rm -rf "$W"' EXIT
R=$W/rootfs

# ---- the tree ----
install -d -m 0755 "$R/usr/bin" "$R/etc/ssl/certs" "$R/var/lib" "$R/usr/share/doc/syncbit"
install -d -m 1777 "$R/tmp"
install -d -m 0755 "$R$DATA_DIR"
# Debug sections only: the symbol table stays, so sanitizer and crash
# backtraces still name functions.
strip --strip-debug -o "$R/usr/bin/syncbit" "$BIN"
chmod 0755 "$R/usr/bin/syncbit"
install -m 0644 "$ROOT/LICENSE" "$R/usr/share/doc/syncbit/LICENSE"
install -m 0644 "$CA_BUNDLE" "$R$CA_BUNDLE"

# "name => /path (addr)", "/path/to/ld.so (addr)"; linux-vdso has no file.
ldd_out=$(ldd "$BIN") || die "ldd $BIN failed"
if grep -q 'not found' <<<"$ldd_out"; then
	die "$BIN: $(grep 'not found' <<<"$ldd_out" | tr -s ' \t\n' ' ')"
fi
mapfile -t libs < <(awk '$2 == "=>" && $3 ~ /^\// { print $3 }' <<<"$ldd_out" | sort -u)
mapfile -t loader < <(awk '$1 ~ /^\// { print $1 }' <<<"$ldd_out")
[ ${#loader[@]} -eq 1 ] || die "ldd $BIN names no single dynamic loader (a static binary needs no image of this kind)"
candidates=()
for lib in "${libs[@]}" "${loader[0]}"; do
	# The kernel maps the loader as an executable: it needs the x bit.
	mode=0644
	[ "$lib" = "${loader[0]}" ] && mode=0755
	install -D -m "$mode" "$lib" "$R$lib" # follows the soname link to the file
	candidates+=("$lib" "/usr$lib" "$(readlink -f "$lib")")
done

# The copyright notices of the packages the libraries come from: the image
# redistributes them (LGPL and GPL among them).
mapfile -t pkgs < <(dpkg -S "${candidates[@]}" 2>/dev/null | cut -d: -f1 | sort -u)
for p in "${pkgs[@]}"; do
	f=/usr/share/doc/$p/copyright
	[ -f "$f" ] && install -D -m 0644 "$f" "$R$f"
done

cat >"$R/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
syncbit:x:$USER_ID:$USER_ID:syncbit:$DATA_DIR:/sbin/nologin
PASSWD
cat >"$R/etc/group" <<GROUP
root:x:0:
syncbit:x:$USER_ID:
GROUP
# glibc 2.34+ has the files and dns services built in: no libnss_*.so needed.
cat >"$R/etc/nsswitch.conf" <<NSS
passwd: files
group: files
hosts: files dns
NSS
# Runtimes (kubelet, docker) mount their own; this one serves bare runs.
cat >"$R/etc/hosts" <<HOSTS
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
HOSTS
chmod 0644 "$R"/etc/passwd "$R"/etc/group "$R"/etc/nsswitch.conf "$R"/etc/hosts

# ---- the layer ----
# Everything belongs to root but the data directory, which the non-root
# user must own: a second pass appends it with that owner. It sorts last
# anyway (var/lib/syncbit), so the archive stays in name order.
TAR=(tar --format=gnu --sort=name --mtime="@$EPOCH" --numeric-owner --no-acls --no-xattrs --no-selinux)
mapfile -t top < <(cd "$R" && ls -A | sort)
"${TAR[@]}" --owner=0 --group=0 --anchored --exclude="${DATA_DIR#/}" -C "$R" -cf "$W/layer.tar" "${top[@]}"
"${TAR[@]}" --owner=$USER_ID --group=$USER_ID --no-recursion -C "$R" -rf "$W/layer.tar" "${DATA_DIR#/}"
gzip -n -9 <"$W/layer.tar" >"$W/layer.tar.gz"

# ---- config, manifest, index ----
O=$W/oci
mkdir -p "$O/blobs/sha256"
export W O EPOCH VERSION TAG REVISION SOURCE ARCH VARIANT USER_ID DATA_DIR CA_BUNDLE
python3 - <<'PY'
import datetime, hashlib, json, os, shutil

e = os.environ
w, o = e["W"], e["O"]
created = datetime.datetime.fromtimestamp(int(e["EPOCH"]), datetime.timezone.utc).strftime(
    "%Y-%m-%dT%H:%M:%SZ")

def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()

def blob(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(os.path.join(o, "blobs/sha256", d[7:]), "wb") as f:
        f.write(data)
    return d, len(data)

def dump(v):
    return json.dumps(v, sort_keys=True, separators=(",", ":")).encode()

labels = {
    "org.opencontainers.image.title": "syncbit",
    "org.opencontainers.image.description": "Peer-assisted distribution of large files to cluster nodes",
    "org.opencontainers.image.version": e["VERSION"],
    "org.opencontainers.image.licenses": "Apache-2.0",
    "org.opencontainers.image.created": created,
}
if e["REVISION"]:
    labels["org.opencontainers.image.revision"] = e["REVISION"]
if e["SOURCE"]:
    labels["org.opencontainers.image.source"] = e["SOURCE"]

gz = os.path.join(w, "layer.tar.gz")
layer = sha(gz)
shutil.copyfile(gz, os.path.join(o, "blobs/sha256", layer[7:]))
platform = {"architecture": e["ARCH"], "os": "linux"}
if e["VARIANT"]:
    platform["variant"] = e["VARIANT"]
user = "%s:%s" % (e["USER_ID"], e["USER_ID"])

config = dict(platform, created=created, config={
    "User": user,
    "Entrypoint": ["/usr/bin/syncbit"],
    "Cmd": ["--help"],
    "Env": ["PATH=/usr/bin:/bin",
            "SSL_CERT_FILE=" + e["CA_BUNDLE"],
            "SYNCBIT_DATA=" + e["DATA_DIR"]],
    "Labels": labels,
}, rootfs={"type": "layers", "diff_ids": [sha(os.path.join(w, "layer.tar"))]},
history=[{"created": created, "created_by": "deploy/image/build.sh",
          "comment": "syncbit %s, its shared libraries, CA certificates, user syncbit" % e["VERSION"]}])
cdigest, csize = blob(dump(config))

manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
               "digest": cdigest, "size": csize},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer, "size": os.path.getsize(gz)}],
    "annotations": labels,
}
mdigest, msize = blob(dump(manifest))

index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "digest": mdigest, "size": msize, "platform": platform,
                   "annotations": {"org.opencontainers.image.ref.name": e["TAG"]}}],
}
with open(os.path.join(o, "index.json"), "wb") as f:
    f.write(dump(index))
with open(os.path.join(o, "oci-layout"), "wb") as f:
    f.write(dump({"imageLayoutVersion": "1.0.0"}))
with open(os.path.join(w, "digest"), "w") as f:
    f.write(mdigest)
PY

# ---- out, and checked ----
mkdir -p "$IMAGE_DIR"
rm -rf "$IMAGE_DIR/oci" "$IMAGE_DIR/syncbit.tar"
mv "$O" "$IMAGE_DIR/oci"
skopeo --insecure-policy copy --quiet "oci:$IMAGE_DIR/oci:$TAG" \
	"docker-archive:$IMAGE_DIR/syncbit.tar:$IMAGE_NAME:$TAG" >/dev/null

skopeo inspect "oci:$IMAGE_DIR/oci:$TAG" >"$W/inspect.json"
skopeo inspect --config "oci:$IMAGE_DIR/oci:$TAG" >"$W/config.json"
python3 - "$W/inspect.json" "$W/config.json" <<'PY' || die "skopeo inspect oci:$IMAGE_DIR/oci:$TAG does not show the image built"
import json, os, sys
e = os.environ
i = json.load(open(sys.argv[1]))
c = json.load(open(sys.argv[2]))["config"]
want = [("Architecture", i.get("Architecture"), e["ARCH"]), ("Os", i.get("Os"), "linux"),
        ("layers", len(i.get("Layers") or []), 1),
        ("User", c.get("User"), "%s:%s" % (e["USER_ID"], e["USER_ID"])),
        ("Entrypoint", c.get("Entrypoint"), ["/usr/bin/syncbit"]),
        ("Digest", i.get("Digest"), open(os.path.join(e["W"], "digest")).read())]
bad = ["%s %r, not %r" % w for w in want if w[1] != w[2]]
if bad:
    sys.exit("image: " + "; ".join(bad))
PY
echo "image: $IMAGE_NAME:$TAG $ARCH $(cat "$W/digest"), layer $(stat -c %s "$W/layer.tar.gz") bytes"
echo "image: $IMAGE_DIR/oci (OCI layout), $IMAGE_DIR/syncbit.tar (docker-archive)"
