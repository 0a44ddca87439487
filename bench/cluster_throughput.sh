#!/bin/bash
# Component-to-component throughput across a 3-node cluster on 127.0.0.1-3.
#
#   bench/cluster_throughput.sh [BUILD_DIR=build] [ROUTING=leader] [BRIDGES=30]
#
# Starts three stanzad nodes (--threads=1 each: the machine has 2 cores), forms the
# cluster with stanzactl, adds BRIDGES bridges, then runs stanza-bench twice: with
# the bridges spread over the three nodes (bridge i on node i mod 3, sending to
# bridge i+1: every stanza crosses nodes) and with all of them on node 1 (no
# stanza crosses). Prints both JSON lines. Bounded: each run 6 s plus set-up.
set -euo pipefail
BUILD=${1:-build}
ROUTING=${2:-leader}
BRIDGES=${3:-30}
PORT=${CLUSTER_BENCH_PORT:-25600}
DIR=$(mktemp -d /tmp/cluster-bench-XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT
CTL() { "$BUILD/cmd/stanzactl" --state_dir="$DIR/n$1" "${@:2}"; }
for i in 1 2 3; do
  "$BUILD/cmd/stanzad" --state_dir="$DIR/n$i" --domain=example.com --listen=127.0.0.$i \
    --component_port="$PORT" --cluster_port=$((PORT + 79)) --metrics_addr= --threads=1 \
    --routing="$ROUTING" --preauth_connections_per_ip_max=0 2>"$DIR/n$i.log" &
  PIDS+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 50); do [[ -S "$DIR/n$i/stanzad.sock" ]] && break; sleep 0.1; done
  CTL "$i" cluster enable >/dev/null
done
CTL 1 cluster initialize >/dev/null
for i in 2 3; do
  TOKEN=$(CTL 1 cluster token | sed -n 's/.*--token=\([^ ]*\).*/\1/p')
  CTL "$i" cluster join "127.0.0.1:$((PORT + 79))" --token="$TOKEN" >/dev/null
done
for b in $(seq 0 $((BRIDGES - 1))); do CTL 1 callbridge add "b$b" >/dev/null; done
CTL 1 --json callbridge list >"$DIR/secrets.json"
sleep 0.5
for servers in "127.0.0.1:$PORT,127.0.0.2:$PORT,127.0.0.3:$PORT" "127.0.0.1:$PORT"; do
  timeout 60 "$BUILD/bench/stanza-bench" --bridges="$BRIDGES" --server="$servers" \
    --secrets_json="$DIR/secrets.json" --duration_s=5 --warmup_s=1 2>/dev/null | tail -1
done
