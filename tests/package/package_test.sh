#!/usr/bin/env bash
# Builds the stanzad .deb with CPack (or takes one), extracts it into a scratch
# root with dpkg-deb -x (nothing is installed on this machine) and checks it:
# control fields, maintainer scripts, the files, the programs, the man pages,
# and the systemd unit with `systemd-analyze verify` and `security`.
#
#   tests/package/package_test.sh BUILD_DIR [PACKAGE.deb]
#
# Without PACKAGE.deb it runs `cpack -G DEB` on BUILD_DIR's CPackConfig.cmake,
# writing into a temporary directory (the build dir's own package is left
# alone). Needs dpkg-dev, help2man (at build time), man-db, systemd.
# Everything it creates is removed on exit.
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 BUILD_DIR [PACKAGE.deb]" >&2
  exit 2
fi
BUILD_DIR=$(cd "$1" && pwd)
DEB=${2:-}

SCRATCH=$(mktemp -d /tmp/stanzad-package-test.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT

failures=0
pass() { echo "ok: $*"; }
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
check() { # check DESCRIPTION COMMAND...: runs COMMAND, passes when it succeeds
  local what=$1
  shift
  if "$@" >"$SCRATCH/out" 2>&1; then
    pass "$what"
  else
    fail "$what"
    sed 's/^/  | /' "$SCRATCH/out" >&2
  fi
}

# 1. The package.
if [[ -z "$DEB" ]]; then
  echo "building the package: cpack -G DEB --config $BUILD_DIR/CPackConfig.cmake"
  if ! (cd "$SCRATCH" && cpack -G DEB --config "$BUILD_DIR/CPackConfig.cmake" \
    -B "$SCRATCH/cpack" >"$SCRATCH/cpack.log" 2>&1); then
    cat "$SCRATCH/cpack.log" >&2
    echo "FAIL: cpack -G DEB" >&2
    exit 1
  fi
  DEB=$(find "$SCRATCH/cpack" -maxdepth 1 -name 'stanzad_*.deb' | head -n 1)
  [[ -n "$DEB" ]] || { echo "FAIL: cpack made no stanzad_*.deb" >&2; exit 1; }
fi
[[ -f "$DEB" ]] || { echo "FAIL: no package at $DEB" >&2; exit 1; }
echo "package: $(basename "$DEB") ($(stat -c %s "$DEB") bytes)"

ROOT=$SCRATCH/root
CONTROL=$SCRATCH/control
dpkg-deb -x "$DEB" "$ROOT"
dpkg-deb -e "$DEB" "$CONTROL"

# 2. Control fields.
field() { dpkg-deb -f "$DEB" "$1"; }
version=$("$ROOT/usr/bin/stanzad" --version 2>&1 | head -n 1 | awk '{print $2}') || true
check "Package is stanzad" test "$(field Package)" = stanzad
check "Version $(field Version) is what stanzad --version says ($version)" \
  test "$(field Version)" = "$version"
check "Architecture is this machine's ($(dpkg --print-architecture))" \
  test "$(field Architecture)" = "$(dpkg --print-architecture)"
check "Maintainer is 'Name <address>'" grep -Eq '^[^<]+ <[^@ ]+@[^> ]+>$' <<<"$(field Maintainer)"
check "Description has a summary" test -n "$(field Description | head -n 1)"
depends=$(field Depends)
echo "Depends: $depends"
for library in libc6 libstdc++6 liburing2 adduser; do
  check "Depends names $library" grep -q "\b$library\b" <<<"$depends"
done
# wolfSSL: built for stanzad and linked in (the default), or the system's shared library.
wolfssl=$(sed -n 's/^STANZAD_WOLFSSL:[A-Z]*=//p' "$BUILD_DIR/CMakeCache.txt")
if [[ $wolfssl == system ]]; then
  check "Depends names libwolfssl35 (-DSTANZAD_WOLFSSL=system)" grep -q '\blibwolfssl35\b' <<<"$depends"
else
  check "Depends does not name libwolfssl (linked statically)" \
    sh -c "! grep -q libwolfssl <<'EOF'
$depends
EOF"
  check "stanzad needs no libwolfssl.so" \
    sh -c "! readelf -d '$ROOT/usr/bin/stanzad' | grep -q libwolfssl"
  check "wolfSSL's copyright file ships with it" \
    grep -q "wolfSSL" "$ROOT/usr/share/doc/stanzad/copyright.wolfssl"
  check "Description says wolfSSL is linked statically" \
    sh -c "dpkg-deb -f '$DEB' Description | grep -q 'wolfSSL .*statically'"
fi
if command -v file >/dev/null; then
  check "stanzad is stripped" sh -c "file -L '$ROOT/usr/bin/stanzad' | grep -q ', stripped'"
fi

# 3. Maintainer scripts: present, executable, valid sh; users and state dir.
for script in postinst prerm postrm; do
  check "$script is executable" test -x "$CONTROL/$script"
  check "$script passes sh -n" sh -n "$CONTROL/$script"
done
check "postinst creates the system user" grep -q 'adduser --system --group' "$CONTROL/postinst"
check "postinst creates /var/lib/stanzad 0700" \
  grep -q 'install -d -o stanzad -g stanzad -m 0700' "$CONTROL/postinst"
check "postinst creates /etc/stanzad root:stanzad 0750" \
  grep -q 'install -d -o root -g stanzad -m 0750 "$KEY_DIR"' "$CONTROL/postinst"
check "postrm deletes the state only on purge" \
  sh -c "awk '/^  purge\\)/,/;;/' '$CONTROL/postrm' | grep -q 'rm -rf /var/lib/stanzad' &&
         test \$(grep -c 'rm -rf /var/lib/stanzad' '$CONTROL/postrm') -eq 1"

# 3b. The maintainer scripts run, as dpkg would call them, inside a private
# mount namespace whose /etc is a copy and whose /var and /run are scratch
# directories: the user they create and the state dir they make and delete
# never reach this machine, and with no /run/systemd/system they call no
# systemctl. Needs root and unshare(1); skipped otherwise.
if [[ $(id -u) -eq 0 ]] && unshare -m --propagation private true 2>/dev/null; then
  NS=$SCRATCH/ns
  mkdir -p "$NS/var/lib" "$NS/var/log" "$NS/var/tmp" "$NS/run"
  cp -a /etc "$NS/etc"
  # shellcheck disable=SC2016 # the script expands its own arguments
  check "postinst, prerm and postrm run in a scratch /etc, /var and /run" \
    unshare -m --propagation private sh -euc '
      ns=$1 control=$2
      mount --bind "$ns/etc" /etc
      mount --bind "$ns/var" /var
      mount --bind "$ns/run" /run
      sh -e "$control/postinst" configure ""
      getent passwd stanzad | grep -q ":/var/lib/stanzad:/usr/sbin/nologin$"
      getent group stanzad >/dev/null
      test "$(stat -c "%U:%G %a" /var/lib/stanzad)" = "stanzad:stanzad 700"
      test "$(stat -c "%U:%G %a" /etc/stanzad)" = "root:stanzad 750"
      echo "configuration" >/var/lib/stanzad/config
      echo "key" >/etc/stanzad/xmpp.key
      sh -e "$control/postinst" configure 0.0.1 >/dev/null   # upgrade: idempotent
      sh -e "$control/prerm" remove
      sh -e "$control/postrm" remove
      test -f /var/lib/stanzad/config                        # remove keeps the state
      sh -e "$control/postrm" purge
      test ! -e /var/lib/stanzad                             # purge deletes it
      test -f /etc/stanzad/xmpp.key                          # but not the keys
      getent passwd stanzad >/dev/null                       # and keeps the user
    ' sh "$NS" "$CONTROL"
else
  echo "skip: maintainer scripts not run (needs root and unshare -m)"
fi

# 4. The files.
for path in usr/bin/stanzad usr/bin/stanzactl; do
  check "$path is an executable file" test -f "$ROOT/$path" -a -x "$ROOT/$path"
done
UNIT=$ROOT/usr/lib/systemd/system/stanzad.service
check "the unit is at /usr/lib/systemd/system/stanzad.service" test -f "$UNIT"
check "the unit starts /usr/bin/stanzad" grep -q '^ExecStart=/usr/bin/stanzad ' "$UNIT"
check "sysusers.d/stanzad.conf declares the user" \
  grep -q '^u stanzad ' "$ROOT/usr/lib/sysusers.d/stanzad.conf"
check "nothing outside /usr" test "$(ls "$ROOT")" = usr

# 5. The programs run from the scratch root.
"$ROOT/usr/bin/stanzad" --help >"$SCRATCH/stanzad.help" 2>&1 && code=0 || code=$?
check "stanzad --help exits 0 (got $code)" test "$code" -eq 0
check "stanzad --help lists --state_dir" grep -q -- '--state_dir' "$SCRATCH/stanzad.help"
check "stanzad --help groups its flags (Cluster:)" grep -q '^Cluster:$' "$SCRATCH/stanzad.help"
check "stanzactl --help exits 0" "$ROOT/usr/bin/stanzactl" --help
check "stanzactl with no command exits 2" sh -c "'$ROOT/usr/bin/stanzactl' >/dev/null 2>&1; test \$? -eq 2"

# 6. The man pages render and say what --help says.
for page in man8/stanzad.8.gz man1/stanzactl.1.gz; do
  file=$ROOT/usr/share/man/$page
  check "$page is gzip" gzip -t "$file"
  name=$(basename "$page" | cut -d. -f1)
  MANWIDTH=100 man --warnings -l -P cat "$file" >"$SCRATCH/$name.txt" 2>"$SCRATCH/$name.warnings" || true
  check "man -l $page has NAME and $name" grep -q "$name" "$SCRATCH/$name.txt"
  check "man -l $page printed no warnings" test ! -s "$SCRATCH/$name.warnings"
done
check "stanzad(8) documents --state_dir" grep -q 'state_dir' "$SCRATCH/stanzad.txt"
check "stanzactl(1) documents callbridge add" grep -q 'callbridge add' "$SCRATCH/stanzactl.txt"

# 7. The unit. systemd-analyze verify checks that ExecStart's binary exists
# and, with --man=yes, that the man pages in Documentation= open. Its --root
# option would find /usr/bin/stanzad in the scratch root, but then also looks
# there for systemd's own units (sysinit.target, pulled in by the default
# dependencies) and fails; so the unit is verified from a temporary copy whose
# ExecStart names the extracted binary, with MANPATH at the extracted pages.
# The user stanzad need not exist for verify.
mkdir "$SCRATCH/unit"
sed "s|^ExecStart=/usr/bin/stanzad |ExecStart=$ROOT/usr/bin/stanzad |" "$UNIT" \
  >"$SCRATCH/unit/stanzad.service"
check "the copy differs from the unit in ExecStart only" \
  test "$(diff "$UNIT" "$SCRATCH/unit/stanzad.service" | grep -c '^[<>]')" -eq 2
check "systemd-analyze verify accepts the unit" \
  sh -c "MANPATH='$ROOT/usr/share/man' systemd-analyze verify --man=yes \
           '$SCRATCH/unit/stanzad.service' 2>&1 | tee /dev/stderr | (! grep -q .)"
check "systemd-analyze verify rejects a missing ExecStart binary (the check is live)" \
  sh -c "mkdir '$SCRATCH/bad' && sed 's|^ExecStart=/usr/bin/|ExecStart=/nonexistent/|' '$UNIT' \
           >'$SCRATCH/bad/stanzad.service' &&
         ! systemd-analyze verify --man=no '$SCRATCH/bad/stanzad.service'"
# The hardening, rated by systemd (0 best, 10 worst; --threshold is in tenths).
check "systemd-analyze security rates the unit at most 2.5 (OK or better)" \
  systemd-analyze security --offline=yes --threshold=25 "$SCRATCH/unit/stanzad.service"
systemd-analyze security --offline=yes "$SCRATCH/unit/stanzad.service" 2>/dev/null | tail -n 1 || true
for setting in NoNewPrivileges=yes ProtectSystem=strict User=stanzad StateDirectory=stanzad \
  'CapabilityBoundingSet=$' LimitNOFILE=1048576 \
  'SystemCallFilter=@system-service io_uring_setup io_uring_enter io_uring_register'; do
  check "the unit sets $setting" grep -q "^$setting" "$UNIT"
done

echo
if [[ $failures -ne 0 ]]; then
  echo "package test: $failures check(s) failed"
  exit 1
fi
echo "package test: all checks passed"
