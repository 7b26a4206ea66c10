#!/usr/bin/env bash
# /metrics of a real scheduler and two real agents on loopback after a small
# dataset went out: `promtool check metrics` (Debian's prometheus) finds
# nothing to warn about on either endpoint, and the values are right (bytes
# counters add up to the dataset moved, a new version adds to them instead
# of resetting them, build_info, the fetch latency histogram, peers
# connected, a failed source request counted). The Grafana dashboard in
# deploy/ is valid JSON and asks only for metrics the endpoints export.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster.sh"

ROOT=$(cd "$HERE/../.." && pwd)
DASHBOARD=$ROOT/deploy/grafana/syncbit-dashboard.json
command -v promtool >/dev/null || { bad "promtool is installed (tests/deps.sh test)"; finish; exit 1; }

# metric NAME FILE [LABEL_MATCH]: the sum of NAME's samples (exact name)
# whose labels contain LABEL_MATCH.
metric() {
	awk -v n="$1" -v m="${3:-}" '
		$0 !~ /^#/ {
			name = $1; sub(/\{.*/, "", name)
			if (name == n && index($1, m) > 0) s += $2
		}
		END { printf "%.0f\n", s }' "$2"
}
# m FILE NAME [LABEL_MATCH]: the same, of $T/FILE.
m() { metric "$2" "$T/$1" "${3:-}"; }

# promtool_clean FILE: promtool accepts it and prints nothing at all.
promtool_clean() {
	promtool check metrics <"$1" >"$1.lint" 2>&1 && [ ! -s "$1.lint" ] ||
		{ cat "$1.lint"; return 1; }
}

SRC=$T/src
mkdir -p "$SRC/sub"
head -c $((3 << 20)) /dev/urandom >"$SRC/big"
head -c $(((1 << 20) + 7)) /dev/urandom >"$SRC/sub/odd"
printf 'small\n' >"$SRC/sub/small"
SIZE=$(find "$SRC" -type f -printf '%s\n' | awk '{s += $1} END {print s}')

start_scheduler --refresh 2 || { bad "scheduler starts"; finish; exit 1; }
H1=127.0.0.1:$(free_port)
H2=127.0.0.1:$(free_port)
start_agent 1 --http "$H1" || bad "agent n1 starts"
start_agent 2 --http "$H2" || bad "agent n2 starts"
check "dataset add" add_dataset w "$SRC" --block-size 1MiB
check "both agents get the dataset" wait_ready 60 w 1 2

# The scheduler sums what the nodes report with their heartbeats.
wait_sched_bytes() {
	local want=$1 deadline=$((SECONDS + 30))
	while [ $SECONDS -lt $deadline ]; do
		curl -sf "http://$SCHED_HTTP/metrics" >"$T/s.prom" || true
		[ "$(($(m s.prom syncbit_cluster_origin_bytes_total 'dataset="w"') + $(m s.prom syncbit_cluster_peer_bytes_total 'dataset="w"')))" -ge "$want" ] && return 0
		sleep 0.3
	done
	return 1
}
check "the scheduler hears of every byte moved" wait_sched_bytes $((2 * SIZE))

# A source the scheduler cannot read: a failed request of kind file.
"$SYNCBIT" dataset add broken "$T/nonexistent" --scheduler "$SCHED" --token-file "$TOKEN" \
	>"$T/broken.out" 2>&1
check "a dataset of a missing directory is refused" test $? -ne 0

curl -sf "http://$H1/metrics" >"$T/a1.prom"
curl -sf "http://$H2/metrics" >"$T/a2.prom"
curl -sf "http://$SCHED_HTTP/metrics" >"$T/s.prom"
for f in a1 a2 s; do
	check "$f: promtool check metrics: no problem, no warning" promtool_clean "$T/$f.prom"
	check "$f: every family has # HELP and # TYPE" python3 - "$T/$f.prom" <<'PY'
import re, sys
helps, types, names = set(), {}, set()
for line in open(sys.argv[1]):
    if line.startswith('# HELP '):
        helps.add(line.split()[2])
    elif line.startswith('# TYPE '):
        _, _, n, t = line.split()
        types[n] = t
    elif line.strip():
        names.add(re.match(r'[a-zA-Z_:][a-zA-Z0-9_:]*', line).group(0))
for n in names:
    base = re.sub(r'_(bucket|sum|count)$', '', n)
    fam = base if types.get(base) == 'histogram' else n
    assert fam in types and fam in helps, n
    assert types[fam] != 'counter' or fam.endswith('_total'), fam
PY
	check "$f: build_info names the version and commit" \
		grep -Eq '^syncbit_build_info\{version="[0-9.]+",commit="[^"]+"\} 1$' "$T/$f.prom"
done

for n in 1 2; do
	got=$(($(m a$n.prom syncbit_dataset_origin_bytes_total 'dataset="w"') + $(m a$n.prom syncbit_dataset_peer_bytes_total 'dataset="w"')))
	check "n$n: origin + peer bytes = the dataset ($got = $SIZE)" test "$got" -eq "$SIZE"
	check "n$n: dataset size" test "$(m a$n.prom syncbit_dataset_size_bytes 'dataset="w"')" -eq "$SIZE"
	check "n$n: dataset ready" test "$(m a$n.prom syncbit_dataset_ready 'dataset="w"')" -eq 1
	check "n$n: a peer connected" test "$(m a$n.prom syncbit_peers_connected)" -ge 1
	check "n$n: cache used holds the dataset" test "$(m a$n.prom syncbit_cache_used_bytes)" -ge "$SIZE"
	check "n$n: cache pinned holds the dataset" test "$(m a$n.prom syncbit_cache_pinned_bytes)" -ge "$SIZE"
	check "n$n: disk free of the data dir" test "$(m a$n.prom syncbit_disk_free_bytes)" -gt 0
	check "n$n: registered" test "$(m a$n.prom syncbit_scheduler_connected)" -eq 1
	count=$(m a$n.prom syncbit_block_fetch_duration_seconds_count)
	inf=$(m a$n.prom syncbit_block_fetch_duration_seconds_bucket 'le="+Inf"')
	check "n$n: fetch latency histogram counted blocks ($count)" test "$count" -gt 0
	check "n$n: its +Inf bucket is its count" test "$inf" -eq "$count"
