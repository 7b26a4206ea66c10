#!/usr/bin/env bash
# A small cluster in network namespaces (bench/netns.sh): an origin (nginx),
# a scheduler and three agents, every link shaped to 100 mbit with tbf.
# One 32 MiB dataset must reach every agent byte for byte with the origin
# sending less than 1.5x its size (the peers carry the rest); a second one
# must still complete everywhere when one agent's link is cut mid-transfer
# and restored 4 s later. Where network namespaces cannot be made the whole
# test is one skip, which fails the run unless it is expected
# (tests/expected-skips.sh).
. "$(dirname "$0")/lib.sh"
. "$HERE/../../bench/netns.sh"

RATE=100mbit
MB=32
S=$((MB * 1024 * 1024))
AGENTS=(a1 a2 a3)
LIMIT=20 # seconds a dataset may take to reach every agent (S/B is 2.7 s)

CLEANUPS+=("netns_teardown")
if ! netns_init; then
	skip "a cluster in network namespaces" "$NETNS_SKIP"
	finish
	exit 0
fi

up() {
	netns_add_host origin 1 $RATE && netns_add_host sched 10 $RATE &&
		netns_add_host a1 11 $RATE && netns_add_host a2 12 $RATE && netns_add_host a3 13 $RATE
}
check "testbed: 5 hosts in namespaces, links shaped to $RATE" up
check "tbf shapes the bridge side of every link" \
	bash -c "[ \$(tc -n $NETNS_BR qdisc show | grep -c 'tbf.*rate 100Mbit') -eq 5 ]"
check "tbf shapes the host side of a link" \
	bash -c "tc -n $(netns_ns a1) qdisc show dev eth0 | grep -q 'tbf.*rate 100Mbit'"
[ "$FAIL" -eq 0 ] || { finish; exit 1; }

# Origin: nginx on 10.77.0.1:80 serving two pseudo-random files.
W=$T/www
mkdir -p "$W"
chmod 755 "$T"
head -c $S /dev/urandom >"$W/one.bin"
head -c $S /dev/urandom >"$W/two.bin"
netns_nginx origin "$W" "$T/nginx"
check "origin serves HTTP inside its namespace" netns_wait_tcp a1 "$(netns_ip origin):80" 10

SCHED=$(netns_ip sched):7400
TOKEN=$T/sched/join-token
mkdir -p "$T/sched"
netns_spawn sched "$SYNCBIT" scheduler --listen "$SCHED" --data "$T/sched" >"$T/sched.log" 2>&1
for _ in $(seq 100); do [ -s "$TOKEN" ] && break; sleep 0.1; done
check "scheduler writes its join token" test -s "$TOKEN"
for a in "${AGENTS[@]}"; do
	mkdir -p "$T/$a/data" "$T/$a/target"
	netns_spawn "$a" "$SYNCBIT" daemon --scheduler "$SCHED" --listen "$(netns_ip "$a"):7401" \
		--data "$T/$a/data" --target "$T/$a/target" --node "$a" --labels role=node \
		--token-file "$TOKEN" --socket "$T/$a/sock" >"$T/$a.log" 2>&1
done
agents_answer() {
	local a
	for a in "${AGENTS[@]}"; do
		for _ in $(seq 100); do
			"$SYNCBIT" status --socket "$T/$a/sock" >/dev/null 2>&1 && continue 2
			sleep 0.1
		done
		echo "agent $a does not answer on $T/$a/sock"
		tail -5 "$T/$a.log"
		return 1
	done
}
check "three agents start and answer on their sockets" agents_answer

# ready_all NAME: every agent reports NAME ready within LIMIT seconds.
ready_all() {
	local a deadline=$((SECONDS + LIMIT))
	for a in "${AGENTS[@]}"; do
		until "$SYNCBIT" ready "$1" --socket "$T/$a/sock" >/dev/null 2>&1; do
			if [ $SECONDS -ge $deadline ]; then
				echo "$1 not ready on $a after ${LIMIT}s"
				tail -3 "$T/$a.log"
				return 1
			fi
			sleep 0.2
		done
	done
}
# same NAME FILE: every agent's copy equals the origin's.
same() {
	local a
	for a in "${AGENTS[@]}"; do cmp "$W/$2" "$T/$a/target/$1/$2" || return 1; done
}
add() {
	netns_exec sched "$SYNCBIT" dataset add "$1" "http://$(netns_ip origin)/$2" \
		--selector role=node --scheduler "$SCHED" --token-file "$TOKEN"
}

# 1. A dataset reaches every agent, mostly from peers.
tx0=$(netns_tx_bytes origin)
check "dataset add one (32 MiB over HTTP)" add one one.bin
check "one is ready on every agent within ${LIMIT}s" ready_all one
check "every agent holds a byte-identical copy of one" same one one.bin
egress=$(($(netns_tx_bytes origin) - tx0))
echo "       origin sent $egress bytes for $S ($(awk -v e=$egress -v s=$S 'BEGIN { printf "%.2f", e / s }') x S)"
check "origin egress < 1.5 x S: the peers carried the rest" test $((egress * 2)) -lt $((S * 3))

# 2. One agent's link goes down mid-transfer for 4 s, longer than the
# scheduler waits for a heartbeat, so the scheduler also sees the node go and
# come back; the agent's peer and scheduler connections must recover.
rx0=$(netns_rx_bytes a3)
check "dataset add two (32 MiB over HTTP)" add two two.bin
cut_mid_transfer() {
	local deadline=$((SECONDS + 10))
	# Wait until a3 has received a quarter of the dataset, then cut it off.
	until [ $(($(netns_rx_bytes a3) - rx0)) -gt $((S / 4)) ]; do
		[ $SECONDS -lt $deadline ] || { echo "a3 received nothing"; return 1; }
		sleep 0.05
	done
	netns_link a3 down || return 1
	! "$SYNCBIT" ready two --socket "$T/a3/sock" >/dev/null 2>&1 || {
		echo "a3 already had all of two when its link went down"
		return 1
	}
}
check "a3's link goes down with two partly received" cut_mid_transfer
sleep 3
check "a3 received nothing while its link was down" \
	bash -c "r=\$(ip netns exec $NETNS_BR cat /sys/class/net/$(netns_port a3)/statistics/tx_bytes); sleep 1; [ \$r -eq \$(ip netns exec $NETNS_BR cat /sys/class/net/$(netns_port a3)/statistics/tx_bytes) ]"
check "a3's link comes back up" netns_link a3 up
check "two completes on every agent, a3 included, within ${LIMIT}s" ready_all two
check "every agent holds a byte-identical copy of two" same two two.bin
check "one is still intact everywhere" same one one.bin

finish
