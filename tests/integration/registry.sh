# shellcheck shell=bash
# Debian's docker-registry for the image tests, sourced after lib.sh.
#
# start_registry NAME STORE [YAML]: a registry on a free loopback port with
# its storage in STORE (deletes allowed), YAML (e.g. an auth: block)
# appended to its config; its log, access lines included, is $T/NAME.log.
# Sets REG_PORT and REG_PID; returns once /v2/ answers (any status).
start_registry() {
	local name=$1 store=$2 extra=${3:-} cfg="$T/$1.yml"
	REG_PORT=$(free_port)
	cat >"$cfg" <<CONF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $store
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$REG_PORT
$extra
CONF
	docker-registry serve "$cfg" >"$T/$name.log" 2>&1 &
	REG_PID=$!
	PIDS+=("$REG_PID")
	for _ in $(seq 50); do
		curl -s -o /dev/null "http://127.0.0.1:$REG_PORT/v2/" && return 0
		sleep 0.1
	done
	echo "registry $name did not start" >&2
	cat "$T/$name.log" >&2
	return 1
}

# The test's OCI layout is $L (tests/fixtures/oci_image.py builds images in it).
SKOPEO=(skopeo --insecure-policy)
image() { python3 "$FIXTURES/oci_image.py" "$L" "$@"; }
push() { "${SKOPEO[@]}" copy -q --dest-tls-verify=false "$@" >>"$T/skopeo.log" 2>&1; }
# blobs TAG [ARCH] / layers TAG [ARCH]: the hex of TAG's config and layers / of
# its layers (ARCH: of that architecture's manifest when TAG is an index).
blobs() { python3 "$FIXTURES/oci_layout.py" blobs "$L" "$@"; }
layers() { python3 "$FIXTURES/oci_layout.py" layers "$L" "$@"; }
