# shellcheck shell=bash disable=SC2034 # NETNS_* are for the scripts sourcing this file
# A multi-host testbed in Linux network namespaces, for the cluster benches
# and the integration tests. Sourced, not run.
#
# Layout of one testbed (PREFIX is unique per run, "sb<pid>" by default):
#
#   PREFIX-br           namespace holding the bridge "br0" and one port per host
#   PREFIX-NAME         one namespace per host; its link is "eth0", address
#                       10.77.0.IDX/24 (NETNS_NET), attached to br0 by a veth
#
# Nothing is created in the root namespace, so deleting the namespaces removes
# every veth and the bridge with them. Every host link is shaped with tbf in
# both directions: the egress of the host's eth0 is its upload, the egress of
# its bridge port is its download.
#
# Use:
#   . bench/netns.sh
#   netns_init || { echo "skipped: $NETNS_SKIP"; exit 0; }
#   trap netns_teardown EXIT           # or call it from the caller's trap
#   netns_add_host origin 1 200mbit
#   netns_spawn origin nginx ...       # background, killed by teardown
#   netns_exec origin curl ...         # foreground
#   netns_tx_bytes origin              # bytes sent by the host so far
#   netns_teardown                     # idempotent
#
# Environment:
#   NETNS_PREFIX   name prefix (default sb$$); at most 9 characters
#   NETNS_NET      first three octets of the host addresses (default 10.77.0)
#   NETNS_LATENCY  tbf latency, i.e. how long a packet may wait in the
#                  shaper's queue before it is dropped (default 20ms)
#   NETNS_DELAY    extra one-way delay per host link via netem (default none;
#                  needs sch_netem, skipped with a warning when missing)

NETNS_PREFIX=${NETNS_PREFIX:-sb$$}
NETNS_NET=${NETNS_NET:-10.77.0}
NETNS_LATENCY=${NETNS_LATENCY:-20ms}
NETNS_DELAY=${NETNS_DELAY:-}
NETNS_BR=
NETNS_HOSTS=()
NETNS_PIDS=()
NETNS_SKIP=
NETNS_UP=0

# netns_rate_bps RATE: RATE in tc notation (200mbit, 1gbit, 500kbit, 1000000bit,
# "bps" = bytes/s) printed as bits per second.
netns_rate_bps() {
	awk -v r="$1" 'BEGIN {
		r = tolower(r)
		if (!match(r, /^[0-9]+(\.[0-9]+)?/)) exit 1
		n = substr(r, 1, RLENGTH); u = substr(r, RLENGTH + 1)
		m["bit"] = 1; m["kbit"] = 1e3; m["mbit"] = 1e6; m["gbit"] = 1e9
		m["bps"] = 8; m["kbps"] = 8e3; m["mbps"] = 8e6; m["gbps"] = 8e9
		m["kibit"] = 1024; m["mibit"] = 1048576; m["gibit"] = 1073741824
		if (!(u in m)) exit 1
		printf "%.0f\n", n * m[u] }'
}

# netns_burst RATE: tbf bucket size in bytes for RATE. At least one timer tick
# of traffic (rate / HZ, HZ = 250 here) and at least 128 KiB, so a 64 KiB GSO
# packet of the veth always fits in the bucket and is never split by tbf.
netns_burst() {
	local bps
	bps=$(netns_rate_bps "$1") || return 1
	awk -v b="$bps" 'BEGIN { x = b / 8 / 250; if (x < 131072) x = 131072; printf "%.0f\n", x }'
}

# netns_sweep_stale: delete testbeds left by runs that were killed with -9
# (namespaces named sb<pid>-* whose <pid> no longer exists), and end the
# processes still running inside them.
netns_sweep_stale() {
	local -
	set +e # runs from traps of scripts that use set -e
	local ns pid p
	for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }'); do
		[[ $ns =~ ^sb([0-9]+)- ]] || continue
		pid=${BASH_REMATCH[1]}
		[[ -e /proc/$pid ]] && continue
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
		ip netns del "$ns" 2>/dev/null
	done
	return 0
}

