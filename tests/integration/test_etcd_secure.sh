#!/usr/bin/env bash
# The scheduler on an etcd that a production cluster would run: Debian's real
# etcd 3.4, one member on loopback, its client port TLS only.
#   A: server certificate from a test CA, authentication enabled; the
#      scheduler's user may read and write under /syncbit/ only (a role
#      granted through etcd's own JSON API, as etcdctl would).
#   B: TLS with client certificates required (--client-cert-auth).
# With the right CA, user, password or client certificate the scheduler
# leads, keeps datasets in etcd and serves them; a wrong password, a CA that
# did not sign etcd's certificate, a user whose role does not cover
# /syncbit/, or no client certificate where one is required: the scheduler
# stops with one line naming the cause, and nothing is written to etcd.
. "$(dirname "$0")/lib.sh"

for tool in etcd openssl; do
	command -v "$tool" >/dev/null || { bad "$tool is installed (tests/deps.sh)"; finish; exit 1; }
done

# ---- a CA, etcd's server certificate, a client certificate, a foreign CA ----
C=$T/certs
mkdir -p "$C"
certs() {
	local n
	for n in ca other-ca; do
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
			-subj "/CN=syncbit test $n" -keyout "$C/$n.key" -out "$C/$n.pem" || return 1
	done
	printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' >"$C/ext.cnf"
	for n in server client; do
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$n" \
			-keyout "$C/$n.key" -out "$C/$n.csr" &&
			openssl x509 -req -in "$C/$n.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" \
				-CAcreateserial -days 2 -extfile "$C/ext.cnf" -out "$C/$n.pem" || return 1
	done
} >"$C/openssl.log" 2>&1
check "openssl makes a CA, a server and a client certificate" certs || { finish; exit 1; }

ED=$(mktemp -d /dev/shm/syncbit-etcd.XXXXXX 2>/dev/null) || ED=$T/etcd
[ "$ED" != "$T/etcd" ] && CLEANUPS+=("rm -rf '$ED'")
# start_etcd NAME CLIENT_PORT [FLAG...]: one member, https on CLIENT_PORT.
start_etcd() {
	local name=$1 port=$2 peer
	shift 2
	peer=$(free_port)
	etcd --name "$name" --data-dir "$ED/$name" \
		--listen-client-urls "https://127.0.0.1:$port" --advertise-client-urls "https://127.0.0.1:$port" \
		--listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
		--initial-cluster "$name=http://127.0.0.1:$peer" --initial-cluster-state new \
		--cert-file "$C/server.pem" --key-file "$C/server.key" "$@" >>"$T/$name.log" 2>&1 &
	PIDS+=($!)
}
# api PORT PATH JSON [CURL_ARG...]: POST to etcd's JSON gateway as the CA's client.
api() {
	local port=$1 path=$2 body=$3
	shift 3
	curl -sS --cacert "$C/ca.pem" "$@" -X POST -d "$body" "https://127.0.0.1:$port$path"
}
healthy() { # healthy PORT [CURL_ARG...]
	local port=$1
	shift
	for _ in $(seq 150); do
		curl -sf --cacert "$C/ca.pem" "$@" "https://127.0.0.1:$port/health" | grep -q '"health":"true"' && return 0
		sleep 0.2
	done
	return 1
}
b64() { printf '%s' "$1" | base64 -w0; }
wait_exit() { # wait_exit PID SECONDS: PID has exited within SECONDS
	for _ in $(seq $(($2 * 10))); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
	return 1
}

