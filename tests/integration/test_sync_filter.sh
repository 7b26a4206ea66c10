#!/usr/bin/env bash
# --include/--exclude on sync and pull: for several rule sets the tree
# Syncbit publishes must be the one `rsync -a` makes with the same rules
# (rsync is the reference), --delete must keep what is excluded as rsync
# does, the rules come from repeated flags, SYNCBIT_INCLUDE/SYNCBIT_EXCLUDE
# (one a line) and a config file's lists; an HTTP source (nginx) is
# filtered by its file's name; oci:// sources refuse them. A crontab's
# command part is named in one warning; a CRON_SCHEDULE carrying one is
# refused saying so.
. "$(dirname "$0")/lib.sh"
# Under SAN=1 a report goes to a file, checked at the end.
export ASAN_OPTIONS="log_path=$T/san${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="log_path=$T/san${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
set -f # the patterns below are for syncbit and rsync, not for this shell
unset SRC DST CRON_SCHEDULE RUN_ON_START CRONTAB CRONTAB_FILE SYNCBIT_INCLUDE SYNCBIT_EXCLUDE

S=$T/src DATA=$T/data
mkdir -p "$S/sub/deep" "$S/logs" "$S/.cache/x" "$S/empty"
for f in a.safetensors b.bin config.json sub/d.safetensors sub/deep/e.json sub/deep/f.bin \
	logs/x.log .cache/x/lock README.md "sub/[odd].txt"; do
	echo "$f" >"$S/$f"
done
ln "$S/b.bin" "$S/sub/b-link.bin"  # a hardlink whose first member may be left out
ln -s ../config.json "$S/sub/config-link"

tree() { (cd "$1" && find . -mindepth 1 | sort); }

# same_as_rsync "description" RULES...: sync and rsync agree.
same_as_rsync() {
	local d=$1; shift
	RUNS=$((${RUNS:-0} + 1))
	local n=$RUNS
	rm -rf "$T/s$n" "$T/r$n"
	"$SYNCBIT" sync "$S/" "$T/s$n" --once --data "$DATA" --log-level warn "$@" >"$T/s$n.out" 2>&1
	mkdir -p "$T/s$n"
	rsync -a "$@" "$S/" "$T/r$n/"
	if diff <(tree "$T/s$n") <(tree "$T/r$n") >"$T/diff$n"; then ok "$d"; else
		bad "$d" "$(tr '\n' ' ' <"$T/diff$n" | head -c 400)"; fi
}
same_as_rsync "--exclude a pattern without '/' matches names at any depth" --exclude '*.bin'
same_as_rsync "a trailing '/' excludes a directory and its contents" --exclude 'logs/' --exclude '.cache/'
same_as_rsync "the rsync idiom '*/' + include + exclude '*'" --include '*/' --include '*.json' --exclude '*'
same_as_rsync "include '*.json' then exclude '*' leaves nested files out, as rsync" --include '*.json' --exclude '*'
same_as_rsync "an anchored '/sub/***' takes a directory and everything under it" --include '/sub/***' --exclude '*'
same_as_rsync "first match wins" --exclude 'sub/deep' --include '*.safetensors' --exclude '*.json'
same_as_rsync "'**' crosses directories, a leading '/' anchors" --exclude '**/deep/**' --exclude '/a*'
same_as_rsync "classes and '?'" --exclude '[ab].*' --exclude 'README.m?'
same_as_rsync "a quoted '[' matches itself" --exclude '\[odd\].txt'
same_as_rsync "a pattern with '/' matches at any depth unless anchored" --exclude 'deep/e.json'
same_as_rsync "hardlinks and symlinks of the kept files stay" --exclude 'b.bin' --exclude 'e.json'

# --delete keeps what is excluded (rsync without --delete-excluded).
D=$T/del R=$T/rdel
for dir in "$D" "$R"; do
	mkdir -p "$dir/logs"
	echo keep >"$dir/keep.bin"; echo gone >"$dir/gone.txt"; echo old >"$dir/logs/old.log"
done
check "sync --delete with filters" "$SYNCBIT" sync "$S/" "$D" --once --delete --data "$DATA" \
	--exclude '*.bin' --exclude 'logs/'
rsync -a --delete --exclude '*.bin' --exclude 'logs/' "$S/" "$R/"
check "--delete removes what the source lacks, keeps what the filters exclude (as rsync)" \
	diff <(tree "$D") <(tree "$R")
check "an excluded file in DST is kept" test -f "$D/keep.bin" -a -f "$D/logs/old.log" -a ! -e "$D/gone.txt"

# The environment: one pattern a line; flags replace it.
SYNCBIT_EXCLUDE=$'*.bin\n*.log' "$SYNCBIT" sync "$S/" "$T/env" --once --data "$DATA" --log-level warn >/dev/null 2>&1
rsync -a --exclude '*.bin' --exclude '*.log' "$S/" "$T/renv/"
check "SYNCBIT_EXCLUDE takes one pattern a line" diff <(tree "$T/env") <(tree "$T/renv")
SYNCBIT_EXCLUDE='*.json' "$SYNCBIT" sync "$S/" "$T/env2" --once --data "$DATA" --log-level warn \
	--exclude '*.bin' >/dev/null 2>&1
check "--exclude on the command line replaces SYNCBIT_EXCLUDE" \
	test -f "$T/env2/config.json" -a ! -e "$T/env2/b.bin"

# A config file's lists, in the file's order.
cat >"$T/filters.yaml" <<'YAML'
include:
  - "*/"
  - "*.json"
exclude: ["*"]
YAML
"$SYNCBIT" sync "$S/" "$T/cfg" --once --data "$DATA" --config "$T/filters.yaml" --log-level warn >/dev/null 2>&1
rsync -a --include '*/' --include '*.json' --exclude '*' "$S/" "$T/rcfg/"
check "include/exclude lists from a config file" diff <(tree "$T/cfg") <(tree "$T/rcfg")

# pull takes them too; an HTTP source is filtered by its file's name.
check "pull --exclude" "$SYNCBIT" pull "$S/" --to "$T/pull" --data "$DATA" -q --exclude '*.bin' --exclude '.cache/'
check "pull left out what it was told" test -f "$T/pull/sub/d.safetensors" -a ! -e "$T/pull/b.bin" -a ! -e "$T/pull/.cache"
start_nginx "$S" || { bad "nginx starts"; finish; exit 1; }
check "pull http:// --include of its name" "$SYNCBIT" pull "http://127.0.0.1:$NGINX_PORT/config.json" \
	--to "$T/h1" --data "$DATA" -q --include config.json --exclude '*'
check "the file is there" cmp "$S/config.json" "$T/h1/config.json"
check "pull http:// --exclude of its name publishes nothing" "$SYNCBIT" pull \
	"http://127.0.0.1:$NGINX_PORT/config.json" --to "$T/h2" --data "$DATA" -q --exclude '*.json'
check "nothing was published" test -z "$(ls -A "$T/h2" 2>/dev/null)"

expect_fail "filters on an oci:// source are a usage error" 2 "do not apply to oci://" \
	"$SYNCBIT" pull oci://127.0.0.1:1/a/b:c --to "$T/o" --data "$DATA" --exclude x
expect_fail "an unclosed '[' is a usage error" 2 "include '\[ab': a '\[' is not closed" \
	"$SYNCBIT" sync "$S/" "$T/x" --once --data "$DATA" --include '[ab'

# A crontab's commands: one warning naming what is not run.
CRONTAB=$'SHELL=/bin/bash\n*/5 * * * * rsync -avH --exclude "*.tmp" "$SRC" "$DST"\n0 3 * * * /usr/local/bin/other\n' \
	"$SYNCBIT" sync "$S/" "$T/ct" --once --data "$DATA" >"$T/ct.out" 2>"$T/ct.err"
check "a CRONTAB sync runs" test -f "$T/ct/config.json"
check "one warning names the command that is not run" bash -c \
	"[ \$(grep -c 'commands are not run' '$T/ct.err') -eq 1 ] && grep -q 'line 2: rsync -avH --exclude \"\\*.tmp\"' '$T/ct.err' && grep -q 'other lines' '$T/ct.err' && grep -q -- '--include/--exclude' '$T/ct.err'"
printf '@hourly\n' >"$T/crontab-bare"
CRONTAB_FILE=$T/crontab-bare "$SYNCBIT" sync "$S/" "$T/ct2" --once --data "$DATA" >/dev/null 2>"$T/ct2.err"
check "a crontab line without a command warns nothing" bash -c "! grep -q 'not run' '$T/ct2.err'"
expect_fail "CRON_SCHEDULE with a command part is refused saying what follows the schedule" 2 \
	"CRON_SCHEDULE '\*/5 \* \* \* \* rsync -a /a /b': 'rsync -a /a /b' follows the schedule.*not its command" \
	env CRON_SCHEDULE='*/5 * * * * rsync -a /a /b' "$SYNCBIT" sync "$S/" "$T/cs" --data "$DATA" --log-level warn

check "no sanitizer report" bash -c "! ls '$T'/san.* 2>/dev/null | grep -q ."

finish
