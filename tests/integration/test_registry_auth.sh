#!/usr/bin/env bash
# Registry credentials from the auth files skopeo reads: Debian's
# docker-registry with htpasswd (Basic) auth on loopback, fed by skopeo;
# `syncbit pull oci://` and `syncbit sync oci:// oci://` find the
# credentials in $REGISTRY_AUTH_FILE, ~/.docker/config.json (a namespace
# key), or --registry-user-file, fail with one clear line without them or
# with a malformed file, and never print the password. --registry-user
# still works with a deprecation warning, and ps no longer shows it.
. "$(dirname "$0")/lib.sh"

for tool in docker-registry skopeo; do
	command -v "$tool" >/dev/null || { bad "$tool is installed (tests/deps.sh)"; finish; exit 1; }
done
unset REGISTRY_AUTH DEST_REGISTRY_AUTH REGISTRY_AUTH_FILE XDG_RUNTIME_DIR XDG_CONFIG_HOME DOCKER_CONFIG
export HOME=$T/home
mkdir -p "$HOME"
export ASAN_OPTIONS="log_path=$T/san${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="log_path=$T/san${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
SKOPEO=(skopeo --insecure-policy)
PASSWORD=s3cret-Pa55

# htpasswd with a bcrypt hash (libcrypt's $2b$, which the registry takes).
python3 -W ignore -c "import crypt,sys; print('alice:' + crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))" \
	"$PASSWORD" >"$T/htpasswd"
PORT=$(free_port)
cat >"$T/reg.yml" <<CONF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $T/store
http:
  addr: 127.0.0.1:$PORT
auth:
  htpasswd:
    realm: syncbit-test
    path: $T/htpasswd
CONF
docker-registry serve "$T/reg.yml" >"$T/reg.log" 2>&1 &
PIDS+=($!)
R=127.0.0.1:$PORT
for _ in $(seq 50); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' "http://$R/v2/")" = 401 ] && break
	sleep 0.1
done
check "the registry asks for credentials" test "$(curl -s -o /dev/null -w '%{http_code}' "http://$R/v2/")" = 401

python3 "$FIXTURES/oci_image.py" "$T/layout" v1 --size 300000 --seed auth >/dev/null
"${SKOPEO[@]}" copy -q --dest-tls-verify=false --dest-creds "alice:$PASSWORD" \
	"oci:$T/layout:v1" "docker://$R/team/app:v1" >"$T/skopeo.log" 2>&1
check "skopeo pushed with the credentials" grep -q v1 \
	<(curl -s -u "alice:$PASSWORD" "http://$R/v2/team/app/tags/list")

AUTH=$(printf 'alice:%s' "$PASSWORD" | base64)
printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$R" "$AUTH" >"$T/auth.json"
check "skopeo reads the same auth file" "${SKOPEO[@]}" inspect --tls-verify=false \
	--authfile "$T/auth.json" "docker://$R/team/app:v1"

run() { "$SYNCBIT" "$@" --data "$T/data" >"$T/out" 2>"$T/err"; }
no_secret() { ! grep -q -e "$PASSWORD" -e "$AUTH" "$T/out" "$T/err"; }

# Without credentials: one clear line.
expect_fail "pull without credentials fails saying how to give them" 1 \
	"asks for credentials: give --registry-user-file FILE, REGISTRY_AUTH=user:password or an auth file" \
	"$SYNCBIT" pull "oci://$R/team/app:v1" --to "$T/none" --data "$T/data"

# $REGISTRY_AUTH_FILE.
check "pull with REGISTRY_AUTH_FILE" env REGISTRY_AUTH_FILE="$T/auth.json" \
	"$SYNCBIT" pull "oci://$R/team/app:v1" --to "$T/p1" --data "$T/data" --json
check "skopeo inspect oci:DIR:v1 of that pull" "${SKOPEO[@]}" inspect "oci:$T/p1:v1"
check "--authfile as skopeo's" run pull "oci://$R/team/app:v1" --to "$T/p1b" \
	--authfile "$T/auth.json" --json
check "no credential in the output (--authfile)" no_secret
REGISTRY_AUTH_FILE="$T/auth.json" "$SYNCBIT" pull "oci://$R/team/app:v1" --to "$T/p1c" \
	--data "$T/data" -v -v --log-level debug >"$T/out" 2>"$T/err"
check "debug logs name the file, never the credentials" bash -c \
	"grep -q 'credentials from $T/auth.json' '$T/err' && ! grep -q -e '$PASSWORD' -e '$AUTH' '$T/out' '$T/err'"

# ~/.docker/config.json with a namespace key, and a wrong entry for another
# namespace that must not be taken.
mkdir -p "$HOME/.docker"
WRONG=$(printf 'alice:wrong' | base64)
printf '{"auths":{"%s/other":{"auth":"%s"},"%s/team":{"auth":"%s"}}}\n' "$R" "$WRONG" "$R" "$AUTH" \
	>"$HOME/.docker/config.json"
check "pull with ~/.docker/config.json (the namespace key team/)" run pull \
	"oci://$R/team/app:v1" --to "$T/p2" --json
# XDG_RUNTIME_DIR's file comes first: a wrong entry there wins and fails.
mkdir -p "$T/run/containers"
printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$R" "$WRONG" >"$T/run/containers/auth.json"
expect_fail "\${XDG_RUNTIME_DIR}/containers/auth.json is read before ~/.docker/config.json" 1 "401" \
	env XDG_RUNTIME_DIR="$T/run" "$SYNCBIT" pull "oci://$R/team/app:v1" --to "$T/p3" --data "$T/data"
# ~/.config/containers/auth.json too comes before ~/.docker/config.json.
mkdir -p "$HOME/.config/containers"
cp "$T/run/containers/auth.json" "$HOME/.config/containers/auth.json"
expect_fail "~/.config/containers/auth.json is read before ~/.docker/config.json" 1 "401" \
	"$SYNCBIT" pull "oci://$R/team/app:v1" --to "$T/p3" --data "$T/data"
rm -rf "$HOME/.config" "$HOME/.docker"

echo '{"auths": [' >"$T/bad.json"
expect_fail "a malformed auth file is one line naming it" 1 "registry credentials: .*/bad.json: malformed JSON" \
	env REGISTRY_AUTH_FILE="$T/bad.json" "$SYNCBIT" pull "oci://$R/team/app:v1" --to "$T/p4" --data "$T/data"
expect_fail "a missing --authfile is one line naming it" 1 "nope.json: No such file" \
	"$SYNCBIT" pull "oci://$R/team/app:v1" --to "$T/p4" --data "$T/data" --authfile "$T/nope.json"

# --registry-user-file.
printf 'alice:%s\n' "$PASSWORD" >"$T/user"
check "pull with --registry-user-file" run pull "oci://$R/team/app:v1" --to "$T/p5" \
	--registry-user-file "$T/user" --json
echo alice >"$T/user-only"
expect_fail "--registry-user-file without user:password is a usage error" 2 "expected user:password" \
	"$SYNCBIT" pull "oci://$R/team/app:v1" --to "$T/p6" --data "$T/data" --registry-user-file "$T/user-only"

# --registry-user: deprecated, and wiped from the command line ps shows.
check "pull with --registry-user warns it is deprecated" bash -c \
	"'$SYNCBIT' pull 'oci://$R/team/app:v1' --to '$T/p7' --data '$T/data' --registry-user 'alice:$PASSWORD' 2>&1 >/dev/null | grep -q 'deprecated'"
"$SYNCBIT" sync "oci://$R/team/app:v1" "$T/p8" --data "$T/data2" --registry-user "alice:$PASSWORD" \
	--schedule '0 0 1 1 *' >"$T/sync.out" 2>&1 &
SPID=$!
PIDS+=($SPID)
for _ in $(seq 50); do grep -q 'syncbit .* sync:' "$T/sync.out" && break; sleep 0.1; done
check "ps no longer shows the password of a running sync" bash -c \
	"tr '\\0' ' ' </proc/$SPID/cmdline | grep -q -- '--registry-user x' && ! tr '\\0' ' ' </proc/$SPID/cmdline | grep -q '$PASSWORD'"
kill -TERM "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null

# Registry to registry: both ends behind the same htpasswd.
check "sync oci:// oci:// with REGISTRY_AUTH_FILE" env REGISTRY_AUTH_FILE="$T/auth.json" \
	"$SYNCBIT" sync "oci://$R/team/app:v1" "oci://$R/mirror/app" --once --json --data "$T/data"
check "the copy is there (skopeo with the same auth file)" "${SKOPEO[@]}" inspect --tls-verify=false \
	--authfile "$T/auth.json" "docker://$R/mirror/app:v1"
expect_fail "sync oci:// oci:// without credentials fails clearly" 1 "asks for credentials" \
	"$SYNCBIT" sync "oci://$R/team/app:v1" "oci://$R/mirror2/app" --once --data "$T/data3" --log-level warn
check "no sanitizer report" bash -c "! ls '$T'/san.* 2>/dev/null | grep -q ."

finish
