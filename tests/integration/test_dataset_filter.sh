#!/usr/bin/env bash
# --include/--exclude on cluster datasets: a real scheduler and two agents.
# The tree every node publishes holds exactly the files `rsync -a` copies
# with the same rules (rsync is the reference); the rules show in `dataset
# ls` (text and --json) and /api/v1/datasets; another set of rules needs
# --replace on `dataset add`; `dataset update --exclude` publishes a new
# version without what it leaves out, `--no-filters` one with everything;
# a scheduler restart keeps the rules (its refreshes list with them); bad
# patterns and oci:// sources are usage errors (exit 2).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster.sh"
set -f # the patterns below are for syncbit and rsync, not for this shell

S=$T/src
mkdir -p "$S/keep/deep" "$S/sub" "$S/drop" "$S/logs"
for f in a.bin x.tmp config.json keep/y.tmp keep/z.bin keep/deep/k.txt sub/w.tmp sub/v.json \
	sub/u.bin drop/d.json logs/l.log; do
	head -c $((RANDOM % 5000 + 10)) /dev/urandom >"$S/$f"
done

# files DIR: every path but directories, sorted.
files() { (cd "$1" && find . -mindepth 1 ! -type d | sort); }

sums() { (cd "$1" && find . -type f -exec sha256sum {} + | sort); }

# same_as_rsync DESCRIPTION DATASET RULES...: both nodes' trees hold the
# files rsync copies with RULES, with the same bytes.
same_as_rsync() {
	local d=$1 ds=$2 r; shift 2
	r=$T/rsync.$RANDOM
	rsync -a "$@" "$S/" "$r/"
	for n in 1 2; do
		if diff <(files "$T/t$n/$ds") <(files "$r") >"$T/diff" &&
			diff <(sums "$T/t$n/$ds") <(sums "$r") >>"$T/diff"; then
			ok "n$n: $d"
		else
			bad "n$n: $d" "$(tr '\n' ' ' <"$T/diff" | head -c 400)"
		fi
	done
}

# until_gone SECONDS PATH...: wait until no PATH exists.
until_gone() {
	local deadline=$((SECONDS + $1)); shift
	while :; do
		local left=0 p
		for p in "$@"; do [ -e "$p" ] && left=1; done
		[ $left -eq 0 ] && return 0
		[ $SECONDS -ge $deadline ] && return 1
		sleep 0.2
	done
}

jls() { "$SYNCBIT" dataset ls --scheduler "$SCHED" --token-file "$TOKEN" --json | tail -1; }
jget() { jls | python3 -c "import json,sys; d=json.load(sys.stdin)['datasets']; d=[x for x in d if x['name']=='$1'][0]; print($2)"; }

start_scheduler --refresh 1 || { bad "scheduler starts"; finish; exit 1; }
start_agent 1 && start_agent 2 || { bad "agents start"; stop_cluster; finish; exit 1; }

R1=(--exclude '*.tmp' --include 'keep/**' --include '*/' --include '*.json' --exclude '*')
check "dataset add with --exclude/--include" add_dataset models "$S" --block-size 64KiB "${R1[@]}"
check "both nodes publish it" wait_ready 120 models 1 2
same_as_rsync "the filtered dataset has exactly the files rsync copies" models "${R1[@]}"
check "an excluded file is not on the node" test ! -e "$T/t1/models/x.tmp" -a ! -e "$T/t2/models/keep/y.tmp"

"$SYNCBIT" dataset ls --scheduler "$SCHED" --token-file "$TOKEN" >"$T/ls.txt"
check "dataset ls shows the rules" grep -q '^models .* - \*\.tmp, + keep/\*\*, + \*/, + \*\.json, - \*$' "$T/ls.txt"
check "dataset ls --json carries them in order" test "$(jget models "[(r['rule'], r['pattern']) for r in d['filter']]")" = \
	"[('exclude', '*.tmp'), ('include', 'keep/**'), ('include', '*/'), ('include', '*.json'), ('exclude', '*')]"
