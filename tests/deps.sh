#!/usr/bin/env bash
# Installs the Debian packages Syncbit needs, when missing. Idempotent and
# quiet when everything is present.
#   deps.sh build   what `make` and `make demo` need: compiler, libraries,
#                   protoc-c, python3 (the demo's live view)
#   deps.sh image   the build set plus skopeo, for `make image`
#   deps.sh lint    the build set plus clang-format, cppcheck and clang-tidy,
#                   for `make lint`
#   deps.sh test    the build set plus the servers and clients the test
#                   suites run (nginx, registry, skopeo, containerd and runc,
#                   awscli, s3rver from npm, kubectl, python3-yaml, chromium
#                   for the scheduler page's test, clang for the sanitizer
#                   runtime, prometheus for promtool, faketime for the
#                   chaos suite's clock jumps, etcd-server for the
#                   schedulers' high availability, the lint tools for
#                   test_lint …); the default
set -euo pipefail
what=${1:-test}
build=(build-essential pkg-config
       libuv1-dev liblmdb-dev libprotobuf-c-dev protobuf-c-compiler
       libsodium-dev libcurl4-openssl-dev libxxhash-dev libyaml-dev libjansson-dev
       libhttp-parser-dev libssl-dev libcmocka-dev python3 ca-certificates)
test=(clang libclang-rt-14-dev lmdb-utils
      nginx-light rsync curl iproute2 util-linux e2fsprogs
      awscli docker-registry skopeo openssl containerd runc python3-yaml chromium
      prometheus faketime etcd-server clang-format clang-tidy cppcheck)
lint=(clang-format clang-tidy cppcheck git)
case "$what" in
build) pkgs=("${build[@]}") ;;
image) pkgs=("${build[@]}" skopeo) ;;
lint) pkgs=("${build[@]}" "${lint[@]}") ;;
test) pkgs=("${build[@]}" "${test[@]}") ;;
*) echo "usage: deps.sh [build|image|lint|test]" >&2; exit 2 ;;
esac
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# S3 tests: s3rver comes from npm; Debian's nodejs and npm only when no
# node toolchain is there already (another one's npm would conflict).
# test_kube_api cross-checks the Kubernetes fixture with kubectl: Debian's
# kubernetes-client, unless a kubectl is there already (another package's
# /usr/bin/kubectl would conflict with it).
if [ "$what" = test ]; then
	command -v npm >/dev/null || missing+=(nodejs npm)
	command -v kubectl >/dev/null || missing+=(kubernetes-client)
fi
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
if [ "$what" = test ]; then
	"$(dirname "$0")/fixtures/s3rver.sh" install
fi
