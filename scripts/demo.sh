#!/usr/bin/env bash
# The stanzad demo: a 3-node cluster on loopback, end to end.
#   1. builds stanzad, stanzactl and the tools in Release;
#   2. starts three nodes on 127.0.0.1, 127.0.0.2 and 127.0.0.3 and forms a
#      cluster with stanzactl as the seed's operator does (xmpp domain, listen,
#      callbridge add / add-secret, enable, cluster enable / initialize / join);
#   3. shows `cluster status` and the same `callbridge list` on every node;
#   4. two call bridges authenticate on the leader and exchange stanzas; the
#      server answers a ping, an unknown destination and a wrong secret get their
#      errors; then bridges on three different nodes talk to each other;
#   4b. a lab certificate and two users; clients on two nodes log in over TLS and
#      talk to a bridge on the third and to each other;
#   5. kills the leader with SIGKILL while 20 bridges on the two other nodes send
#      10,000 stanzas/s through it (stanza-bench, leader routing): a new leader is
#      elected, the stanzas flow again, and the run prints the failover time and
#      sent / delivered / lost (0) / duplicated (0); configuration changes go on,
#      the old node comes back and catches up;
#   5b. 30 bridges (stanza-bench) send across the nodes while one node is killed:
#      its bridges reconnect to the others and the run says what it cost;
#   6. frames captured XMPP streams and hostile input with the tokenizer.
# Stanzas between nodes go through the leader (--routing=leader, the seed's model)
# and stay at the node they entered until the destination node has delivered them
# (docs/cluster.md).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${STANZAD_BUILD_DIR:-$ROOT/build}

"$ROOT/scripts/install-deps.sh"
cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j "$(nproc)" --target stanzad stanzactl stanza-frame stanza-bench

DEMO=$(mktemp -d /tmp/stanzad-demo-XXXXXX)
PORT=${STANZAD_DEMO_PORT:-15223}           # call bridges, on each node's own IP
C2S_PORT=${STANZAD_DEMO_C2S_PORT:-15222}   # clients (STARTTLS), on each node's own IP
CLUSTER_PORT=${STANZAD_DEMO_CLUSTER_PORT:-15279}
declare -A PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    fi
  done
  rm -rf "$DEMO"
}
trap cleanup EXIT

start_node() {  # start_node N: node N on 127.0.0.N
  local n=$1
  mkdir -p "$DEMO/n$n"
  "$BUILD/cmd/stanzad" --state_dir="$DEMO/n$n" --component_port="$PORT" --c2s_port="$C2S_PORT" \
    --cluster_port="$CLUSTER_PORT" --metrics_addr="127.0.0.$n:19464" --threads=1 \
    2>>"$DEMO/n$n.log" &
  PIDS[$n]=$!
  disown "${PIDS[$n]}"  # killed on purpose below: no job-control notices
  for _ in $(seq 50); do [[ -S "$DEMO/n$n/stanzad.sock" ]] && break; sleep 0.1; done
}
ctl() {  # ctl N ARGS...: stanzactl on node N, echoed
  local n=$1; shift
  echo "n$n\$ stanzactl $*"
  "$BUILD/cmd/stanzactl" --state_dir="$DEMO/n$n" "$@"
}
leader() {  # the leader's address as node N sees it
  "$BUILD/cmd/stanzactl" --state_dir="$DEMO/n$1" --json cluster status |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["leader"])'
}

echo
echo "### 1. Three nodes, configured as the seed's operator does"
for n in 1 2 3; do start_node "$n"; done
ctl 1 xmpp domain example.com
ctl 1 xmpp listen 127.0.0.1
ctl 1 xmpp callbridge add cb1
echo "s3cret-for-cb2" | ctl 1 xmpp callbridge add-secret cb2
ctl 1 xmpp enable
ctl 1 xmpp cluster enable
ctl 1 xmpp cluster initialize
for n in 2 3; do
  ctl "$n" xmpp domain example.com
  ctl "$n" xmpp listen "127.0.0.$n"
  ctl "$n" xmpp enable
  ctl "$n" xmpp cluster enable
  # Joining needs a member's approval: a single-use token made on a member.
  TOKEN_OUT=$(ctl 1 xmpp cluster token)
  echo "$TOKEN_OUT"
  TOKEN=$(sed -n 's/.*--token=\([^ ]*\).*/\1/p' <<<"$TOKEN_OUT")
  ctl "$n" xmpp cluster join "127.0.0.1:$CLUSTER_PORT" --token="$TOKEN"
done

echo
echo "### 2. One cluster: the same view from every node"
for n in 1 2 3; do ctl "$n" xmpp cluster status; echo; done
ctl 3 xmpp callbridge list
echo
ctl 2 status

