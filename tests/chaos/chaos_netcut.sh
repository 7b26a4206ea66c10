#!/usr/bin/env bash
# Links cut mid-block, in network namespaces (bench/netns.sh): an origin
# (nginx), a scheduler and three agents, every link shaped to 40 mbit. While
# a 40 MiB dataset moves, three cuts at random points (a share of the bytes
# the agents received together), each of a random host (an agent or the
# scheduler), a random kind and a random length (1 to 6 s, sometimes longer
# than the scheduler waits for a heartbeat):
#   down       the host's cable pulled: its bridge port set down, so the
#              host loses carrier and every packet to or from it is dropped
#   blackhole  every packet dropped both ways by a blackhole qdisc on both
#              ends of its veth, the link staying up: TCP sees only silence,
#              as with netem loss 100 % (sch_netem is not needed)
# Each cut is restored and the next one follows. Every agent must end with
# the source's bytes, verified, and nothing may be published half-done.
# Where namespaces cannot be made the scenario is one skip, which fails the
# run unless it is expected (tests/expected-skips.sh).
. "$(dirname "$0")/lib.sh"
. "$HERE/../../bench/netns.sh"

RATE=40mbit
MB=40
S=$((MB << 20))
AGENTS=(1 2 3)
CUTS=3
BOUND=90

CLEANUPS+=("netns_teardown")
if ! netns_init; then
	skip "a cluster in network namespaces" "$NETNS_SKIP"
	finish
	exit 0
fi
up() {
	netns_add_host origin 1 $RATE && netns_add_host sched 10 $RATE &&
		netns_add_host n1 11 $RATE && netns_add_host n2 12 $RATE && netns_add_host n3 13 $RATE
}
check "testbed: 5 hosts in namespaces, links shaped to $RATE" up
[ "$FAIL" -eq 0 ] || { finish; exit 1; }

W=$T/www
mkdir -p "$W"
chmod 755 "$T"
head -c $S /dev/urandom >"$W/m.bin"
expect_tree "$T/m.json" "$W" m.bin
netns_nginx origin "$W" "$T/nginx"
check "origin serves HTTP inside its namespace" netns_wait_tcp n1 "$(netns_ip origin):80" 10

SCHED=$(netns_ip sched):7400
TOKEN=$T/sched/join-token
mkdir -p "$T/sched"
netns_spawn sched "$SYNCBIT" scheduler --listen "$SCHED" --data "$T/sched" >"$T/sched.log" 2>&1
for _ in $(seq 100); do [ -s "$TOKEN" ] && break; sleep 0.1; done
check "scheduler writes its join token" test -s "$TOKEN"
for n in "${AGENTS[@]}"; do
	mkdir -p "$T/a$n" "$T/t$n"
	netns_spawn "n$n" "$SYNCBIT" daemon --scheduler "$SCHED" --listen "$(netns_ip "n$n"):7401" \
		--data "$T/a$n" --target "$T/t$n" --node "n$n" --labels role=node \
		--token-file "$TOKEN" --socket "$T/a$n.sock" >"$T/a$n.log" 2>&1
done
answer() {
	for _ in $(seq 100); do "$SYNCBIT" status --socket "$T/a$1.sock" >/dev/null 2>&1 && return 0; sleep 0.1; done
	tail -5 "$T/a$1.log"
	return 1
}
for n in "${AGENTS[@]}"; do check "agent n$n answers on its socket" answer "$n"; done
dirs=()
for n in "${AGENTS[@]}"; do dirs+=("$T/t$n/m"); done
start_watcher "$T/m.json" "${dirs[@]}"

# rx_all: bytes the agents received together, counted at the bridge.
rx_all() {
	local n t=0
	for n in "${AGENTS[@]}"; do t=$((t + $(netns_rx_bytes "n$n"))); done
	echo $t
}
# cut HOST KIND / restore HOST KIND
cut() {
	case $2 in
	down) netns_link "$1" down ;;
	blackhole)
		tc -n "$(netns_ns "$1")" qdisc replace dev eth0 root blackhole &&
			tc -n "$NETNS_BR" qdisc replace dev "$(netns_port "$1")" root blackhole ;;
	esac
}
restore() {
	case $2 in
	down) netns_link "$1" up ;;
	blackhole) netns_shape "$1" $RATE ;;
	esac
}

points=()
for _ in $(seq $CUTS); do rnd 5 70; points+=("$R"); done
mapfile -t points < <(printf '%s\n' "${points[@]}" | sort -n)
rx0=$(rx_all)
check "dataset add m (40 MiB over HTTP)" netns_exec sched "$SYNCBIT" dataset add m \
	"http://$(netns_ip origin)/m.bin" --selector role=node --block-size 1MiB \
	--scheduler "$SCHED" --token-file "$TOKEN"
MID=0
for pct in "${points[@]}"; do
	pick n1 n2 n3 sched
	host=$R
	pick down blackhole
	kind=$R
	rnd 10 60
	secs=$R # tenths
	deadline=$((SECONDS + 60))
	until [ $(($(rx_all) - rx0)) -ge $((S * 3 / 100 * pct)) ]; do
		[ $SECONDS -lt $deadline ] || { note "the agents did not receive $pct % within 60 s"; break; }
		sleep 0.05
	done
	got=$(($(rx_all) - rx0))
	all_ready m "${AGENTS[@]}" || MID=$((MID + 1))
	inject "cut $host ($kind) for $((secs / 10)).$((secs % 10)) s, at $((got * 100 / (S * 3))) % of the bytes received"
	cut "$host" "$kind" || bad "cut $host ($kind)"
	sleep "$((secs / 10)).$((secs % 10))"
	restore "$host" "$kind" || bad "restore $host ($kind)"
	inject "$host restored"
done
check "every cut fell while the dataset moved ($MID of $CUTS)" test "$MID" = "$CUTS"

check "every agent has m within ${BOUND}s of the last cut" wait_ready $BOUND m "${AGENTS[@]}" ||
	for n in "${AGENTS[@]}"; do echo "       n$n holds $(status_field "$n" m bytes_have 2>/dev/null) of $S bytes"; done
stop_watcher
same_trees "$T/m.json" m "${AGENTS[@]}"
netns_stop_all
if grep -lE 'AddressSanitizer|LeakSanitizer|runtime error' "$T"/*.log >"$T/.san" 2>/dev/null; then
	bad "no sanitizer reports" "$(tr '\n' ' ' <"$T/.san")"
else
	ok "no sanitizer reports"
fi
verify_all m "${AGENTS[@]}"
chaos_finish