# netns_init: check that namespaces, veth, bridges and tbf can be made here
# and create the bridge namespace. Returns 1 with NETNS_SKIP set to a reason
# when they cannot (not root, no CAP_NET_ADMIN, a sandbox without netns...).
netns_init() {
	local tool err
	for tool in ip tc; do
		if ! command -v "$tool" >/dev/null; then
			NETNS_SKIP="$tool not installed (Debian package iproute2)"
			return 1
		fi
	done
	if ((${#NETNS_PREFIX} > 9)); then
		NETNS_SKIP="NETNS_PREFIX '$NETNS_PREFIX' longer than 9 characters"
		return 1
	fi
	netns_sweep_stale
	NETNS_BR=$NETNS_PREFIX-br
	if ! err=$(ip netns add "$NETNS_BR" 2>&1); then
		NETNS_SKIP="ip netns add not permitted: ${err//$'\n'/ }"
		NETNS_BR=
		return 1
	fi
	NETNS_UP=1
	if ! err=$({ ip -n "$NETNS_BR" link add br0 type bridge &&
		ip -n "$NETNS_BR" link set br0 up &&
		ip -n "$NETNS_BR" link set lo up; } 2>&1); then
		NETNS_SKIP="cannot create a bridge in a namespace: ${err//$'\n'/ }"
		netns_teardown
		return 1
	fi
	# The bridge forwards at once (no STP listening/learning delay).
	ip -n "$NETNS_BR" link set br0 type bridge forward_delay 0 stp_state 0 2>/dev/null || true
	return 0
}

# netns_ns NAME: the namespace of host NAME.
netns_ns() { echo "$NETNS_PREFIX-$1"; }

# netns_ip NAME: the address of host NAME (without the prefix length).
netns_ip() {
	local h
	for h in "${NETNS_HOSTS[@]}"; do
		if [[ ${h%%=*} == "$1" ]]; then
			echo "${h#*=}"
			return 0
		fi
	done
	echo "netns_ip: no host $1" >&2
	return 1
}

# netns_add_host NAME IDX [RATE]: host NAME at NETNS_NET.IDX (IDX 1..254),
# linked to the bridge, its link shaped to RATE both ways when given.
netns_add_host() {
	local name=$1 idx=$2 rate=${3:-} ns port err
	ns=$(netns_ns "$name")
	port=p$idx # bridge-side veth, named by the host's address
	if ! [[ $idx =~ ^[0-9]+$ ]] || ((idx < 1 || idx > 254)); then
		echo "netns_add_host: bad index $idx" >&2
		return 1
	fi
	if ! err=$(ip netns add "$ns" 2>&1); then
		echo "netns_add_host $name: $err" >&2
		return 1
	fi
	NETNS_HOSTS+=("$name=$NETNS_NET.$idx")
	if ! err=$({ ip -n "$NETNS_BR" link add "$port" type veth peer name eth0 netns "$ns" &&
		ip -n "$NETNS_BR" link set "$port" master br0 &&
		ip -n "$NETNS_BR" link set "$port" up &&
		ip -n "$ns" link set lo up &&
		ip -n "$ns" addr add "$NETNS_NET.$idx/24" dev eth0 &&
		ip -n "$ns" link set eth0 up; } 2>&1); then
		echo "netns_add_host $name: $err" >&2
		return 1
	fi
	if [[ -n $rate ]]; then
		netns_shape "$name" "$rate" || return 1
	fi
	return 0
}

# netns_port NAME: the bridge-side veth of host NAME.
netns_port() {
	local ip
	ip=$(netns_ip "$1") || return 1
	echo "p${ip##*.}"
}

# netns_shape NAME RATE: shape host NAME's upload and download to RATE with
# tbf (replacing any earlier shaping); with NETNS_DELAY, netem adds that
# delay under each tbf.
netns_shape() {
	local name=$1 rate=$2 ns port burst
	ns=$(netns_ns "$name")
	port=$(netns_port "$name") || return 1
	burst=$(netns_burst "$rate") || {
		echo "netns_shape: bad rate '$rate' (want e.g. 200mbit)" >&2
		return 1
	}
	# upload: egress of the host's eth0; download: egress of its bridge port.
	tc -n "$ns" qdisc replace dev eth0 root handle 1: tbf rate "$rate" \
		burst "$burst" latency "$NETNS_LATENCY" || return 1
	tc -n "$NETNS_BR" qdisc replace dev "$port" root handle 1: tbf rate "$rate" \
		burst "$burst" latency "$NETNS_LATENCY" || return 1
	if [[ -n $NETNS_DELAY ]]; then
		if ! tc -n "$ns" qdisc replace dev eth0 parent 1:1 handle 10: netem \
			delay "$NETNS_DELAY" 2>/dev/null ||
			! tc -n "$NETNS_BR" qdisc replace dev "$port" parent 1:1 handle 10: netem \
				delay "$NETNS_DELAY" 2>/dev/null; then
			echo "netns: netem not available (sch_netem); no delay added" >&2
		fi
	fi
}

# netns_unshape NAME: remove host NAME's shaping (full veth speed).
netns_unshape() {
	local port
	port=$(netns_port "$1") || return 1
	tc -n "$(netns_ns "$1")" qdisc del dev eth0 root 2>/dev/null || true
	tc -n "$NETNS_BR" qdisc del dev "$port" root 2>/dev/null || true
}

# netns_link NAME up|down: cut or restore host NAME's cable at the bridge.
# The host keeps its address and routes; its eth0 loses carrier, so every
# packet to or from it is dropped until the link is up again.
netns_link() {
	local port
	port=$(netns_port "$1") || return 1
	ip -n "$NETNS_BR" link set "$port" "$2"
}

# netns_exec NAME CMD...: run CMD inside host NAME, in the foreground.
netns_exec() {
	local ns
	ns=$(netns_ns "$1")
	shift
	ip netns exec "$ns" "$@"
}

# netns_spawn NAME CMD...: run CMD inside host NAME in the background; its pid
# is in NETNS_LAST_PID and is ended by netns_stop_all / netns_teardown.
# Redirect its output at the call site.
netns_spawn() {
	local ns
	ns=$(netns_ns "$1")
	shift
	ip netns exec "$ns" "$@" &
	NETNS_LAST_PID=$!
	NETNS_PIDS+=("$NETNS_LAST_PID")
}

# netns_stat NAME COUNTER: a counter of host NAME's eth0
# (tx_bytes, rx_bytes, tx_packets, ...), read from the bridge side so the
# host's own sysfs view does not matter: the host's tx is its port's rx.
netns_stat() {
	local port ctr=$2
	port=$(netns_port "$1") || return 1
	case $ctr in
	tx_*) ctr=rx_${ctr#tx_} ;;
	rx_*) ctr=tx_${ctr#rx_} ;;
	esac
	ip netns exec "$NETNS_BR" cat "/sys/class/net/$port/statistics/$ctr"
}

# netns_tx_bytes NAME / netns_rx_bytes NAME: bytes host NAME sent / received.
netns_tx_bytes() { netns_stat "$1" tx_bytes; }
netns_rx_bytes() { netns_stat "$1" rx_bytes; }

# netns_kill_host NAME [SIGNAL]: signal every process running in host NAME.
netns_kill_host() {
	local -
	set +e # runs from traps of scripts that use set -e
	local p
	for p in $(ip netns pids "$(netns_ns "$1")" 2>/dev/null); do
		kill "-${2:-TERM}" "$p" 2>/dev/null
	done
	return 0
}

# netns_stop_all: end every process running in any host of this testbed
# (TERM, up to 3 s of grace, then KILL) and reap the ones this shell started.
netns_stop_all() {
	local -
	set +e # runs from traps of scripts that use set -e
	local h ns p i left
	for ((i = 0; i < 30; i++)); do
		left=0
		for h in "${NETNS_HOSTS[@]}" "br="; do
			ns=$NETNS_PREFIX-${h%%=*}
			for p in $(ip netns pids "$ns" 2>/dev/null); do
				left=1
				if ((i == 0)); then kill -TERM "$p" 2>/dev/null; fi
				if ((i == 29)); then kill -KILL "$p" 2>/dev/null; fi
			done
		done
		((left)) || break
		sleep 0.1
	done
	for p in "${NETNS_PIDS[@]}"; do
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	NETNS_PIDS=()
	return 0
}

# netns_teardown: end every process in the testbed and delete its namespaces
# (and with them every veth and the bridge). Safe to call more than once and
# from a trap.
netns_teardown() {
	local -
	set +e # runs from traps of scripts that use set -e
	local h ns
	((NETNS_UP)) || return 0
	netns_stop_all
	for h in "${NETNS_HOSTS[@]}"; do
		ns=$NETNS_PREFIX-${h%%=*}
		ip netns del "$ns" 2>/dev/null
	done
	if [[ -n $NETNS_BR ]]; then
		ip netns del "$NETNS_BR" 2>/dev/null
	fi
	NETNS_HOSTS=()
	NETNS_UP=0
	return 0
}

# netns_nginx NAME ROOT DIR [WORKERS]: nginx inside host NAME serving ROOT
# on the host's address, port 80, with its config, pid and error log in DIR
# (the caller waits for it with netns_wait_tcp; its pid is NETNS_LAST_PID).
# ROOT's parents must be readable by nobody, whom the workers run as.
netns_nginx() {
	local host=$1 root=$2 d=$3
	mkdir -p "$d/tmp"
	cat >"$d/nginx.conf" <<-EOF
		worker_processes ${4:-1};
		pid $d/nginx.pid;
		error_log $d/error.log warn;
		events { worker_connections 1024; }
		http {
		    access_log off;
		    sendfile on;
		    tcp_nopush on;
		    keepalive_timeout 65;
		    default_type application/octet-stream;
		    client_body_temp_path $d/tmp/body;
		    proxy_temp_path $d/tmp/proxy;
		    fastcgi_temp_path $d/tmp/fastcgi;
		    uwsgi_temp_path $d/tmp/uwsgi;
		    scgi_temp_path $d/tmp/scgi;
		    server {
		        listen $(netns_ip "$host"):80;
		        root $root;
		    }
		}
	EOF
	netns_spawn "$host" nginx -e "$d/error.log" -p "$d" -c "$d/nginx.conf" -g 'daemon off;'
}

# netns_wait_tcp NAME HOST:PORT [SECONDS]: wait until HOST:PORT accepts TCP
# connections from inside host NAME (default 10 s).
netns_wait_tcp() {
	local i limit=$((${3:-10} * 10))
	for ((i = 0; i < limit; i++)); do
		if netns_exec "$1" bash -c "exec 3<>/dev/tcp/${2%:*}/${2##*:}" 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	echo "netns_wait_tcp: nothing listens on $2 (seen from $1)" >&2
	return 1
}
