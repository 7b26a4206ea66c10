# Shared by the integration tests: a temp dir removed on exit, child
# processes killed on exit, and check/expect/skip helpers that count
# results. Each test script sources this, runs its checks and calls finish.
set -u
SYNCBIT=${SYNCBIT_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/bin/syncbit}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FIXTURES=$(cd "$HERE/../fixtures" && pwd)
T=$(mktemp -d /tmp/syncbit-it.XXXXXX)
PASS=0
FAIL=0
SKIP=0
PIDS=()
CLEANUPS=()

cleanup() {
	local p
	for c in "${CLEANUPS[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
	# TERM first: an nginx master killed with -9 would orphan its workers.
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do
		for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null
	done
	release_ports
	if [ -n "${KEEP_TMP:-}" ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ok() { PASS=$((PASS + 1)); echo "  ok   $1"; }
bad() { FAIL=$((FAIL + 1)); echo "  FAIL $1"; [ -n "${2:-}" ] && echo "       $2"; return 1; }
# skip "description" "reason": checks that cannot run on this machine. Never
# silent: the runner counts it and fails the run unless
# SYNCBIT_EXPECTED_SKIPS lists "test_name: description" (tests/expected-skips.sh).
skip() { SKIP=$((SKIP + 1)); echo "  SKIP $1"; echo "       because $2"; }

# check "description" command...: passes when the command exits 0; returns
# non-zero on failure so a caller can print what explains it.
check() {
	local d=$1; shift
	if "$@" >"$T/.out" 2>&1; then ok "$d"; else bad "$d" "$(tail -5 "$T/.out" | tr '\n' ' ')"; fi
}

# expect_fail "description" EXIT_CODE REGEX command...: the command must exit
# with EXIT_CODE and print exactly one stderr line matching REGEX.
expect_fail() {
	local d=$1 code=$2 re=$3; shift 3
	"$@" >"$T/.out" 2>"$T/.err"; local rc=$?
	local lines; lines=$(grep -c . "$T/.err")
	if [ "$rc" -eq "$code" ] && [ "$lines" -ge 1 ] && grep -Eq "$re" "$T/.err" && [ "$(grep -c '^syncbit: ' "$T/.err")" -eq 1 ]; then
		ok "$d"
	else
		bad "$d" "exit $rc (want $code), stderr: $(head -3 "$T/.err" | tr '\n' ' ')"
	fi
}

# json_field FILE KEY: a field of the last JSON line of FILE.
json_field() {
	tail -1 "$1" | python3 -c "import json,sys; v=json.load(sys.stdin)['$2']; print(v if not isinstance(v,bool) else str(v).lower())"
}

# flip_byte FILE OFFSET: the byte at OFFSET of FILE inverted, in place (a
# fixed byte written there would leave the file as it was once in 256 runs).
flip_byte() {
	python3 - "$1" "$2" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2])); f.write(bytes([b[0] ^ 0xff]))
PY
}

# free_port, release_ports
. "$HERE/../free-port.sh"

# Start nginx serving $1 on a free loopback port; sets NGINX_PORT.
# NGINX_RATE (e.g. 4m) limits each connection to that many bytes a second.
start_nginx() {
	local root=$1 d="$T/nginx"
	mkdir -p "$d/logs" "$d/tmp"
	chmod 755 "$T" # nginx workers run as nobody
	NGINX_PORT=$(free_port)
	cat >"$d/nginx.conf" <<CONF
worker_processes 1;
pid $d/nginx.pid;
error_log $d/logs/error.log;
events { worker_connections 256; }
http {
	access_log $d/logs/access.log;
	client_body_temp_path $d/tmp; proxy_temp_path $d/tmp; fastcgi_temp_path $d/tmp;
	uwsgi_temp_path $d/tmp; scgi_temp_path $d/tmp;
	sendfile on; tcp_nopush on;
	server { listen 127.0.0.1:$NGINX_PORT; root $root; ${NGINX_RATE:+limit_rate $NGINX_RATE;} }
}
CONF
	nginx -c "$d/nginx.conf" -p "$d" -g 'daemon off;' &
	PIDS+=($!)
	for _ in $(seq 50); do
		curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT/" && return 0
		sleep 0.1
	done
	echo "nginx did not start" >&2; cat "$d/logs/error.log" >&2; return 1
}

finish() {
	echo "$(basename "$0" .sh): $PASS passed, $FAIL failed, $SKIP skipped"
	[ "$FAIL" -eq 0 ]
}