# ---- A: TLS and users ----
PA=$(free_port)
start_etcd a "$PA"
check "etcd A answers over TLS" healthy "$PA"
setup_auth() {
	local out
	out=$(
		api "$PA" /v3/auth/user/add '{"name":"root","password":"root-pw"}' &&
			api "$PA" /v3/auth/role/add '{"name":"root"}' &&
			api "$PA" /v3/auth/user/grant '{"user":"root","role":"root"}' &&
			api "$PA" /v3/auth/role/add '{"name":"syncbit"}' &&
			api "$PA" /v3/auth/role/grant "{\"name\":\"syncbit\",\"perm\":{\"permType\":\"READWRITE\",\"key\":\"$(b64 /syncbit/)\",\"range_end\":\"$(b64 /syncbit0)\"}}" &&
			api "$PA" /v3/auth/user/add '{"name":"syncbit","password":"s3cret pw"}' &&
			api "$PA" /v3/auth/user/grant '{"user":"syncbit","role":"syncbit"}' &&
			api "$PA" /v3/auth/role/add '{"name":"other"}' &&
			api "$PA" /v3/auth/role/grant "{\"name\":\"other\",\"perm\":{\"permType\":\"READWRITE\",\"key\":\"$(b64 /other/)\",\"range_end\":\"$(b64 /other0)\"}}" &&
			api "$PA" /v3/auth/user/add '{"name":"other","password":"other-pw"}' &&
			api "$PA" /v3/auth/user/grant '{"user":"other","role":"other"}' &&
			api "$PA" /v3/auth/enable '{}'
	) || return 1
	! grep -q '"error"' <<<"$out"
}
check "users, roles and authentication set up through etcd's JSON API" setup_auth
root_token() {
	api "$PA" /v3/auth/authenticate '{"name":"root","password":"root-pw"}' |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])'
}
# keys_under PREFIX: how many keys etcd A holds under PREFIX (read as root).
keys_under() {
	api "$PA" /v3/kv/range "{\"key\":\"$(b64 "$1")\",\"range_end\":\"$(b64 "${1%/}0")\",\"count_only\":true}" \
		-H "Authorization: $(root_token)" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("count", 0))'
}
check "etcd A refuses a read without a token" bash -c \
	"api() { curl -sS --cacert '$C/ca.pem' -X POST -d \"\$2\" \"https://127.0.0.1:$PA\$1\"; }
	 api /v3/kv/range '{\"key\":\"$(b64 /syncbit/)\"}' | grep -q 'user name is empty'"

printf 's3cret pw\n' >"$T/pw"
printf 'wrong\n' >"$T/wrong-pw"
printf 'other-pw\n' >"$T/other-pw"
SA=127.0.0.1:$(free_port) SAH=127.0.0.1:$(free_port)
sched_a() { # sched_a DIR FLAG...: exec a scheduler on etcd A (in a subshell or bash -c)
	local d=$1
	shift
	mkdir -p "$d"
	exec "$SYNCBIT" scheduler --listen "$SA" --http "$SAH" --data "$d" \
		--etcd "https://127.0.0.1:$PA" --etcd-lease 3 "$@"
}
expect_fail "a wrong password: one line, the scheduler does not start" 1 "etcd authentication as syncbit" \
	timeout 30 bash -c "$(declare -f sched_a); SYNCBIT='$SYNCBIT' SA=$SA SAH=$SAH PA=$PA
	 sched_a '$T/bad1' --etcd-cacert '$C/ca.pem' --etcd-user syncbit --etcd-password-file '$T/wrong-pw'"
expect_fail "a CA that did not sign etcd's certificate: one line" 1 "etcd" \
	timeout 30 bash -c "$(declare -f sched_a); SYNCBIT='$SYNCBIT' SA=$SA SAH=$SAH PA=$PA
	 sched_a '$T/bad2' --etcd-cacert '$C/other-ca.pem' --etcd-user syncbit --etcd-password-file '$T/pw'"
cp "$T/.err" "$T/ca.err"
check "  it says the certificate could not be verified" grep -Eqi "certificate|SSL" "$T/ca.err"
expect_fail "a user whose role does not cover /syncbit/: one line" 1 "etcd" \
	timeout 30 bash -c "$(declare -f sched_a); SYNCBIT='$SYNCBIT' SA=$SA SAH=$SAH PA=$PA
	 sched_a '$T/bad3' --etcd-cacert '$C/ca.pem' --etcd-user other --etcd-password-file '$T/other-pw'"
