#!/usr/bin/env bash
# stanzad's own wolfSSL: Debian's source package, configured for stanzad, built as a
# static library. The one place that names the version and the configure line
# (docs/operating.md "Rebuilding wolfSSL" explains them; CMake calls this script).
#
#   scripts/wolfssl.sh sources       # as root: adds Debian's deb-src entries (apt-get update)
#   scripts/wolfssl.sh fetch         # apt-get source into $STANZAD_DEPS_DIR (verified by apt)
#   scripts/wolfssl.sh build         # fetches if needed, builds, installs (once per version
#                                    # and configure line; every build directory shares it)
#   scripts/wolfssl.sh prefix        # prints where it is installed
#   scripts/wolfssl.sh version       # prints the Debian version built
#   scripts/wolfssl.sh flags         # prints the configure line
#
# Environment: STANZAD_DEPS_DIR (default: <repository>/.deps), STANZAD_JOBS (default: cores).
set -euo pipefail

# A security update: change the version to the new Debian revision (apt-cache
# showsrc wolfssl), run the tests; every build directory rebuilds the library.
WOLFSSL_DEBIAN_VERSION="5.5.4-2+deb12u3"

# Why each flag: docs/operating.md "Rebuilding wolfSSL".
CONFIGURE_FLAGS=(
  --enable-static --disable-shared --with-pic
  --disable-examples --disable-crypttests --disable-benchmark
  --enable-tls13 --enable-tlsv12 --disable-oldtls
  --enable-sp=yes --enable-sp-asm --enable-sp-math-all --enable-intelasm
  --enable-curve25519 --enable-ecc --enable-aesgcm --enable-chacha --enable-poly1305
  --enable-sni --enable-session-ticket --enable-extended-master --enable-maxfragment
  --enable-pwdbased --enable-keygen --enable-certgen --enable-certreq --enable-certext
  --enable-opensslextra --enable-harden
  --disable-sessioncerts --disable-altcertchains
)
# Defines configure has no option for: subjectAltName in the certificates pki writes.
EXTRA_CPPFLAGS="-DWOLFSSL_ALT_NAMES"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEPS_DIR=${STANZAD_DEPS_DIR:-$ROOT/.deps}
JOBS=${STANZAD_JOBS:-$(nproc)}
SOURCE_DIR="$DEPS_DIR/wolfssl-$WOLFSSL_DEBIAN_VERSION"
SOURCES_FILE=/etc/apt/sources.list.d/stanzad-deb-src.sources
# The installed library's directory names the version and the configure line.
FLAGS_HASH=$(echo "$WOLFSSL_DEBIAN_VERSION ${CONFIGURE_FLAGS[*]} $EXTRA_CPPFLAGS" | sha256sum | cut -c1-12)
PREFIX="$DEPS_DIR/wolfssl-$WOLFSSL_DEBIAN_VERSION-$FLAGS_HASH"

die() {
  echo "wolfssl.sh: $*" >&2
  exit 1
}

add_sources() {
  # Debian's source indexes for the archive the machine already uses, signed by the
  # same keys; only what apt-get source needs.
  if ! apt-cache showsrc wolfssl 2>/dev/null | grep -qx "Version: $WOLFSSL_DEBIAN_VERSION"; then
    if [[ ! -f $SOURCES_FILE ]]; then
      cat >"$SOURCES_FILE" <<'EOF'
# Added by stanzad's scripts/wolfssl.sh: Debian source packages (apt-get source wolfssl).
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    apt-get update -qq
  fi
}

fetch() {
  [[ -f $SOURCE_DIR/configure.ac ]] && return 0
  mkdir -p "$DEPS_DIR"
  local work
  work=$(mktemp -d "$DEPS_DIR/fetch.XXXXXX")
  # apt-get source checks the .dsc's signature and every file's hash, then
  # dpkg-source applies Debian's patches (its security fixes among them).
  if ! (cd "$work" && apt-get -o APT::Sandbox::User=root source -qq "wolfssl=$WOLFSSL_DEBIAN_VERSION" >/dev/null); then
    rm -rf "$work"
    die "could not fetch Debian's source of wolfssl $WOLFSSL_DEBIAN_VERSION; run" \
      "scripts/install-deps.sh as root (it adds the deb-src entries), or configure" \
      "stanzad with -DSTANZAD_WOLFSSL=system to use the system's libwolfssl-dev"
  fi
  mv "$work"/wolfssl-*/ "$SOURCE_DIR.tmp"
  rm -rf "$work"
  mv "$SOURCE_DIR.tmp" "$SOURCE_DIR"
}

build() {
  local prefix=$PREFIX
  local stamp="$prefix/stanzad-wolfssl.stamp"
  local want="$WOLFSSL_DEBIAN_VERSION ${CONFIGURE_FLAGS[*]} $EXTRA_CPPFLAGS"
  [[ -f $stamp && $(cat "$stamp") == "$want" ]] && return 0
  fetch
  local build_dir="$prefix.build"
  rm -rf "$build_dir" "$prefix"
  mkdir -p "$build_dir"
  echo "wolfssl.sh: building wolfSSL $WOLFSSL_DEBIAN_VERSION into $prefix (about 2 minutes, once)"
  (
    cd "$SOURCE_DIR"
    [[ -x configure ]] || autoreconf -fi >/dev/null 2>&1
  ) || die "autoreconf failed in $SOURCE_DIR (packages autoconf, automake, libtool)"
  (
    cd "$build_dir"
    "$SOURCE_DIR/configure" --prefix="$prefix" "${CONFIGURE_FLAGS[@]}" \
      CPPFLAGS="$EXTRA_CPPFLAGS -D_FORTIFY_SOURCE=2" \
      CFLAGS="-O2 -g -fstack-protector-strong" >configure.log 2>&1 ||
      { tail -20 configure.log >&2; exit 1; }
    make -j "$JOBS" >make.log 2>&1 || { tail -30 make.log >&2; exit 1; }
    make install >install.log 2>&1 || { tail -20 install.log >&2; exit 1; }
  ) || die "building wolfSSL failed (logs in $build_dir)"
  echo "$want" >"$stamp"
  rm -rf "$build_dir"
}

case ${1:-} in
  sources) add_sources ;;
  fetch) fetch ;;
  build)
    mkdir -p "$DEPS_DIR"
    # One fetch and build at a time (two CMake configures at once wait here).
    exec 9>"$DEPS_DIR/wolfssl.lock"
    flock 9
    build
    ;;
  prefix) echo "$PREFIX" ;;
  version) echo "$WOLFSSL_DEBIAN_VERSION" ;;
  flags) echo "${CONFIGURE_FLAGS[*]} CPPFLAGS=$EXTRA_CPPFLAGS" ;;
  *) die "usage: scripts/wolfssl.sh sources|fetch|build|prefix|version|flags" ;;
esac