echo
echo "### 3. Call bridges on the leader (127.0.0.1)"
/usr/bin/python3 "$ROOT/scripts/demo_bridges.py" "$DEMO/n1" "$PORT" 127.0.0.1

echo
echo "Bridges on three different nodes:"
ctl 2 xmpp callbridge add cb4 >/dev/null
ctl 3 xmpp callbridge add cb5 >/dev/null
/usr/bin/python3 "$ROOT/scripts/demo_cross_nodes.py" "$DEMO/n1" "$PORT"

echo
echo "### 3b. Clients over TLS: a lab certificate on every node, users for the cluster"
(cd "$DEMO" && "$BUILD/cmd/stanzactl" pki selfsigned lab CN:example.com \
  subjectAltName:example.com >/dev/null 2>&1)
for n in 1 2 3; do
  ctl "$n" xmpp certs "$DEMO/lab.key" "$DEMO/lab.crt" >"$DEMO/certs.out"
  grep -m1 'Certificate accepted' "$DEMO/certs.out"
done
echo "pencil" | ctl 2 xmpp user add juliet
echo "pencil" | ctl 2 xmpp user add romeo
ctl 3 xmpp user list
/usr/bin/python3 "$ROOT/scripts/demo_clients.py" "$DEMO/n1" "$PORT" "$C2S_PORT"

echo
echo "### 4. The leader dies (SIGKILL) while bridges on the other two nodes talk through it"
for b in $(seq 0 29); do "$BUILD/cmd/stanzactl" --state_dir="$DEMO/n2" callbridge add "fb$b" >/dev/null; done
"$BUILD/cmd/stanzactl" --state_dir="$DEMO/n2" --json callbridge list >"$DEMO/secrets.json"
/usr/bin/python3 - "$DEMO/secrets.json" <<'PY'
import json, sys
rows = [r for r in json.load(open(sys.argv[1])) if r["name"].startswith("fb")]
rows.sort(key=lambda r: int(r["name"][2:]))
json.dump(rows, open(sys.argv[1], "w"), separators=(",", ":"))
PY
echo "20 bridges on 127.0.0.2 and 127.0.0.3, 10,000 stanzas/s, each through the leader" \
     "127.0.0.1; stanza-bench SIGKILLs the leader 1.5 s in"
"$BUILD/bench/stanza-bench" --mode=latency --rate=10000 --bridges=20 --failover \
  --server="127.0.0.2:$PORT,127.0.0.3:$PORT" --secrets_json="$DEMO/secrets.json" \
  --duration_s=4 --warmup_s=1 --drain_s=5 --kill_pid="${PIDS[1]}" --kill_at_s=1.5 2>/dev/null |
  /usr/bin/python3 "$ROOT/scripts/demo_failover_summary.py" leader
echo "new leader: $(leader 2)"
ctl 3 xmpp callbridge add cb3
ctl 2 xmpp cluster status
echo
echo "The old leader restarts with its state dir and catches up:"
start_node 1
sleep 1
ctl 1 xmpp callbridge list | grep '^Callbridge'
ctl 1 xmpp cluster status | head -6
echo
echo "(cluster events from node 2's log)"
grep -h 'event=cluster' "$DEMO/n2.log" | tail -8

echo
echo "### 4b. 30 bridges keep talking while node 3 is killed (stanza-bench --failover)"
(sleep 3; kill -KILL "${PIDS[3]}") &
"$BUILD/bench/stanza-bench" --mode=latency --rate=10000 --bridges=30 --failover \
  --server="127.0.0.1:$PORT,127.0.0.2:$PORT,127.0.0.3:$PORT" \
  --secrets_json="$DEMO/secrets.json" --duration_s=5 --warmup_s=1 --drain_s=6 2>/dev/null |
  /usr/bin/python3 "$ROOT/scripts/demo_failover_summary.py"
wait

echo
echo "### 5. The tokenizer on captured streams, fed in 7-byte reads"
FRAME="$BUILD/cmd/stanza-frame"
"$FRAME" --chunk_bytes=7 --print_stanzas=false "$ROOT"/tests/data/streams/*.xml
HEADER="<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='cb1.example.com'>"
echo
echo "### 6. Hostile input: each gets the stream error the server would send"
for body in "<message><body>&xxe;</body></message>" \
            "<message><!-- hidden --></message>" \
            "<message to='a'><body>unterminated</message>" \
            "<message><body>bad utf-8: $(printf '\xc3\x28')</body></message>"; do
  printf '%s%s' "$HEADER" "$body" | "$FRAME" || true
done
printf '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">]>' | "$FRAME" || true
echo
echo "Benchmarks: docs/benchmarks.md (tokenizer vs libexpat, throughput, failover)."
