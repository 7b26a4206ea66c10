#!/usr/bin/env python3
"""What the chaos scenarios compare published trees with.

  trees.py expect ROOT [FILE...]     print JSON {relpath: [size, sha256]} of the
                                     regular files under ROOT (or of the FILEs
                                     named, relative to ROOT), symlinks as
                                     {relpath: ["link", target]}
  trees.py check EXPECT DIR          exit 0 when DIR holds exactly the files of
                                     EXPECT with their bytes; else one line per
                                     difference on stdout, exit 1
  trees.py watch EXPECT[,EXPECT] OUT DIR...
                                     until SIGTERM, look at every DIR again and
                                     again: each DIR is absent, or every file in
                                     it (Syncbit's own .syncbit-tmp.* names
                                     aside) is a file of an EXPECT (one per
                                     version of the source) with its final size
                                     and sha256. Each violation is a line
                                     "VIOLATION t+SECONDS DIR/REL: what" in OUT
                                     at once; on SIGTERM a last line
                                     "rounds R files F hashed H".

The watcher hashes a file once per (inode, size, mtime, ctime): a file that
is renamed over, rewritten or touched is hashed again. It opens before it
stats, so what it hashes is the inode it looked at.
"""
import hashlib
import json
import os
import signal
import stat
import sys
import time

TMP_PREFIX = ".syncbit-tmp."


def sha256_fd(fd):
    h = hashlib.sha256()
    while True:
        b = os.read(fd, 1 << 20)
        if not b:
            return h.hexdigest()
        h.update(b)


def expect(root, names):
    out = {}
    if not names:
        for d, dirs, files in os.walk(root):
            dirs.sort()
            for f in sorted(files) + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
                names.append(os.path.relpath(os.path.join(d, f), root))
    for rel in names:
        p = os.path.join(root, rel)
        st = os.lstat(p)
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ["link", os.readlink(p)]
        elif stat.S_ISREG(st.st_mode):
            fd = os.open(p, os.O_RDONLY)
            try:
                out[rel] = [st.st_size, sha256_fd(fd)]
            finally:
                os.close(fd)
    json.dump(out, sys.stdout, sort_keys=True)
    print()


def listing(d):
    """(relpath, is_link) of every non-directory entry under d."""
    out = []
    for base, dirs, files in os.walk(d):
        for f in files:
            out.append(os.path.relpath(os.path.join(base, f), d))
        for x in dirs:
            if os.path.islink(os.path.join(base, x)):
                out.append(os.path.relpath(os.path.join(base, x), d))
    return out


def check(exp, d):
    bad = []
    if not os.path.isdir(d):
        print(f"{d}: no such directory")
        return 1
    have = set(listing(d))
    for rel in sorted(have - set(exp)):
        bad.append(f"{d}/{rel}: not in the source")
    for rel, want in sorted(exp.items()):
        p = os.path.join(d, rel)
        if rel not in have:
            bad.append(f"{p}: missing")
            continue
        if want[0] == "link":
            if not os.path.islink(p) or os.readlink(p) != want[1]:
                bad.append(f"{p}: not the link -> {want[1]}")
            continue
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as e:
            bad.append(f"{p}: {e.strerror}")
            continue
        try:
            size = os.fstat(fd).st_size
            got = sha256_fd(fd)
        finally:
            os.close(fd)
        if size != want[0] or got != want[1]:
            bad.append(f"{p}: {size} bytes sha256 {got[:16]}…, want {want[0]} bytes {want[1][:16]}…")
    for line in bad:
        print(line)
    return 1 if bad else 0


def watch(exps, out_path, dirs):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    t0 = time.monotonic()
    seen = {}  # (dir, rel) -> (ino, size, mtime_ns, ctime_ns) hashed and good
    reported = set()
    rounds = files = hashed = 0
    out = open(out_path, "a", buffering=1)

    def violation(d, rel, what):
        key = (d, rel, what.split(":")[0])
        if key in reported:
            return
        reported.add(key)
        out.write(f"VIOLATION t+{time.monotonic() - t0:.1f}s {d}/{rel}: {what}\n")

    while not stop:
        for d in dirs:
            if not os.path.isdir(d):
                continue
            try:
                names = listing(d)
            except OSError:
                continue  # the dataset went away while it was listed
            for rel in names:
                if os.path.basename(rel).startswith(TMP_PREFIX):
                    continue
                files += 1
                p = os.path.join(d, rel)
                wants = [e[rel] for e in exps if rel in e]
                if not wants:
                    violation(d, rel, "not a file of the source")
                    continue
                if wants[0][0] == "link":
                    try:
                        if os.readlink(p) not in [w[1] for w in wants]:
                            violation(d, rel, "link with another target")
                    except FileNotFoundError:
                        pass
                    except OSError:
                        violation(d, rel, "published as a file, the source has a link")
                    continue
                try:
                    fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOATIME)
                except FileNotFoundError:
                    continue  # replaced or removed between listing and open
                except OSError as e:
                    violation(d, rel, f"cannot open: {e.strerror}")
                    continue
                try:
                    st = os.fstat(fd)
                    key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                    if seen.get((d, rel)) == key:
                        continue
                    if st.st_size not in [w[0] for w in wants]:
                        violation(d, rel, f"size: {st.st_size} bytes, the final size is "
                                  + " or ".join(str(w[0]) for w in wants))
                        continue
                    got = sha256_fd(fd)
                    hashed += 1
                    if [st.st_size, got] not in wants:
                        violation(d, rel, f"hash: sha256 {got[:16]}… is not the source's")
                        continue
                    seen[(d, rel)] = key
                finally:
                    os.close(fd)
        rounds += 1
        if not stop:
            time.sleep(0.1)
    out.write(f"rounds {rounds} files {files} hashed {hashed}\n")
    out.close()


def main():
    a = sys.argv[1:]
    if len(a) >= 2 and a[0] == "expect":
        expect(a[1], a[2:])
        return 0
    if len(a) == 3 and a[0] == "check":
        return check(json.load(open(a[1])), a[2])
    if len(a) >= 4 and a[0] == "watch":
        watch([json.load(open(e)) for e in a[1].split(",")], a[2], a[3:])
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
