#!/usr/bin/env bash
# The stanzad demo: what exists today, end to end, on loopback.
#   1. builds stanzad, stanzactl and the tools in Release;
#   2. starts one stanzad node on 127.0.0.1, configures it with stanzactl as an
#      operator would (the Cisco Meeting Server `xmpp ...` commands);
#   3. two call bridges authenticate and exchange stanzas, the server answers a
#      ping, an unknown destination and a wrong secret get their errors;
#   4. frames captured XMPP streams and hostile input with the tokenizer;
#   5. measures the tokenizer against libexpat on the same bytes.
# Later issues grow this into the 3-node cluster demo with bridge failover.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${STANZAD_BUILD_DIR:-$ROOT/build}

"$ROOT/scripts/install-deps.sh"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target stanzad stanzactl stanza-frame tokenizer_bench

STATE=$(mktemp -d /tmp/stanzad-demo-XXXXXX)
PORT=${STANZAD_DEMO_PORT:-15223}
CTL=("$BUILD/cmd/stanzactl" "--state_dir=$STATE")
NODE_PID=""
cleanup() {
  if [[ -n "$NODE_PID" ]] && kill -0 "$NODE_PID" 2>/dev/null; then
    kill -TERM "$NODE_PID" && wait "$NODE_PID" || true
  fi
  rm -rf "$STATE"
}
trap cleanup EXIT

echo
echo "### 1. Start a node and configure it with stanzactl"
"$BUILD/cmd/stanzad" --state_dir="$STATE" --component_port="$PORT" --threads=2 \
  2>"$STATE/stanzad.log" &
NODE_PID=$!
for _ in $(seq 50); do [[ -S "$STATE/stanzad.sock" ]] && break; sleep 0.1; done
set -x
"${CTL[@]}" xmpp domain example.com
"${CTL[@]}" xmpp listen 127.0.0.1
"${CTL[@]}" xmpp callbridge add cb1
echo "s3cret-for-cb2" | "${CTL[@]}" xmpp callbridge add-secret cb2
"${CTL[@]}" xmpp enable
"${CTL[@]}" xmpp callbridge list
{ set +x; } 2>/dev/null
sleep 0.5

echo
echo "### 2. Call bridges on the node"
/usr/bin/python3 "$ROOT/scripts/demo_bridges.py" "$STATE" "$PORT"
echo
"${CTL[@]}" status
echo
echo "(the node's log)"
cat "$STATE/stanzad.log"

echo
echo "### 3. The tokenizer on captured streams, fed in 7-byte reads"
FRAME="$BUILD/cmd/stanza-frame"
"$FRAME" --chunk_bytes=7 --print_stanzas=false "$ROOT"/tests/data/streams/*.xml
HEADER="<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='cb1.example.com'>"
echo
echo "### 4. Hostile input: each gets the stream error the server would send"
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
echo "### 5. Tokenizer throughput vs libexpat on the same 8 MiB stream (one core)"
"$BUILD/bench/tokenizer_bench" --benchmark_min_time=0.5 2>/dev/null
