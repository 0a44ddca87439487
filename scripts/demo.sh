#!/usr/bin/env bash
# The stanzad demo: what exists today, end to end.
#   - builds stanzad in Release;
#   - frames captured XMPP streams (a call bridge's component session, a desktop
#     client's session, a Jingle offer) and prints each stanza the router would see;
#   - feeds hostile input and prints the stream error stanzad would send;
#   - measures the tokenizer against libexpat on the same bytes.
# Later issues grow this into the 3-node cluster demo with bridge failover.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${STANZAD_BUILD_DIR:-$ROOT/build}

"$ROOT/scripts/install-deps.sh"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTANZAD_BUILD_TESTS=OFF >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target stanza-frame tokenizer_bench

FRAME="$BUILD/cmd/stanza-frame"
echo
echo "### 1. Captured streams, fed in 7-byte reads (stanzas split across reads on purpose)"
"$FRAME" --chunk_bytes=7 --print_stanzas=false "$ROOT"/tests/data/streams/*.xml

HEADER="<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='cb1.example.com'>"
echo
echo "### 2. Hostile input: each gets the stream error the server would send, then the close"
for body in "<message><body>&xxe;</body></message>" \
            "<message><!-- hidden --></message>" \
            "<message to='a'><body>unterminated</message>" \
            "<message><body>bad utf-8: $(printf '\xc3\x28')</body></message>"; do
  printf '%s%s' "$HEADER" "$body" | "$FRAME" || true
done
printf '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]>' | "$FRAME" || true
printf '%s<message><body>%s</body></message>' "$HEADER" "$(head -c 300000 /dev/zero | tr '\0' x)" \
  | "$FRAME" --print_stanzas=false || true

echo
echo "### 3. Tokenizer throughput vs libexpat on the same 8 MiB mixed stream (one core)"
"$BUILD/bench/tokenizer_bench" --benchmark_min_time=0.5 2>/dev/null
