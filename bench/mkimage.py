#!/usr/bin/python3
"""Builds a large multi-layer container image as an OCI image layout, offline.

  mkimage.py LAYOUT TAG --size BYTES --layers L [--seed S] [--gzip | --no-gzip]

The image has L layers of BYTES / L bytes of payload each (the last one takes
the remainder): layer K is a tar holding one file, layer-K.bin, of
pseudo-random data (the AES-128-CTR keystream of `openssl enc`, keyed by
SEED/K), so nothing compresses or deduplicates and layers differ from each
other. With --gzip (the default) each layer is a gzip stream of stored
deflate blocks (level 0): what gzip makes of incompressible data anyway
(level 1 comes out 0.03 % larger), built at the speed of a copy instead of
44 MB/s; the media type is the usual tar+gzip, so containerd decompresses it
as it does any image. --no-gzip writes plain tar layers.

Everything is streamed: no layer is held in memory. The layout (oci-layout,
index.json naming TAG, blobs/sha256/...) can be pushed with
`skopeo copy oci:LAYOUT:TAG docker://...`. Prints one JSON line: the manifest
digest, the image size (manifest + config + layers, the bytes a pull
transfers), the layer count and the chain ID of the top layer (the snapshot a
complete unpack leaves in containerd).
"""
import argparse
import hashlib
import json
import os
import subprocess
import tarfile
import zlib

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_GZ = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar"
CHUNK = 1 << 20


def blob_dir(layout):
    d = os.path.join(layout, "blobs", "sha256")
    os.makedirs(d, exist_ok=True)
    return d


def put_blob(layout, data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blob_dir(layout), digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def keystream(seed):
    return subprocess.Popen(
        ["openssl", "enc", "-aes-128-ctr", "-nosalt", "-pbkdf2", "-pass", "pass:" + seed],
        stdin=open("/dev/zero", "rb"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def layer(layout, name, size, seed, gz):
    """Stream one layer into the layout; returns (descriptor, diff_id)."""
    tmp = os.path.join(blob_dir(layout), ".tmp-" + name)
    diff = hashlib.sha256()  # of the uncompressed tar
    dig = hashlib.sha256()   # of the blob as stored
    comp = zlib.compressobj(0, zlib.DEFLATED, 31) if gz else None
    n = 0
    with open(tmp, "wb") as out:
        def emit(data):
            nonlocal n
            diff.update(data)
            if comp:
                data = comp.compress(data)
            if data:
                dig.update(data)
                out.write(data)
                n += len(data)

        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = 0
        info.mode = 0o644
        emit(info.tobuf(format=tarfile.PAX_FORMAT))
        p = keystream(seed)
        left = size
        while left:
            b = p.stdout.read(min(CHUNK, left))
            if not b:
                raise SystemExit("openssl ended early")
            emit(b)
            left -= len(b)
        p.kill()
        p.wait()
        emit(b"\0" * ((512 - size % 512) % 512 + 1024))  # padding, end of archive
        if comp:
            tail = comp.flush()
            dig.update(tail)
            out.write(tail)
            n += len(tail)
    digest = dig.hexdigest()
    os.rename(tmp, os.path.join(blob_dir(layout), digest))
    return ({"mediaType": MT_LAYER_GZ if gz else MT_LAYER, "digest": "sha256:" + digest, "size": n},
            "sha256:" + diff.hexdigest())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("layout")
    ap.add_argument("tag")
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--seed", default="image-pull")
    ap.add_argument("--gzip", dest="gzip", action="store_true", default=True)
    ap.add_argument("--no-gzip", dest="gzip", action="store_false")
    a = ap.parse_args()
    if a.layers < 1 or a.size < a.layers:
        raise SystemExit("need --layers >= 1 and --size >= --layers")
    os.makedirs(a.layout, exist_ok=True)
    with open(os.path.join(a.layout, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    per = a.size // a.layers
    layers, diff_ids = [], []
    for k in range(a.layers):
        size = per if k < a.layers - 1 else a.size - per * (a.layers - 1)
        d, diff = layer(a.layout, "layer-%d.bin" % k, size, "%s/%d" % (a.seed, k), a.gzip)
        layers.append(d)
        diff_ids.append(diff)
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Labels": {"syncbit.bench": "image-pull"}},
              "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cdesc = put_blob(a.layout, json.dumps(config, sort_keys=True).encode())
    cdesc["mediaType"] = MT_CONFIG
    manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": cdesc, "layers": layers}
    mdesc = put_blob(a.layout, json.dumps(manifest, sort_keys=True).encode())
    mdesc["mediaType"] = MT_MANIFEST
    mdesc["annotations"] = {"org.opencontainers.image.ref.name": a.tag}
    with open(os.path.join(a.layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [mdesc]}, f)
    # containerd's snapshot of the whole image: chain(L0) = diff0,
    # chain(Ln) = sha256(chain(Ln-1) + " " + diffn).
    chain = diff_ids[0]
    for d in diff_ids[1:]:
        chain = "sha256:" + hashlib.sha256((chain + " " + d).encode()).hexdigest()
    total = mdesc["size"] + cdesc["size"] + sum(x["size"] for x in layers)
    print(json.dumps({"digest": mdesc["digest"], "size": total, "layers": len(layers),
                      "chain_id": chain}, separators=(",", ":")))


if __name__ == "__main__":
    main()
