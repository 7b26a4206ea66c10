#!/usr/bin/env bash
# Guarantee 6, trust: one node cannot make the others publish what the source
# did not publish. A scheduler and two agents distribute an hf:// repository
# from tests/fixtures/hub_server.py; node n1 reads the origin through a hub
# that flips one byte of the LFS file, so the block it reads for its share
# hashes to what it reports, and n2 gets bytes from it that match that
# (poisoned) block hash. The Hub lists the file's SHA-256 (lfs.oid), and
# every node checks the assembled file against it before publishing: neither
# publishes it, both say why, and the bad file leaves no object in a cache.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster.sh"

R=$T/root M=$T/root/models/acme/llm
mkdir -p "$M"
# 4 blocks of 1 MiB; the bad hub flips the byte at 2 MiB, in block 2, which
# the plan over n1 and n2 gives n1 (blocks 0 and 2; n2 reads 1 and 3, and a
# share of two never moves).
head -c $((4 << 20)) /dev/urandom >"$M/model.safetensors"
SHA=$(sha256sum "$M/model.safetensors" | cut -d' ' -f1)

# start_hub NAME: a hub fixture; its port is the first word of $T/NAME.ports.
# Not called in a subshell, so that its pid reaches PIDS and is stopped.
start_hub() {
	python3 "$FIXTURES/hub_server.py" --root "$R" >"$T/$1.ports" 2>"$T/$1.err" &
	PIDS+=($!)
	for _ in $(seq 50); do [ -s "$T/$1.ports" ] && break; sleep 0.1; done
}
start_hub good
start_hub bad
GOOD=$(cut -d' ' -f1 "$T/good.ports") BAD=$(cut -d' ' -f1 "$T/bad.ports")
[ -n "$GOOD" ] && [ -n "$BAD" ] || { bad "hub fixtures start" "$(cat "$T"/*.err)"; finish; exit 1; }
curl -sf "http://127.0.0.1:$BAD/__control?repo=models/acme/llm&corrupt=model.safetensors" >/dev/null
export HF_HOME=$T/hf-home
unset HF_TOKEN HUGGING_FACE_HUB_TOKEN HF_TOKEN_PATH

HF_ENDPOINT=http://127.0.0.1:$GOOD start_scheduler || { bad "scheduler starts"; finish; exit 1; }
HF_ENDPOINT=http://127.0.0.1:$BAD start_agent 1 || bad "agent n1 starts"
HF_ENDPOINT=http://127.0.0.1:$GOOD start_agent 2 || bad "agent n2 starts"
# Both registered before the dataset comes: the plan is made over both.
for _ in $(seq 100); do
	[ "$(curl -sf "http://$SCHED_HTTP/api/v1/nodes" | grep -o '"connected": *true' | wc -l)" -eq 2 ] && break
	sleep 0.1
done
check "dataset add hf://acme/llm" add_dataset llm hf://acme/llm --block-size 1MiB

# error_of N: the dataset's error in agent N's status ("none" while none).
error_of() { status_field "$1" llm error; }
wait_error() {
	for _ in $(seq 300); do
		case "$(error_of "$1")" in *"does not match the source's digest sha256:$SHA"*) return 0 ;; esac
		sleep 0.1
	done
	return 1
}
check "n2 refuses the file assembled with n1's blocks: the source's SHA-256 does not match" wait_error 2
check "n1 refuses it too" wait_error 1
echo "  n2: $(error_of 2)"
check "n2 took the poisoned blocks from its peer (they matched the block hashes)" \
	test "$(status_field 2 llm bytes_from_peers)" -gt 0
for n in 1 2; do
	check "n$n: not ready" sh -c "! '$SYNCBIT' ready llm --socket '$T/a$n.sock'"
	check "n$n: nothing published" test ! -e "$T/t$n/llm/model.safetensors"
	check "n$n: no object of the bad file in the cache" \
		test -z "$(find "$T/a$n/objects" -type f -size $((4 << 20))c)"
done
check "the scheduler took n1's hash: n1 read that block for its share" \
	test "$(curl -sf "http://$SCHED_HTTP/api/v1/nodes" | python3 -c "
import json, sys
print(sum(n['hashes_refused'] for n in json.load(sys.stdin)['nodes']))")" -eq 0

stop_cluster
finish