check "/api/v1/datasets carries them" sh -c "curl -sf 'http://$SCHED_HTTP/api/v1/datasets' | python3 -c \"
import json, sys
d = [x for x in json.load(sys.stdin)['datasets'] if x['name'] == 'models'][0]
assert d['filter'][0] == {'rule': 'exclude', 'pattern': '*.tmp'}, d['filter']
assert len(d['filter']) == 5\""
V1=$(jget models "d['version']")

check "the same add again is no change" sh -c "'$SYNCBIT' dataset add models '$S' --block-size 64KiB ${R1[*]@Q} --scheduler '$SCHED' --token-file '$TOKEN' | grep -q '(unchanged)'"
expect_fail "other rules on an existing name need --replace" 1 "exists .*filter - \*\.tmp.*give --replace" \
	add_dataset models "$S" --block-size 64KiB --exclude '*.bin'

# update: the new rules replace the old ones; the listing changes.
R2=(--exclude '*.tmp' --exclude '*.bin' --include 'keep/**' --include '*/' --include '*.json' --exclude '*')
"$SYNCBIT" dataset update models "${R2[@]}" --scheduler "$SCHED" --token-file "$TOKEN" >"$T/upd.txt" 2>&1
check "dataset update --exclude shows the change" grep -q '^dataset models: filter - \*\.tmp, + keep/\*\*.* -> - \*\.tmp, - \*\.bin, + keep/\*\*' "$T/upd.txt"
V2=$(jget models "d['version']")
check "it is a new version" test -n "$V2" -a "$V2" != "$V1"
check "the excluded files leave both nodes" until_gone 120 "$T/t1/models/keep/z.bin" "$T/t2/models/keep/z.bin"
check "both nodes publish the new version" wait_ready 120 models 1 2
same_as_rsync "the updated dataset has exactly the files rsync copies" models "${R2[@]}"

# A restart keeps the rules: its refreshes (every second) list with them.
kill -TERM "$SCHED_PID"; wait "$SCHED_PID" 2>/dev/null
check "the scheduler stops with 0" test $? -eq 0
start_scheduler --refresh 1 || bad "scheduler restarts"
check "the rules survive a restart" test "$(jget models "len(d['filter'])")" -eq 6
sleep 3 # three refreshes: a listing without the rules would be a new version
check "refreshes after the restart keep the version" test "$(jget models "d['version']")" = "$V2"
check "the restart left the nodes' trees alone" test ! -e "$T/t1/models/keep/z.bin" -a -f "$T/t1/models/keep/deep/k.txt"

"$SYNCBIT" dataset update models --no-filters --scheduler "$SCHED" --token-file "$TOKEN" >"$T/upd2.txt" 2>&1
check "dataset update --no-filters drops them" grep -q '^dataset models: filter .* -> (none)' "$T/upd2.txt"
check "every file comes back" sh -c "for n in 1 2; do for i in \$(seq 600); do [ -f $T/t\$n/models/x.tmp ] && break; sleep 0.2; done; done; test -f $T/t1/models/x.tmp -a -f $T/t2/models/logs/l.log"
check "both nodes publish the whole source" wait_ready 120 models 1 2
same_as_rsync "without rules the dataset is the whole source" models
check "dataset ls shows no rules" test "$(jget models "len(d['filter'])")" -eq 0

expect_fail "a bad pattern on dataset add is a usage error" 2 "exclude 'a\[': a '\[' is not closed" \
	add_dataset bad "$S" --exclude 'a['
expect_fail "a bad pattern on dataset update is a usage error" 2 "include '/': matches nothing" \
	"$SYNCBIT" dataset update models --include '/' --scheduler "$SCHED" --token-file "$TOKEN"
expect_fail "--no-filters with rules is a usage error" 2 "give one" \
	"$SYNCBIT" dataset update models --no-filters --exclude x --scheduler "$SCHED" --token-file "$TOKEN"
expect_fail "an oci:// dataset refuses rules" 2 "do not apply to oci://" \
	add_dataset img oci://127.0.0.1:1/a/b:c --exclude x
check "the refused adds defined nothing" test "$(jls | python3 -c "import json,sys; print(sorted(x['name'] for x in json.load(sys.stdin)['datasets']))")" = "['models']"

stop_cluster
finish
