# free_port: a TCP port on 127.0.0.1 for a server a test or bench starts.
# Sourced by tests/integration/lib.sh, tests/demo.sh and bench/lib.sh.
#
# A port asked of the kernel (bind to port 0) comes from the ephemeral
# range, where any process's next outgoing connection may take it between
# the pick and the server's bind; test scripts run a few at a time, each
# making hundreds of connections. So ports are picked below that range,
# where no outgoing connection lands, and reserved under
# /tmp/syncbit-ports/PORT by the caller's pid, so that two scripts running
# at once never get the same port. A reservation whose owner has exited is
# taken over; release_ports drops the caller's own.
SYNCBIT_PORT_DIR=${SYNCBIT_PORT_DIR:-/tmp/syncbit-ports}

free_port() {
	local lo hi port i owner py=${PY:-python3}
	read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
	((lo > 12000)) || lo=32768 # a machine that moved the range down: use the usual one's gap
	mkdir -p "$SYNCBIT_PORT_DIR"
	for ((i = 0; i < 200; i++)); do
		port=$((10000 + (RANDOM * 32768 + RANDOM) % (lo - 10000)))
		if ! mkdir "$SYNCBIT_PORT_DIR/$port" 2>/dev/null; then
			owner=$(cat "$SYNCBIT_PORT_DIR/$port/pid" 2>/dev/null) || continue
			[ -n "$owner" ] && kill -0 "$owner" 2>/dev/null && continue
			# its owner is gone: move it aside (one taker wins) and retry
			mv "$SYNCBIT_PORT_DIR/$port" "$SYNCBIT_PORT_DIR/.stale.$$.$port" 2>/dev/null || continue
			rm -rf "$SYNCBIT_PORT_DIR/.stale.$$.$port"
			mkdir "$SYNCBIT_PORT_DIR/$port" 2>/dev/null || continue
		fi
		echo "$$" >"$SYNCBIT_PORT_DIR/$port/pid"
		# Nothing else may hold it either (a server outside these scripts).
		if "$py" -c 'import socket,sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' "$port" 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	echo "free_port: no free port below $lo" >&2
	return 1
}

# release_ports: drop the reservations this script made.
release_ports() {
	local d
	for d in "$SYNCBIT_PORT_DIR"/*/pid; do
		[ -f "$d" ] && [ "$(cat "$d" 2>/dev/null)" = "$$" ] && rm -rf "$(dirname "$d")"
	done
	return 0
}
