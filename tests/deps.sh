#!/usr/bin/env bash
# Installs the Debian packages Syncbit builds and tests with, when missing.
# Idempotent and quiet when everything is present.
set -euo pipefail
pkgs=(build-essential pkg-config clang libclang-rt-14-dev
      libuv1-dev liblmdb-dev lmdb-utils libprotobuf-c-dev protobuf-c-compiler
      libsodium-dev libcurl4-openssl-dev libxxhash-dev libyaml-dev libjansson-dev
      libhttp-parser-dev libssl-dev libcmocka-dev
      nginx-light rsync curl python3 iproute2 util-linux e2fsprogs
      awscli
      docker-registry skopeo openssl)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# S3 tests: s3rver comes from npm; Debian's nodejs and npm only when no
# node toolchain is there already (another one's npm would conflict).
command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps: installing ${missing[*]}" >&2
	if [ "$(id -u)" -ne 0 ]; then
		SUDO=sudo
	else
		SUDO=
	fi
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
"$(dirname "$0")/fixtures/s3rver.sh" install
