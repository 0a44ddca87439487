#!/usr/bin/env bash
# Runs every test of stanzad on a fresh Debian 12 machine:
#   1. installs the Debian packages it needs (scripts/install-deps.sh);
#   2. builds everything (but the benchmarks) with ASan+UBSan (g++) against the system's
#      wolfSSL (-DSTANZAD_WOLFSSL=system), runs the unit tests, then the integration suites
#      against the sanitized stanzad and stanzactl;
#   3. builds the libFuzzer targets (clang) and runs each for STANZAD_FUZZ_SECONDS (default 30);
#   4. builds everything in Release with warnings as errors, linked with stanzad's own
#      wolfSSL (scripts/wolfssl.sh builds it once, 1.5 to 3 minutes), and runs all tests with ctest.
# So every TLS test runs against both wolfSSL builds.
# Output ends with ctest's summary of step 4. Exit status is non-zero if any step fails.
#
# Environment: STANZAD_FUZZ_SECONDS (default 30), STANZAD_JOBS (default: cores),
# STANZAD_BUILD_ROOT (default: ./build-test).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD_ROOT=${STANZAD_BUILD_ROOT:-$ROOT/build-test}
JOBS=${STANZAD_JOBS:-$(nproc)}
FUZZ_SECONDS=${STANZAD_FUZZ_SECONDS:-30}

step() { printf '\n==== %s ====\n' "$*"; }

step "installing Debian packages"
"$ROOT/scripts/install-deps.sh"

step "sanitizer build (ASan+UBSan): unit tests, then stanzad under the integration suites"
cmake -S "$ROOT" -B "$BUILD_ROOT/asan" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSTANZAD_WERROR=ON -DSTANZAD_SANITIZE=address,undefined -DSTANZAD_WOLFSSL=system \
  -DSTANZAD_BUILD_BENCH=OFF -DSTANZAD_BUILD_TOOLS=ON >/dev/null
cmake --build "$BUILD_ROOT/asan" -j "$JOBS"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir "$BUILD_ROOT/asan" -L unit --output-on-failure -j "$JOBS"
# The daemons, stanzactl and engine_test the integration suites start are the sanitized
# ones; every report also goes to a file, so one from a daemon whose log nobody reads
# still fails the run. (Not the package and chart tests: they test packaging and gnuplot.)
REPORTS="$BUILD_ROOT/asan/sanitizer-reports"
rm -rf "$REPORTS" && mkdir -p "$REPORTS"
suites=0
ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$REPORTS/asan" \
  UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$REPORTS/ubsan" \
  STANZAD_TEST_SLOWDOWN=3 \
  ctest --test-dir "$BUILD_ROOT/asan" -L integration -E '^(package_test|plot_test)$' \
  --output-on-failure -j "$JOBS" || suites=$?
# The reports are printed whether or not a suite failed: a daemon that aborted is
# often why one did.
if compgen -G "$REPORTS/*" >/dev/null; then
  echo "sanitizer reports from the integration suites:" >&2
  cat "$REPORTS"/* >&2
  exit 1
fi
[ "$suites" -eq 0 ] || exit "$suites"

step "fuzz targets (libFuzzer, ${FUZZ_SECONDS} s each)"
cmake -S "$ROOT" -B "$BUILD_ROOT/fuzz" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++-14 -DSTANZAD_FUZZ=ON -DSTANZAD_WERROR=ON \
  -DSTANZAD_FUZZ_SECONDS="$FUZZ_SECONDS" >/dev/null
cmake --build "$BUILD_ROOT/fuzz" -j "$JOBS" --target fuzz_targets
ctest --test-dir "$BUILD_ROOT/fuzz" -L fuzz --output-on-failure -j "$JOBS"

step "release build (warnings are errors) and all tests"
cmake -S "$ROOT" -B "$BUILD_ROOT/release" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DSTANZAD_WERROR=ON >/dev/null
cmake --build "$BUILD_ROOT/release" -j "$JOBS"
ctest --test-dir "$BUILD_ROOT/release" --output-on-failure -j "$JOBS"
