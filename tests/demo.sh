#!/usr/bin/env bash
# make demo: a Syncbit cluster on loopback. A scheduler, an origin (a local
# directory, as an NFS export would be) and four agents distribute a
# generated 512 MiB model-like dataset; `dataset wait` shows the progress, then a
# summary of time, bytes read from the origin and bytes delivered.
set -euo pipefail
BIN=${SYNCBIT_BIN:-$(cd "$(dirname "$0")/.." && pwd)/bin/syncbit}
NODES=${DEMO_NODES:-4}
SIZE_MIB=${DEMO_SIZE_MIB:-512}
D=$(mktemp -d /tmp/syncbit-demo.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	release_ports
	rm -rf "$D"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The system interpreter: a version-manager shim in PATH costs ~0.5 s a call.
PY=$(command -v /usr/bin/python3 || command -v python3)
# free_port, release_ports
. "$(dirname "$0")/free-port.sh"

SRC=$D/origin/llama-demo
mkdir -p "$SRC"
echo '{"architectures":["LlamaForCausalLM"],"hidden_size":4096,"num_hidden_layers":32}' >"$SRC/config.json"
echo '{"bos_token_id":1,"eos_token_id":2}' >"$SRC/generation_config.json"
head -c 2000000 /dev/urandom >"$SRC/tokenizer.json"
shards=4
for i in $(seq $shards); do
	head -c $((SIZE_MIB / shards * 1048576)) /dev/urandom >"$SRC/model-0000$i-of-0000$shards.safetensors"
done
echo "== origin: $(du -sh "$SRC" | cut -f1) in $(ls "$SRC" | wc -l) files at $SRC"

SCHED=127.0.0.1:$(free_port)
"$BIN" scheduler --listen "$SCHED" --data "$D/scheduler" >"$D/scheduler.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -s "$D/scheduler/join-token" ] && break; sleep 0.1; done
echo "== scheduler on $SCHED (join token in $D/scheduler/join-token)"
for n in $(seq "$NODES"); do
	"$BIN" daemon --scheduler "$SCHED" --listen 127.0.0.1:0 --data "$D/node$n/cache" \
		--target "$D/node$n/models" --node "gpu-$n" --labels "pool=a100" \
		--token-file "$D/scheduler/join-token" --socket "$D/node$n.sock" >"$D/node$n.log" 2>&1 &
	PIDS+=($!)
done
for n in $(seq "$NODES"); do
	for _ in $(seq 100); do [ -S "$D/node$n.sock" ] && break; sleep 0.1; done
done
echo "== $NODES agents: gpu-1 .. gpu-$NODES (label pool=a100)"
echo "\$ syncbit dataset add llama-demo $SRC --selector pool=a100"
"$BIN" dataset add llama-demo "$SRC" --selector pool=a100 --scheduler "$SCHED" \
	--token-file "$D/scheduler/join-token"
start=$(date +%s.%N)

# Progress until every node has the dataset: the scheduler's view of the
# whole cluster, as an operator would wait for it.
A=(--scheduler "$SCHED" --token-file "$D/scheduler/join-token")
echo "\$ syncbit dataset wait llama-demo --timeout 10m"
"$BIN" dataset wait llama-demo --timeout 10m "${A[@]}" || { echo "demo: not done after 10 minutes" >&2; exit 1; }
secs=$("$PY" -c "import time; print('%.2f' % (time.time() - $start))")
read -r bytes origin peers < <("$BIN" status llama-demo --json "${A[@]}" | tail -1 | "$PY" -c '
import json, sys
d = json.load(sys.stdin)["datasets"][0]
t = d["totals"]
print(d["bytes"] * d["nodes_complete"], t["bytes_from_origin"], t["bytes_from_peers"])')
echo
for n in $(seq "$NODES"); do
	diff -r "$SRC" "$D/node$n/models/llama-demo" >/dev/null || { echo "demo: gpu-$n differs from the origin" >&2; exit 1; }
done
"$PY" - "$secs" "$NODES" "$bytes" "$origin" "$peers" <<'PY'
import sys
secs, n, delivered, origin, peers = float(sys.argv[1]), int(sys.argv[2]), *map(int, sys.argv[3:])
size = delivered / n
mib = lambda x: x / 1048576
print("== done in %.2fs: %d nodes hold llama-demo (%.0f MiB each), byte-identical to the origin" % (secs, n, mib(size)))
print("   delivered %.0f MiB in all; read from the origin %.0f MiB (%.2fx the dataset), %.0f MiB between peers" % (mib(delivered), mib(origin), origin / size if size else 0, mib(peers)))
print("   without peers the origin would have sent %.0f MiB (%dx)" % (mib(delivered), n))
PY
echo "\$ syncbit status --scheduler $SCHED --token-file … llama-demo"
"$BIN" status llama-demo "${A[@]}"
