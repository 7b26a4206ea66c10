#!/usr/bin/env bash
# syncbit pull of a local directory tree: layout, modes, links, edge sizes,
# reuse on a second pull, block-level change detection, confinement, and
# a tree of many equal files sealed at once.
. "$(dirname "$0")/lib.sh"

S=$T/src D=$T/dst DATA=$T/data
BS=65536
mkdir -p "$S/nested/deeper" "$S/with space" "$S/ünïcödé"
: >"$S/zero"
printf 1 >"$S/one"
head -c $((BS * 3)) /dev/urandom >"$S/exact3"
head -c $((BS * 3 - 1)) /dev/urandom >"$S/exact3-minus1"
head -c $((BS * 3 + 1)) /dev/urandom >"$S/exact3-plus1"
head -c $((BS * 40 + 123)) /dev/urandom >"$S/nested/deeper/blob.bin"
echo "spaces" >"$S/with space/file name.txt"
echo "unicode" >"$S/ünïcödé/ファイル.txt"
echo "secret" >"$S/nested/private"
chmod 0600 "$S/nested/private"
chmod 0755 "$S/one"
chmod 0750 "$S/nested/deeper"
ln "$S/exact3" "$S/nested/exact3-hardlink"
ln -s ../exact3 "$S/nested/rel-symlink"
ln -s deeper/blob.bin "$S/nested/blob-symlink"
touch -d '2020-01-02 03:04:05' "$S/one"

pull() { "$SYNCBIT" pull "$@" --data "$DATA" --block-size $BS --json; }

check "first pull succeeds" pull "$S" --to "$D"
pull "$S" --to "$D" >"$T/p1" 2>&1
check "trees are identical" diff -r "$S" "$D"
check "modes preserved (0600 file)" test "$(stat -c %a "$D/nested/private")" = 600
check "modes preserved (0755 file)" test "$(stat -c %a "$D/one")" = 755
check "modes preserved (0750 dir)" test "$(stat -c %a "$D/nested/deeper")" = 750
check "mtime preserved" test "$(stat -c %Y "$D/one")" = "$(stat -c %Y "$S/one")"
check "hardlinks kept as hardlinks" test "$(stat -c %i "$D/exact3")" = "$(stat -c %i "$D/nested/exact3-hardlink")"
check "symlinks kept as symlinks" test "$(readlink "$D/nested/rel-symlink")" = ../exact3
check "0-byte file" test -f "$D/zero" -a ! -s "$D/zero"
check "unicode names" test -f "$D/ünïcödé/ファイル.txt"
check "files with equal content that are not hardlinks stay separate" \
	bash -c "cp '$S/one' '$S/one-copy' && $(printf %q "$SYNCBIT") pull '$S' --to '$D' --data '$DATA' --block-size $BS --json >/dev/null && test \$(stat -c %i '$D/one') != \$(stat -c %i '$D/one-copy')"
check "published files share the cache's disk (hardlinked objects)" \
	test "$(stat -c %h "$D/nested/deeper/blob.bin")" -ge 2

pull "$S" --to "$D" >"$T/p2"
total=$(json_field "$T/p2" bytes)
x=$(json_field "$T/p2" bytes_from_source); y=$(json_field "$T/p2" bytes_from_peers); z=$(json_field "$T/p2" bytes_reused)
check "X+Y+Z = bytes" test $((x + y + z)) -eq "$total"
check "second pull of an unchanged tree fetches 0 bytes" test "$x" -eq 0 -a "$y" -eq 0
check "second pull reads nothing from the source" test "$(json_field "$T/p2" bytes_read)" -eq 0

# Change one block in the middle of the 40-block file: only it is new.
printf 'CHANGED!' | dd of="$S/nested/deeper/blob.bin" bs=1 seek=$((BS * 7 + 5)) conv=notrunc status=none
pull "$S" --to "$D" >"$T/p3"
check "after a change only the changed block is new" test "$(json_field "$T/p3" bytes_from_source)" -eq $BS
check "changed file published" cmp "$S/nested/deeper/blob.bin" "$D/nested/deeper/blob.bin"

# Appending a file adds one new block (and rewrites the last partial one).
head -c 10 /dev/urandom >>"$S/exact3"
pull "$S" --to "$D" >"$T/p4"
check "append: one new block" test "$(json_field "$T/p4" bytes_from_source)" -eq 10
check "hardlink follows the new content" cmp "$S/exact3" "$D/nested/exact3-hardlink"

echo keep >"$D/local-only"
pull "$S" --to "$D" >/dev/null
check "files in DIR that the source lacks are left alone" test "$(cat "$D/local-only")" = keep