check "  it says permission denied" grep -qi "permission denied" "$T/.err"
check "nothing was written to etcd by the refused schedulers" test "$(keys_under /syncbit/)" = 0

(sched_a "$T/sa" --etcd-cacert "$C/ca.pem" --etcd-user syncbit --etcd-password-file "$T/pw") \
	>"$T/sa.log" 2>&1 &
PIDS+=($!)
SA_PID=$!
leads() { # leads HTTP: the scheduler behind HTTP says it leads
	for _ in $(seq 150); do
		curl -sf "http://$1/api/v1/status" | python3 -c 'import json,sys; sys.exit(json.load(sys.stdin)["role"] != "leader")' 2>/dev/null && return 0
		sleep 0.2
	done
	return 1
}
check "with the CA, user and password the scheduler leads" leads "$SAH"
mkdir -p "$T/src"
head -c 100000 /dev/urandom >"$T/src/a.bin"
check "dataset add is kept" "$SYNCBIT" dataset add m "file://$T/src" --scheduler "$SA" \
	--token-file "$T/sa/join-token"
check "  in etcd, under /syncbit/" test "$(keys_under /syncbit/)" -gt 0
check "  and nothing outside it" test "$(keys_under /other/)" = 0
check "the scheduler is the process started (its command line)" \
	grep -q "scheduler" "/proc/$SA_PID/cmdline"
check "the password is not on its command line or in its log" \
	bash -c "! grep -q 's3cret' /proc/$SA_PID/cmdline '$T/sa.log'"
kill -TERM "$SA_PID"
check "the scheduler on etcd A stops on SIGTERM" wait_exit "$SA_PID" 15

# ---- B: client certificates required ----
PB=$(free_port)
start_etcd b "$PB" --client-cert-auth --trusted-ca-file "$C/ca.pem"
check "etcd B answers a client with a certificate" healthy "$PB" --cert "$C/client.pem" --key "$C/client.key"
SB=127.0.0.1:$(free_port) SBH=127.0.0.1:$(free_port)
sched_b() {
	local d=$1
	shift
	mkdir -p "$d"
	exec "$SYNCBIT" scheduler --listen "$SB" --http "$SBH" --data "$d" \
		--etcd "https://127.0.0.1:$PB" --etcd-lease 3 --etcd-cacert "$C/ca.pem" "$@"
}
expect_fail "no client certificate where etcd requires one: one line" 1 "etcd" \
	timeout 30 bash -c "$(declare -f sched_b); SYNCBIT='$SYNCBIT' SB=$SB SBH=$SBH PB=$PB C='$C'
	 sched_b '$T/bad4'"
expect_fail "--etcd-cert without --etcd-key: a usage error" 2 "etcd-cert and --etcd-key go together" \
	"$SYNCBIT" scheduler --listen "$SB" --data "$T/bad5" --etcd "https://127.0.0.1:$PB" \
	--etcd-cacert "$C/ca.pem" --etcd-cert "$C/client.pem"
(sched_b "$T/sb" --etcd-cert "$C/client.pem" --etcd-key "$C/client.key") >"$T/sb.log" 2>&1 &
PIDS+=($!)
SB_PID=$!
check "with a client certificate the scheduler leads" leads "$SBH"
check "dataset add is kept" "$SYNCBIT" dataset add m "file://$T/src" --scheduler "$SB" \
	--token-file "$T/sb/join-token"
kill -TERM "$SB_PID"
check "the scheduler on etcd B stops on SIGTERM" wait_exit "$SB_PID" 15
expect_fail "--etcd-user without a password file: a usage error" 2 "etcd-user needs --etcd-password-file" \
	"$SYNCBIT" scheduler --listen "$SB" --data "$T/bad6" --etcd "https://127.0.0.1:$PA" --etcd-user syncbit
finish
