#!/usr/bin/env bash
# Installs the Debian packages the benchmarks need on top of tests/deps.sh
# (build and test packages), when missing. Idempotent and quiet when
# everything is present. `make bench` runs it.
#   iperf3       peer-pair's baseline (single-stream loopback throughput)
#   aria2        cluster: BitTorrent seeder and leechers (aria2c)
#   opentracker  cluster: the BitTorrent tracker
#   mktorrent    cluster: makes the .torrent
#   openssl      random test data (AES-CTR keystream)
# image-pull's containerd, docker-registry and skopeo are in the test set of
# tests/deps.sh, which this runs first.
set -euo pipefail
"$(dirname "$0")/../tests/deps.sh"
pkgs=(iperf3 aria2 opentracker mktorrent openssl)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "bench deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
	SUDO=sudo
else
	SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The packaged services (iperf3, opentracker) stay unused: the benches start
# their own instances inside their temp dirs.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
