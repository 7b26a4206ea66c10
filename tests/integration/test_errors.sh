#!/usr/bin/env bash
# Bad input: one clear line on stderr, exit 1 (2 for usage), and nothing
# already on disk lost or half-written.
. "$(dirname "$0")/lib.sh"

DATA=$T/data S=$T/src
mkdir -p "$S"; head -c 300000 /dev/urandom >"$S/a.bin"; echo hi >"$S/b.txt"

expect_fail "no arguments is a usage error" 2 "usage|pull takes" "$SYNCBIT" pull
expect_fail "unknown flag is a usage error" 2 "unknown option" "$SYNCBIT" pull "$S" --bogus
expect_fail "bad block size is a usage error" 2 "block-size" "$SYNCBIT" pull "$S" --block-size 3000
expect_fail "unknown command is a usage error" 2 "unknown command" "$SYNCBIT" frobnicate
expect_fail "missing source" 1 "No such file" "$SYNCBIT" pull "$T/nope" --to "$T/d" --data "$DATA"
expect_fail "unsupported scheme" 1 "scheme" "$SYNCBIT" pull "ftp://example/x" --to "$T/d" --data "$DATA"
printf 'jobs: [1\nto: x\n' >"$T/bad.yaml"
expect_fail "malformed config names file and line" 2 "bad.yaml:[0-9]+" "$SYNCBIT" pull "$S" --config "$T/bad.yaml" --data "$DATA"
printf 'blok-size: 1M\n' >"$T/typo.yaml"
expect_fail "unknown config key" 2 "blok-size" "$SYNCBIT" pull "$S" --config "$T/typo.yaml" --data "$DATA"
printf 'to: %s\njobs: 2\n' "$T/fromcfg" >"$T/good.yaml"
check "config file supplies flags" bash -c "$(printf %q "$SYNCBIT") pull '$S' --config '$T/good.yaml' --data '$DATA' && cmp '$S/a.bin' '$T/fromcfg/a.bin'"
check "env overrides the config file" bash -c "SYNCBIT_TO='$T/fromenv' $(printf %q "$SYNCBIT") pull '$S' --config '$T/good.yaml' --data '$DATA' && test -f '$T/fromenv/a.bin' "
check "SYNCBIT_DATA chooses the data directory" bash -c "SYNCBIT_DATA='$T/envdata' $(printf %q "$SYNCBIT") pull '$S' --to '$T/d0' && test -d '$T/envdata/index'"

# Target not writable: a read-only filesystem.
mkdir -p "$T/ro"
if mount -t tmpfs -o ro,size=1m tmpfs "$T/ro" 2>/dev/null; then
	CLEANUPS+=("umount -l '$T/ro'")
	expect_fail "read-only target" 1 "Read-only file system" "$SYNCBIT" pull "$S" --to "$T/ro/out" --data "$DATA"
else
	echo "  skip read-only target: mount not permitted here"
fi
mkdir -p "$T/notdir"; : >"$T/notdir/file"
expect_fail "target under a regular file" 1 "Not a directory" "$SYNCBIT" pull "$S" --to "$T/notdir/file/sub" --data "$DATA"

# Disk full: data and target on a 24 MiB tmpfs. A first, small version is
# published; a second, too large one must fail without touching it.
mkdir -p "$T/small"
if mount -t tmpfs -o size=24m tmpfs "$T/small" 2>/dev/null; then
	CLEANUPS+=("umount -l '$T/small'")
	SD=$T/small/data DD=$T/small/dst
	check "small version fits" "$SYNCBIT" pull "$S" --to "$DD" --data "$SD"
	head -c $((40 * 1024 * 1024)) /dev/urandom >"$S/a.bin"
	expect_fail "disk full is one clear line" 1 "No space left" "$SYNCBIT" pull "$S" --to "$DD" --data "$SD"
	check "the published file is still the old, complete version" test "$(stat -c %s "$DD/a.bin")" -eq 300000
	check "no temp files left in the target" test -z "$(find "$DD" -name '.syncbit-tmp*')"
	head -c 300000 /dev/urandom >"$S/a.bin"
	check "after freeing the input, the pull succeeds" "$SYNCBIT" pull "$S" --to "$DD" --data "$SD"
	check "new content published" cmp "$S/a.bin" "$DD/a.bin"
else
	echo "  skip disk full: mount not permitted here"
fi

# Corruption: flip a byte in a cache object keeping its mtime (so only a
# re-hash can tell), verify finds it, and the next pull fetches it again.
DATA2=$T/data2
check "pull for corruption test" "$SYNCBIT" pull "$S" --to "$T/c" --data "$DATA2" --block-size 64KiB
obj=$(find "$DATA2/objects" -type f -size 300000c | head -1)
touch -r "$obj" "$T/stamp"
printf 'X' | dd of="$obj" bs=1 seek=70000 conv=notrunc status=none
touch -r "$T/stamp" "$obj"
expect_fail "verify detects a corrupt block" 1 "block 1 does not match" "$SYNCBIT" verify "$T/c" --data "$DATA2"
"$SYNCBIT" pull "$S" --to "$T/c" --data "$DATA2" --block-size 64KiB --json >"$T/pc"
check "the next pull refetches the corrupt file" cmp "$S/a.bin" "$T/c/a.bin"
check "refetch counted as source bytes" test "$(json_field "$T/pc" bytes_read)" -ge 300000
check "verify is clean again" "$SYNCBIT" verify "$T/c" --data "$DATA2"
expect_fail "verify of an unknown dir" 1 "no dataset" "$SYNCBIT" verify "$T" --data "$DATA2"

# gc evicts unpinned objects only.
check "pulling a new version unpins the old objects" "$SYNCBIT" pull "$S" --to "$T/c" --data "$DATA2"
"$SYNCBIT" gc --data "$DATA2" --json >"$T/gc"
check "gc evicts unpinned objects" test "$(json_field "$T/gc" evicted_objects)" -ge 1
check "gc keeps pinned data" test "$(json_field "$T/gc" used)" -eq "$(json_field "$T/gc" pinned)"
check "published files survive gc" cmp "$S/a.bin" "$T/c/a.bin"

finish
