# shellcheck shell=bash
# Shared helpers for the benchmarks in bench/. Sourced, not run.
#
# Every bench creates one temp dir (BENCH_TMP) and writes nothing outside it;
# an EXIT trap stops every child process it started and removes the dir.
#
# Environment:
#   SYNCBIT   path to the syncbit binary (default: bin/syncbit of this repo)
#   REPEAT    timed runs per tool (default 3); the median is reported
#   WARMUP    untimed runs per tool before those (default 1): the first
#             writes into fresh memory of a VM cost more than later ones
#   TMPDIR    where the temp dir is created (default /tmp)

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SYNCBIT=$(realpath -m "${SYNCBIT:-$BENCH_ROOT/bin/syncbit}")
REPEAT=${REPEAT:-3}
WARMUP=${WARMUP:-1}
BENCH_PIDS=()
BENCH_TMP=

bench_cleanup() {
	local rc=$?
	local pid
	for pid in "${BENCH_PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${BENCH_PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	release_ports
	if [[ -n "$BENCH_TMP" && -d "$BENCH_TMP" ]]; then
		rm -rf -- "$BENCH_TMP"
	fi
	return "$rc"
}

# bench_init NAME: make the temp dir and install the cleanup trap.
bench_init() {
	if [[ ! -x "$SYNCBIT" ]]; then
		echo "$1: no syncbit binary at $SYNCBIT (run make, or set SYNCBIT)" >&2
		exit 1
	fi
	if ! [[ "$REPEAT" =~ ^[1-9][0-9]*$ && "$WARMUP" =~ ^[0-9]+$ ]]; then
		echo "$1: REPEAT must be a positive integer, WARMUP a number" >&2
		exit 2
	fi
	BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/syncbit-bench-$1.XXXXXX")
	trap bench_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

# bench_need_space MB: fail early when the temp dir's filesystem is short.
bench_need_space() {
	local avail_kb
	avail_kb=$(df -Pk "$BENCH_TMP" | awk 'NR == 2 { print $4 }')
	if ((avail_kb / 1024 < $1)); then
		echo "need ${1} MiB free in $BENCH_TMP, have $((avail_kb / 1024)) MiB" >&2
		exit 1
	fi
}

# now: monotonic-enough wall clock in nanoseconds.
now() {
	local t=${EPOCHREALTIME/[.,]/} # bash itself: no date process per call
	echo "${t}000"
}

# timed OUTVAR CMD...: run CMD (stdout to BENCH_TMP/last.out, stderr kept),
# store its wall time in seconds in OUTVAR. Pending writeback from earlier
# runs is flushed first so one run does not pay for the previous one's.
timed() {
	local -n _out=$1
	shift
	sync
	local _timed_start _timed_end
	_timed_start=$(now)
	"$@" >"$BENCH_TMP/last.out"
	_timed_end=$(now)
	_out=$(awk -v a="$_timed_start" -v b="$_timed_end" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
}

# run_label I: "run I", or "warm-up" for I < 1 (not counted).
run_label() {
	if (($1 < 1)); then echo "warm-up"; else echo "run $1"; fi
}

# median V...: the median of the numbers given.
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
		END { if (NR % 2) printf "%.3f", v[(NR + 1) / 2];
		      else printf "%.3f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# ratio A B [DIGITS]: A / B.
ratio() {
	awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN {
		if (b <= 0) { print "inf"; exit }
		printf "%.*f", d, a / b }'
}

# le A B: exit 0 when A <= B (floating point).
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }

# json_field FILE KEY: a numeric or string field of the last line of FILE
# (syncbit --json output), without needing jq.
json_field() {
	tail -n 1 "$1" | sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p"
}

# random_file PATH MB SEED: MB MiB of deterministic pseudo-random bytes
# (AES-CTR keystream keyed by SEED), incompressible and never repeating.
random_file() {
	openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:$3" </dev/zero 2>/dev/null |
		head -c "$(($2 * 1024 * 1024))" >"$1" || true
	local got
	got=$(stat -c %s "$1")
	if ((got != $2 * 1024 * 1024)); then
		echo "random_file $1: wrote $got bytes, wanted $(($2 * 1024 * 1024))" >&2
		exit 1
	fi
}

# free_port, release_ports
. "$BENCH_ROOT/tests/free-port.sh"

# nginx_start DOCROOT: serve DOCROOT on 127.0.0.1 from a child nginx with a
# generated config under BENCH_TMP/nginx; sets NGINX_URL (no trailing slash).
nginx_start() {
	local root=$1 dir=$BENCH_TMP/nginx port user_line=
	mkdir -p "$dir/tmp"
	if [[ $(id -u) == 0 ]]; then
		# Workers would otherwise drop to nobody, which cannot enter the
		# mode-0700 temp dir.
		user_line="user $(id -un) $(id -gn);"
	fi
	for _ in 1 2 3 4 5; do
		port=$(free_port)
		cat >"$dir/nginx.conf" <<-EOF
			$user_line
			worker_processes 1;
			pid $dir/nginx.pid;
			error_log $dir/error.log warn;
			events { worker_connections 1024; }
			http {
			    access_log off;
			    sendfile on;
			    tcp_nopush on;
			    keepalive_timeout 65;
			    default_type application/octet-stream;
			    client_body_temp_path $dir/tmp/body;
			    proxy_temp_path $dir/tmp/proxy;
			    fastcgi_temp_path $dir/tmp/fastcgi;
			    uwsgi_temp_path $dir/tmp/uwsgi;
			    scgi_temp_path $dir/tmp/scgi;
			    server {
			        listen 127.0.0.1:$port;
			        root $root;
			    }
			}
		EOF
		nginx -e "$dir/error.log" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' &
		local pid=$!
		BENCH_PIDS+=("$pid")
		local i
		for ((i = 0; i < 50; i++)); do
			if curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" 2>/dev/null |
				grep -qv '^000$'; then
				# shellcheck disable=SC2034 # used by the benches
				NGINX_URL="http://127.0.0.1:$port"
				return 0
			fi
			if ! kill -0 "$pid" 2>/dev/null; then
				break # lost the port race or bad config; retry
			fi
			sleep 0.1
		done
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	echo "nginx did not start; see its log:" >&2
	cat "$dir/error.log" >&2 || true
	exit 1
}

# machine: one line describing where the numbers come from.
machine() {
	local dev rot model
	dev=$(df -P "$BENCH_TMP" | awk 'NR == 2 { print $1 }')
	model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
	rot=$(cat "/sys/block/$(basename "$dev")/queue/rotational" 2>/dev/null || echo '?')
	echo "machine: nproc $(nproc), $model, kernel $(uname -r)," \
		"temp fs $(df -PT "$BENCH_TMP" | awk 'NR == 2 { print $2 }') on $dev (rotational=$rot)," \
		"load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
}
