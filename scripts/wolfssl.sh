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
# Debian's archive keeps only its newest revision: when this one is gone from it,
# the newest revision of the same upstream release is built instead, with a warning.
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
# Defines configure has no option for: subjectAltName in the certificates pki writes;
# seeds from getrandom(2), not a /dev/urandom descriptor per session (none at the fd limit).
# Debian's hardening flags; -Wp, keeps _FORTIFY_SOURCE out of the installed options.h.
BUILD_CPPFLAGS="-DWOLFSSL_ALT_NAMES -DWOLFSSL_GETRANDOM"
BUILD_CFLAGS="-O2 -g -fstack-protector-strong -Wp,-D_FORTIFY_SOURCE=2"

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEPS_DIR=${STANZAD_DEPS_DIR:-$ROOT/.deps}
JOBS=${STANZAD_JOBS:-$(nproc)}
SOURCES_FILE=/etc/apt/sources.list.d/stanzad-deb-src.sources

die() {
  echo "wolfssl.sh: $*" >&2
  exit 1
}

# The version to build: the pinned one if its source is here or in apt's indexes,
# else the newest revision apt offers of the same upstream release.
resolve_version() {
  VERSION=$WOLFSSL_DEBIAN_VERSION
  [[ -f $DEPS_DIR/wolfssl-$VERSION/configure.ac ]] && return 0
  local offered
  offered=$(apt-cache showsrc wolfssl 2>/dev/null | sed -n 's/^Version: //p' | sort -u) || true
  grep -qxF "$VERSION" <<<"$offered" && return 0
  local upstream=${VERSION%-*} newest=""
  while read -r candidate; do
    [[ -n $candidate && ${candidate%-*} == "$upstream" ]] || continue
    if [[ -z $newest ]] || dpkg --compare-versions "$candidate" gt "$newest"; then
      newest=$candidate
    fi
  done <<<"$offered"
  if [[ -n $newest ]] && dpkg --compare-versions "$newest" gt "$VERSION"; then
    echo "wolfssl.sh: warning: Debian no longer offers wolfssl $VERSION; building its" \
      "successor $newest (put it in WOLFSSL_DEBIAN_VERSION in scripts/wolfssl.sh)" >&2
    VERSION=$newest
  fi
}
resolve_version
SOURCE_DIR="$DEPS_DIR/wolfssl-$VERSION"
# The installed library's directory names the version and hashes the whole recipe.
RECIPE="$VERSION ${CONFIGURE_FLAGS[*]} CPPFLAGS=$BUILD_CPPFLAGS CFLAGS=$BUILD_CFLAGS"
PREFIX="$DEPS_DIR/wolfssl-$VERSION-$(sha256sum <<<"$RECIPE" | cut -c1-12)"
STAMP="$PREFIX/stanzad-wolfssl.stamp"

add_sources() {
  # Debian's source indexes for the archive the machine already uses, signed by the
  # same keys; only what apt-get source needs.
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
}

FETCH_DIR=""  # global: the EXIT trap reads it after fetch has returned
fetch() {
  [[ -f $SOURCE_DIR/configure.ac ]] && return 0
  mkdir -p "$DEPS_DIR" || die "cannot create $DEPS_DIR"
  FETCH_DIR=$(mktemp -d "$DEPS_DIR/fetch.XXXXXX")
  trap 'rm -rf "$FETCH_DIR"' EXIT
  local work=$FETCH_DIR
  # apt-get source checks the .dsc's signature and every file's hash, then
  # dpkg-source applies Debian's patches (its security fixes among them).
  if ! (cd "$work" && apt-get -o APT::Sandbox::User=root source -qq "wolfssl=$VERSION" \
    >fetch.log 2>&1); then
    cat "$work/fetch.log" >&2
    die "could not fetch Debian's source of wolfssl $VERSION. Run scripts/install-deps.sh" \
      "(as root, it adds Debian's deb-src entries), or configure stanzad with" \
      "-DSTANZAD_WOLFSSL=system to link the system's libwolfssl-dev instead"
  fi
  mv "$work"/wolfssl-*/ "$SOURCE_DIR.tmp"
  mv "$SOURCE_DIR.tmp" "$SOURCE_DIR"
  rm -rf "$work"
  trap - EXIT
}

build() {
  [[ -f $STAMP && $(cat "$STAMP") == "$RECIPE" ]] && return 0
  fetch
  local build_dir="$PREFIX.build"
  rm -rf "$build_dir" "$PREFIX"
  mkdir -p "$build_dir"
  echo "wolfssl.sh: building wolfSSL $VERSION into $PREFIX (1.5 to 3 minutes, once)"
  if [[ ! -f $SOURCE_DIR/.stanzad-autoreconf-done ]]; then
    (cd "$SOURCE_DIR" && autoreconf -fi) >"$build_dir/autoreconf.log" 2>&1 ||
      { tail -20 "$build_dir/autoreconf.log" >&2; die "autoreconf failed in $SOURCE_DIR" \
        "(it needs the packages autoconf, automake and libtool: scripts/install-deps.sh)"; }
    touch "$SOURCE_DIR/.stanzad-autoreconf-done"
  fi
  (
    cd "$build_dir"
    "$SOURCE_DIR/configure" --prefix="$PREFIX" "${CONFIGURE_FLAGS[@]}" \
      CPPFLAGS="$BUILD_CPPFLAGS" CFLAGS="$BUILD_CFLAGS" >configure.log 2>&1 ||
      { tail -20 configure.log >&2; exit 1; }
    make -j "$JOBS" >make.log 2>&1 || { tail -30 make.log >&2; exit 1; }
    make install >install.log 2>&1 || { tail -20 install.log >&2; exit 1; }
  ) || die "building wolfSSL failed (logs in $build_dir)"
  cp "$SOURCE_DIR/debian/copyright" "$PREFIX/copyright"
  echo "$RECIPE" >"$STAMP"
  rm -rf "$build_dir"
}

# Takes the lock on $DEPS_DIR: one fetch or build at a time (two CMake configures at
# once wait here). $1 names what needs it, for the error.
lock_deps() {
  mkdir -p "$DEPS_DIR" || die "cannot create $DEPS_DIR"
  [[ -w $DEPS_DIR ]] || die "$DEPS_DIR is not writable by $(id -un); $1 there as its" \
    "owner (scripts/wolfssl.sh $1) or set STANZAD_DEPS_DIR"
  exec 9>>"$DEPS_DIR/wolfssl.lock"
  flock 9
}

case ${1:-} in
  sources) add_sources ;;
  fetch)
    [[ -f $SOURCE_DIR/configure.ac ]] && exit 0
    lock_deps fetch
    fetch
    ;;
  build)
    # Built already: nothing to do, nothing written (a user who cannot write .deps
    # may still configure a build directory).
    [[ -f $STAMP && $(cat "$STAMP") == "$RECIPE" ]] && exit 0
    lock_deps build
    build
    ;;
  prefix) echo "$PREFIX" ;;
  version) echo "$VERSION" ;;
  flags) echo "${CONFIGURE_FLAGS[*]} CPPFLAGS=\"$BUILD_CPPFLAGS\" CFLAGS=\"$BUILD_CFLAGS\"" ;;
  *) die "usage: scripts/wolfssl.sh sources|fetch|build|prefix|version|flags" ;;
esac