# A symlink that escapes the tree is refused; nothing is written.
E=$T/escape; mkdir -p "$E"; echo data >"$E/ok"; ln -s /etc/passwd "$E/evil"
expect_fail "absolute symlink is refused" 1 "escapes the source tree" "$SYNCBIT" pull "$E" --to "$T/edst" --data "$DATA"
check "nothing published after a refused source" test ! -e "$T/edst"
rm "$E/evil"; ln -s ../../../etc "$E/evil2"
expect_fail "climbing symlink is refused" 1 "escapes the source tree" "$SYNCBIT" pull "$E" --to "$T/edst" --data "$DATA"

# A pre-existing symlink in DIR is never followed out of the target.
V=$T/victim; mkdir -p "$V" "$T/d2" "$T/s2/sub"; echo new >"$T/s2/sub/f"
ln -s "$V" "$T/d2/sub"
"$SYNCBIT" pull "$T/s2" --to "$T/d2" --data "$DATA" >/dev/null 2>&1
check "publishing never writes through a symlink in the target" test ! -e "$V/f"

# Single file source lands as DIR/<basename>.
pull "$S/one" --to "$T/single" >/dev/null
check "single file lands as DIR/basename" cmp "$S/one" "$T/single/one"

# Large file (>= 100 MiB) with the default block size, then verify.
head -c $((100 * 1024 * 1024 + 7)) /dev/urandom >"$T/large.bin"
check "100 MiB file pulls" "$SYNCBIT" pull "$T/large.bin" --to "$T/ldst" --data "$DATA" --json
check "100 MiB file intact" cmp "$T/large.bin" "$T/ldst/large.bin"
check "verify DIR succeeds on an intact dataset" "$SYNCBIT" verify "$T/ldst" --data "$DATA"

# Many files of few contents: the pool seals equal files at the same
# moment, and each pull (fresh cache) must store every content once and
# publish it as one link, the other equal files as separate copies.
M=$T/many
mkdir -p "$M"
for k in 0 1 2; do head -c $((1024 * 1024)) /dev/urandom >"$T/content$k"; done
for i in $(seq 1 600); do cp "$T/content$((i % 3))" "$M/f$i.bin"; done
sharing() {
	local out=$1 data=$2 objs
	objs=$(find "$data/objects" -type f -printf '%i\n')
	[ "$(printf '%s\n' "$objs" | grep -c .)" -eq 3 ] || { echo "objects: $objs"; return 1; }
	for i in $objs; do
		[ "$(find "$out" -inum "$i" | wc -l)" -eq 1 ] || { echo "object inode $i not linked once"; return 1; }
	done
	[ "$(stat -c %h "$out"/* | sort | uniq -c | tr -s ' ')" = "$(printf ' 597 1\n 3 2')" ] ||
		{ echo "link counts: $(stat -c %h "$out"/* | sort | uniq -c)"; return 1; }
	[ -z "$(ls -A "$data/partial")" ] || { echo "partials left: $(ls "$data/partial")"; return 1; }
}
for r in 1 2 3; do
	check "600 files of 3 contents pull (run $r, fresh cache)" \
		"$SYNCBIT" pull "$M" --to "$T/mdst$r" --data "$T/mdata$r"
	check "600 files of 3 contents arrive intact (run $r)" diff -r "$M" "$T/mdst$r"
	check "3 objects, each published as one link, the rest copies (run $r)" \
		sharing "$T/mdst$r" "$T/mdata$r"
	rm -rf "$T/mdst$r" "$T/mdata$r"
done
rm -rf "$M"

# Set-id and sticky bits never survive: a set-id file anyone can write into
# a source would become a root-owned set-id file on every node.
SU=$T/suid DSU=$T/dsuid
mkdir -p "$SU/shared"
printf '#!/bin/sh\n' >"$SU/tool"
chown nobody:nogroup "$SU/tool" 2>/dev/null || true
chmod 6755 "$SU/tool"
chmod 3777 "$SU/shared"
printf x >"$SU/shared/f"
check "a tree with set-id files pulls" pull "$SU" --to "$DSU"
check "published file loses setuid/setgid (6755 -> 755)" test "$(stat -c %a "$DSU/tool")" = 755
check "published directory loses setgid/sticky (3777 -> 777)" test "$(stat -c %a "$DSU/shared")" = 777
check "no cache object carries a set-id or sticky bit" \
	test -z "$(find "$DATA/objects" -type f -perm /7000 -print -quit)"
check "the copy of a single set-id file loses the bits too" pull "$SU/tool" --to "$T/dsu1"
check "single file: 755" test "$(stat -c %a "$T/dsu1/tool")" = 755

finish