done
origin=$(($(m a1.prom syncbit_dataset_origin_bytes_total) + $(m a2.prom syncbit_dataset_origin_bytes_total)))
peer=$(($(m a1.prom syncbit_dataset_peer_bytes_total) + $(m a2.prom syncbit_dataset_peer_bytes_total)))
served=$(($(m a1.prom syncbit_peer_served_bytes_total) + $(m a2.prom syncbit_peer_served_bytes_total)))
# Each block is read from the origin by one agent, but a short tail block
# may be planned for both: allow a little over once, never less.
check "the origin was read about once across the agents ($origin)" \
	test "$origin" -ge "$SIZE" -a "$origin" -le $((SIZE * 125 / 100))
check "what one agent received from peers the other served" test "$served" -ge "$peer"

s_origin=$(m s.prom syncbit_cluster_origin_bytes_total 'dataset="w"')
s_peer=$(m s.prom syncbit_cluster_peer_bytes_total 'dataset="w"')
check "scheduler: origin bytes = the agents' ($s_origin = $origin)" test "$s_origin" -eq "$origin"
check "scheduler: peer bytes = the agents' ($s_peer = $peer)" test "$s_peer" -eq "$peer"
check "scheduler: dataset size" test "$(m s.prom syncbit_dataset_size_bytes 'dataset="w"')" -eq "$SIZE"
check "scheduler: two nodes connected" test "$(m s.prom syncbit_nodes 'state="connected"')" -eq 2
check "scheduler: both nodes complete" test "$(m s.prom syncbit_dataset_nodes_complete 'dataset="w"')" -eq 2
check "scheduler: the failed listing counted for kind file" \
	test "$(m s.prom syncbit_source_request_errors_total 'kind="file"')" -ge 1
check "source counters are labelled by kind only" \
	sh -c "! grep '^syncbit_source_' '$T/s.prom' '$T/a1.prom' | grep -v -E '\{kind=\"(file|http|s3|hf|ms|oci)\"\} [0-9]+\$'"

# ---- a new version: the counters go on from where they were ----
before=$((s_origin + s_peer))
head -c $((1 << 20)) /dev/urandom >"$T/new-odd"
mv "$T/new-odd" "$SRC/sub/odd" # --refresh 2 lists it again
new_size=$(find "$SRC" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
wait_new() {
	local deadline=$((SECONDS + 60)) n
	for n in 1 2; do
		until cmp -s "$SRC/sub/odd" "$T/t$n/w/sub/odd" && "$SYNCBIT" ready w --socket "$T/a$n.sock" >/dev/null 2>&1; do
			[ $SECONDS -ge $deadline ] && return 1
			sleep 0.2
		done
	done
}
check "both agents get the new version" wait_new
check "scheduler: totals grow past the first version's (no reset)" \
	wait_sched_bytes $((before + 2 * (1 << 20)))
curl -sf "http://$H1/metrics" >"$T/a1b.prom"
check "n1: size is the new version's" test "$(m a1b.prom syncbit_dataset_size_bytes 'dataset="w"')" -eq "$new_size"
check "n1: its counters did not go down" \
	test "$(($(m a1b.prom syncbit_dataset_origin_bytes_total) + $(m a1b.prom syncbit_dataset_peer_bytes_total)))" -ge "$SIZE"
check "n1: blocks the new version shares were found in the cache" \
	test "$(m a1b.prom syncbit_dataset_reused_bytes_total 'dataset="w"')" -gt 0
check "a1 after the update: promtool clean" promtool_clean "$T/a1b.prom"
check "scheduler after the update: promtool clean" promtool_clean "$T/s.prom"

# ---- the dashboard ----
check "dashboard: valid JSON whose queries use only exported metrics" \
	python3 - "$DASHBOARD" "$T/a1.prom" "$T/s.prom" <<'PY'
import json, re, sys
dash = json.load(open(sys.argv[1]))
exported = set()
for f in sys.argv[2:]:
    for line in open(f):
        if line.startswith('# TYPE '):
            _, _, n, t = line.split()
            exported.add(n)
            if t == 'histogram':
                exported |= {n + '_bucket', n + '_sum', n + '_count'}
exprs = []
def walk(o):
    if isinstance(o, dict):
        for k, v in o.items():
            if k == 'expr' and isinstance(v, str):
                exprs.append(v)
            else:
                walk(v)
    elif isinstance(o, list):
        for v in o:
            walk(v)
walk(dash)
assert len(exprs) >= 8, f'only {len(exprs)} queries'
used = set()
for e in exprs:
    used |= set(re.findall(r'\bsyncbit_[a-z0-9_]+', e))
missing = sorted(used - exported)
assert not missing, f'not exported: {missing}'
assert dash.get('title') and dash.get('panels'), 'no title or panels'
print(f'{len(exprs)} queries, {len(used)} metrics')
PY

stop_cluster
finish
