#!/usr/bin/env bash
# make demo: generate a small model-like tree, pull it into a fresh cache and
# target, change one shard, pull again, and show what moved each time.
set -euo pipefail
BIN=${SYNCBIT_BIN:-$(cd "$(dirname "$0")/.." && pwd)/bin/syncbit}
D=$(mktemp -d /tmp/syncbit-demo.XXXXXX)
trap 'rm -rf "$D"' EXIT
SRC=$D/origin/llama-mini DST=$D/node/models/llama-mini DATA=$D/node/cache
mkdir -p "$SRC"
echo '{"architectures":["LlamaForCausalLM"],"hidden_size":512}' >"$SRC/config.json"
head -c 2000000 /dev/urandom >"$SRC/tokenizer.json"
for i in 1 2 3; do head -c $((48 * 1024 * 1024)) /dev/urandom >"$SRC/model-0000$i-of-00003.safetensors"; done
echo "== origin: $(du -sh "$SRC" | cut -f1) in $(ls "$SRC" | wc -l) files at $SRC"

step() { echo; echo "== $1"; echo "\$ syncbit pull $SRC --to $DST --data $DATA --json"; "$BIN" pull "$SRC" --to "$DST" --data "$DATA" --json | tail -1 | tee "$D/last.json"; }
show() { python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); mb=lambda k: j[k]/1048576; print("   %d files, %.1f MiB: %.1f MiB new from the source, %.1f MiB reused from the cache, %.2fs" % (j["files"], mb("bytes"), mb("bytes_from_source"), mb("bytes_reused"), j["seconds"]))' "$D/last.json"; }

step "first pull: every block comes from the source"; show
step "second pull of the unchanged source: nothing is read"; show
printf 'fine-tuned' | dd of="$SRC/model-00002-of-00003.safetensors" bs=1 seek=$((20 * 1024 * 1024)) conv=notrunc status=none
step "one shard changed in one place: only that block is new"; show
echo
echo "== published tree (hardlinks to the cache: one copy on disk)"
ls -l "$DST"
echo "\$ syncbit verify $DST"
"$BIN" verify "$DST" --data "$DATA"
