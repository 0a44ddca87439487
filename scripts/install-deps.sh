#!/usr/bin/env bash
# Installs every Debian 12 package stanzad's build, tests, benchmarks and demo
# need, and fetches Debian's source of wolfSSL, which stanzad builds for itself
# (scripts/wolfssl.sh). Idempotent: when everything is present it only checks and returns.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  clang-14 libclang-rt-14-dev clang-format
  liburing-dev libwolfssl-dev librapidxml-dev libabsl-dev libicu-dev
  libgtest-dev libgmock-dev libbenchmark-dev libexpat1-dev libc-ares-dev
  dnsmasq-base python3 python3-slixmpp python3-prometheus-client gnuplot-nox
  help2man dpkg-dev file man-db systemd
  autoconf automake libtool  # building wolfSSL from Debian's source (scripts/wolfssl.sh)
  openssl  # the tls_pki tests check our keys, CSRs and certificates with it
)

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

fetch_wolfssl() {
  # Debian's source of wolfSSL, checked by apt against Debian's keys (needs root once,
  # for the deb-src entries).
  if ! "$(dirname "$0")/wolfssl.sh" fetch 2>/dev/null; then
    $SUDO "$(dirname "$0")/wolfssl.sh" sources
    "$(dirname "$0")/wolfssl.sh" fetch
  fi
}

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  SUDO="sudo"
fi

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  fetch_wolfssl
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fetch_wolfssl
