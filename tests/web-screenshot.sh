#!/usr/bin/env bash
# Makes docs/img/scheduler-page.png: the scheduler's page (headless
# Chromium, tests/integration/cdp.py) over a demo-sized cluster on loopback:
# a scheduler, four agents, a small dataset already complete and a 512 MiB
# one caught while it spreads.   tests/web-screenshot.sh [OUT.png]
. "$(dirname "$0")/integration/lib.sh"
. "$(dirname "$0")/integration/cluster.sh"
OUT=$(realpath -m "${1:-$HERE/../../docs/img/scheduler-page.png}")
CLEANUPS+=("[ -s '$T/cdp.pid' ] && kill -9 -- -\$(cat '$T/cdp.pid')")

mkdir -p "$T/tok" "$T/llama-demo"
echo '{"vocab_size":32000}' >"$T/tok/config.json"
head -c 2000000 /dev/urandom >"$T/tok/tokenizer.json"
echo '{"architectures":["LlamaForCausalLM"]}' >"$T/llama-demo/config.json"
for i in 1 2 3 4; do head -c $((128 << 20)) /dev/urandom >"$T/llama-demo/model-0000$i-of-00004.safetensors"; done

start_scheduler || exit 1
for n in 1 2 3 4; do start_agent $n --labels pool=a100,zone=z$((n % 2)) || exit 1; done
add_dataset tokenizer "$T/tok" --selector pool=a100 >/dev/null || exit 1
wait_ready 60 tokenizer 1 2 3 4 || exit 1
add_dataset llama-demo "$T/llama-demo" >/dev/null || exit 1
# A rate shows from the second poll on; catch a cell fetching with one.
timeout -k 5 200 python3 "$HERE/cdp.py" --profile "$T/chromium" --pidfile "$T/cdp.pid" --timeout 180 \
	size 1280x860 open "http://$SCHED_HTTP/" \
	wait 120 "[...document.querySelectorAll('#grid td[data-state=fetching]')].some(c => /^[1-9][0-9.]* [KMG]iB\/s\$/.test(c.querySelector('.line').textContent) && +c.dataset.percent >= 25 && +c.dataset.percent <= 75)" \
	shot "$OUT" || exit 1
echo "wrote $OUT ($(stat -c %s "$OUT") bytes)"
