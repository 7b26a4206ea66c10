#!/usr/bin/env bash
# Node identity: each agent makes a static key on first start (DATA/node.key),
# the scheduler pins it to the node's name at its first registration, another
# key under that name is refused until `node rm`, and peers accept each other
# only with the keys the scheduler registered. Also: the join token still
# admits (a wrong one is refused), and a peer of protocol v1 is told which
# version this side speaks.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster.sh"

json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
ADM=()

until_true() {
	local secs=$1; shift
	for _ in $(seq $((secs * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
	return 1
}

# pubkey FILE: the X25519 public key of the private key in a key file, hex.
pubkey() {
	python3 -c "
import sys
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives import serialization as s
k = X25519PrivateKey.from_private_bytes(bytes.fromhex(open(sys.argv[1]).read().strip()))
print(k.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw).hex())" "$1"
}

# node_key NAME: the key the scheduler holds for node NAME ("" when none).
node_key() {
	"$SYNCBIT" node ls "${ADM[@]}" --json | tail -1 |
		json "([n['key'] for n in d['nodes'] if n['name'] == '$1'] + [''])[0]"
}

# gone NAME: the scheduler knows node NAME and shows it not connected.
gone() {
	"$SYNCBIT" node ls "${ADM[@]}" --json | tail -1 |
		json "[n['connected'] for n in d['nodes'] if n['name'] == '$1'] == [False]" | grep -qx True
}

connected() { "$SYNCBIT" status --socket "$T/$1.sock" --json | tail -1 | json "d['scheduler']['connected']"; }
is_connected() { test "$(connected "$1")" = True; }

# field SOCK DATASET KEY: a field of a dataset in an agent's status.
field() {
	"$SYNCBIT" status --socket "$T/$1.sock" --json | tail -1 |
		json "[x.get('$3') for x in d['datasets'] if x['name'] == '$2'][0]"
}

# start_as SOCK NAME DATA [flags...]: an agent under a name and data dir of
# the test's choosing; its pid in LAST_PID.
start_as() {
	local sock=$1 name=$2 data=$3; shift 3
	mkdir -p "$data" "$T/t-$sock"
	"$SYNCBIT" daemon --scheduler "$SCHED" --listen 127.0.0.1:0 --data "$data" \
		--target "$T/t-$sock" --node "$name" --token-file "$TOKEN" --socket "$T/$sock.sock" \
		--log-level info "$@" >>"$T/$sock.log" 2>&1 &
	LAST_PID=$!
	PIDS+=($!)
	for _ in $(seq 100); do [ -S "$T/$sock.sock" ] && return 0; sleep 0.1; done
	return 1
}

SRC=$T/src
mkdir -p "$SRC"
head -c $((12 << 20)) /dev/urandom >"$SRC/weights.bin"
head -c 777 /dev/urandom >"$SRC/config.json"

start_scheduler || { bad "scheduler starts"; finish; exit 1; }
ADM=(--scheduler "$SCHED" --token-file "$TOKEN")
check "the scheduler made its own key, 0600" test "$(stat -c %a "$T/sched/scheduler.key")" = 600

# ---- protocol version 1 is told which version this side speaks ----
check "a v1 hello gets a v2 answer, and is refused" python3 - "${SCHED##*:}" <<'PY'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
body = b"\x08\x01\x12\x20" + b"\x42" * 32 + b"\x1a\x20" + b"\x43" * 32 + b"\x22\x03cli"
s.sendall(struct.pack(">III", len(body), 1, 0) + body)
n, typ, plen = struct.unpack(">III", s.recv(12, socket.MSG_WAITALL))
reply = s.recv(n, socket.MSG_WAITALL)
assert typ == 1 and reply[:2] == b"\x08\x02", (typ, reply)  # Hello {version: 2, ...}
assert s.recv(1) == b""  # then closed
PY
check "the scheduler logs what the peer speaks" \
	until_true 5 grep -q "peer speaks protocol v1; this side speaks v2" "$T/sched.log"

# ---- keys on first start ----
start_agent 1 || bad "agent n1 starts"
start_agent 2 || bad "agent n2 starts"
for n in 1 2; do
	check "n$n made DATA/node.key, 0600, 64 hex digits" sh -c \
		"test \"\$(stat -c %a '$T/a$n/node.key')\" = 600 && grep -qxE '[0-9a-f]{64}' '$T/a$n/node.key'"
done
check "the private key is in no log" sh -c "! grep -rqF \"\$(cat '$T/a1/node.key')\" '$T'/*.log"
K1=$(pubkey "$T/a1/node.key")
K2=$(pubkey "$T/a2/node.key")
check "n1 logs the fingerprint of its key" grep -q "node n1: new key ${K1:0:16} in $T/a1/node.key" "$T/a1.log"
check "n1 and n2 register" until_true 10 eval 'is_connected a1 && is_connected a2'
check "the scheduler pinned n1's public key at registration" test "$(node_key n1)" = "$K1"
check "... and n2's" test "$(node_key n2)" = "$K2"

# ---- two agents exchange a dataset, each checking the other's key ----
check "dataset add" add_dataset tree "$SRC" --block-size 1MiB
check "n1 and n2 get it" wait_ready 60 tree 1 2
for n in 1 2; do check "n$n: the dataset is byte-identical" diff -r "$SRC" "$T/t$n/tree"; done
check "n1 and n2 connected to each other" grep -q "peer n2 (.*) connected" "$T/a1.log"
peers=$(($(field a1 tree bytes_from_peers) + $(field a2 tree bytes_from_peers)))
check "blocks went between them ($peers bytes)" test "$peers" -gt 0

# ---- another install under a registered name is refused ----
start_as imp n1 "$T/imp" || bad "the second n1 starts"
IMP_PID=$LAST_PID
REFUSAL='refused: node name n1 is registered with another key; `syncbit node rm n1` on the scheduler if this node was reinstalled'
check "the second n1 is told why" until_true 10 grep -qF "$REFUSAL" "$T/imp.log"
sleep 3 # it retries meanwhile
check "the scheduler says so in one warn line naming the node" test \
	"$(grep -c 'warn: node n1: registration from .* refused: its key .* is not the one registered' "$T/sched.log")" = 1
check "the second n1 says it once, not at every retry" test "$(grep -cF "$REFUSAL" "$T/imp.log")" = 1
check "the second n1 is not connected" test "$(connected imp)" = False
check "the first n1 still is" is_connected a1
check "the registered key is still n1's" test "$(node_key n1)" = "$K1"
check "the first n1 still holds the dataset" "$SYNCBIT" ready tree --socket "$T/a1.sock"

# ---- node rm forgets the key: the reinstalled node is accepted ----
kill -TERM "$IMP_PID" "${AGENT_PID[1]}"
wait "$IMP_PID" "${AGENT_PID[1]}" 2>/dev/null
unset 'AGENT_PID[1]'
check "n1 shows as gone" until_true 10 gone n1
check "node rm n1" "$SYNCBIT" node rm n1 "${ADM[@]}"
check "n1 is forgotten with its key" test "$(node_key n1)" = ""
rm -f "$T/imp.sock"
start_as imp n1 "$T/imp" --labels "role=gpu,idx=1" || bad "the reinstalled n1 starts"
AGENT_PID[11]=$LAST_PID
check "the reinstalled n1 registers" until_true 15 is_connected imp
check "... with its new key pinned" test "$(node_key n1)" = "$(pubkey "$T/imp/node.key")"
check "... and gets the dataset" until_true 60 "$SYNCBIT" ready tree --socket "$T/imp.sock"
check "... with blocks from n2, which took its new key" test "$(field imp tree bytes_from_peers)" -gt 0

# ---- a peer that answers for a node with another key is refused ----
# n4 registers advertising the address an impostor listens on; n3, whose
# name sorts first, dials "n4" there and refuses the key it finds.
IMP_PORT=$(free_port)
start_agent 4 --labels "role=gpu,pair=x" --advertise "127.0.0.1:$IMP_PORT" || bad "agent n4 starts"
check "n4 registers" until_true 10 eval "test -n \"\$(node_key n4)\""
start_as fake n4 "$T/fake" --listen "127.0.0.1:$IMP_PORT" || bad "the fake n4 starts"
AGENT_PID[14]=$LAST_PID
start_agent 3 --labels "role=gpu,pair=x" || bad "agent n3 starts"
check "dataset add for n3 and n4" add_dataset pair "$SRC" --selector pair=x --block-size 1MiB
check "n3 refuses the fake n4's key" until_true 20 grep -q \
	"peer n4 (127.0.0.1:$IMP_PORT) refused: its key [0-9a-f]* is not the one the scheduler registered for that node" "$T/a3.log"
check "n3 never took it for n4" sh -c "! grep -q 'peer n4 (.*) connected' '$T/a3.log'"
check "n3 and n4 still get the dataset" wait_ready 60 pair 3 4

# ---- the join token still admits ----
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$T/wrong-token"; echo >>"$T/wrong-token"
chmod 600 "$T/wrong-token"
AGENT_TOKEN=$T/wrong-token start_agent 7
check "wrong token: refused, and told so" until_true 10 grep -q \
	"refused the handshake (wrong join token?)" "$T/a7.log"
check "wrong token: not connected" test "$(connected a7)" = False
expect_fail "the CLI with a wrong token" 1 "join token" \
	"$SYNCBIT" node ls --scheduler "$SCHED" --token-file "$T/wrong-token"

stop_cluster
finish
