#!/usr/bin/env bash
# What peers dial: an agent listening on every address (0.0.0.0) is never
# advertised as 0.0.0.0; the scheduler hands out the address it connected
# from, $POD_IP (the Downward API) names it when set, and --advertise wins.
# Two such agents then exchange a dataset.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cluster.sh"

SRC=$T/src
mkdir -p "$SRC"
head -c $((3 << 20)) /dev/urandom >"$SRC/w.bin"

start_scheduler || { bad "scheduler starts"; finish; exit 1; }
start_agent 1 --listen 0.0.0.0:0 || bad "agent n1 (0.0.0.0) starts"
start_agent 2 --listen 0.0.0.0:0 || bad "agent n2 (0.0.0.0) starts"
POD_IP=127.0.0.3 start_agent 3 --listen 0.0.0.0:0 || bad "agent n3 (POD_IP) starts"
start_agent 4 --listen 0.0.0.0:0 --advertise 127.0.0.4:7777 || bad "agent n4 (--advertise) starts"

# addr N: what node ls says peers dial for nN, once it registered.
addr() {
	local a
	for _ in $(seq 50); do
		a=$("$SYNCBIT" node ls --scheduler "$SCHED" --token-file "$TOKEN" --json 2>/dev/null |
			python3 -c "import json,sys
for n in json.load(sys.stdin)['nodes']:
    if n['name'] == 'n$1': print(n.get('addr', ''))")
		[ -n "$a" ] && { echo "$a"; return; }
		sleep 0.1
	done
}
a1=$(addr 1) a3=$(addr 3) a4=$(addr 4)
check "0.0.0.0 listener is dialled where it connected from ($a1)" \
	eval '[[ $a1 =~ ^127\.0\.0\.1:[0-9]+$ ]] && [ "${a1##*:}" != 0 ]'
check "no node is advertised as 0.0.0.0" \
	eval '! "$SYNCBIT" node ls --scheduler "$SCHED" --token-file "$TOKEN" | grep -q "0\.0\.0\.0"'
check "\$POD_IP names the host ($a3)" eval '[[ $a3 =~ ^127\.0\.0\.3:[0-9]+$ ]]'
check "--advertise is kept as given" test "$a4" = 127.0.0.4:7777

kill "${AGENT_PID[3]}" "${AGENT_PID[4]}" 2>/dev/null
unset 'AGENT_PID[3]' 'AGENT_PID[4]'
check "dataset add" add_dataset w "$SRC" --block-size 256KiB
check "two 0.0.0.0 agents get the dataset" wait_ready 60 w 1 2
check "copies are identical" cmp "$SRC/w.bin" "$T/t1/w/w.bin"
check "copies are identical (n2)" cmp "$SRC/w.bin" "$T/t2/w/w.bin"
got=$(("$(status_field 1 w bytes_from_peers)" + "$(status_field 2 w bytes_from_peers)"))
check "the two agents swapped blocks over the resolved addresses ($got bytes)" test "$got" -gt 0
stop_cluster
finish
