#!/usr/bin/env bash
# Installs every Debian 12 package stanzad's build, tests, benchmarks and demo
# need. Idempotent: when everything is present it only checks and returns.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  clang-14 libclang-rt-14-dev clang-format
  liburing-dev libwolfssl-dev librapidxml-dev libabsl-dev libicu-dev
  libgtest-dev libgmock-dev libbenchmark-dev libexpat1-dev libc-ares-dev
  dnsmasq-base python3 python3-slixmpp python3-prometheus-client gnuplot-nox
  help2man dpkg-dev file man-db systemd
  openssl  # the tls_pki tests check our keys, CSRs and certificates with it
)

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
