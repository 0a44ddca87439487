#!/bin/bash
# stanzad vs Prosody 0.12 and ejabberd 23.01 (issue 4, "Benchmarks"), in one run.
#
#   sudo bench/compare_servers.sh          (from the repository root, as root)
#
# In each of $ROUNDS rounds (default 2), for each N in $BRIDGES (default "20 200")
# and each server (stanzad, prosody, ejabberd, interleaved so that load from
# elsewhere on the machine falls on all alike): starts the server on a free
# 127.0.0.1 port with components b0..b{N-1}.example.com (stanzad: --threads=2, bridges added with
# `stanzactl callbridge add`; the others through bench/other_servers.sh), runs
# stanza-bench's throughput mode against it with the same parameters (bridge i
# sends to bridge (i+1) % N, $WINDOW in flight each, $PAYLOAD_BYTES-byte bodies,
# $WARMUP_S s warm-up, $DURATION_S s measured), and stops it. The server's CPU time
# over the stanza-bench run is read from /proc (cores = CPU seconds / wall seconds),
# and so is the whole machine's (to see load from elsewhere).
#
# Then, unless IDLE_N=0, memory per idle component: each server is started with
# IDLE_N components configured, its VmRSS is read once steady (4 samples 1 s apart
# within 0.2%, at most ~40 s), bench/idle_components.py connects and
# authenticates IDLE_N components and holds them, and VmRSS is read again 1 s after
# the last handshake and once steady again; (after - before) / IDLE_N.
#
# Prints one table for throughput, the ratio stanzad / the faster of the two others
# for each round and N and for the best of the rounds, and one table for memory;
# raw results go to $OUT_DIR/results.tsv.
#
# Environment (defaults): STANZAD_BIN_DIR (build/cmd), STANZA_BENCH
# (build/bench/stanza-bench), BRIDGES ("20 200"; empty skips the throughput part),
# DURATION_S (5), WARMUP_S (1), WINDOW (32), PAYLOAD_BYTES (100), ROUNDS (2),
# IDLE_N (2000; 0 skips the memory part), SERVERS ("stanzad prosody ejabberd"),
# OUT_DIR (a new /tmp/compare-servers.*).
# Prosody and ejabberd are installed from Debian when missing
# (bench/other_servers.sh install). Everything listens on 127.0.0.1 only; every
# wait is bounded, and every process started here is stopped by PID on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
STANZAD_BIN_DIR=${STANZAD_BIN_DIR:-build/cmd}
STANZA_BENCH=${STANZA_BENCH:-build/bench/stanza-bench}
BRIDGES=${BRIDGES-20 200}  # empty: memory only
DURATION_S=${DURATION_S:-5}
WARMUP_S=${WARMUP_S:-1}
WINDOW=${WINDOW:-32}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-100}
IDLE_N=${IDLE_N:-2000}
ROUNDS=${ROUNDS:-2}
SERVERS=${SERVERS:-stanzad prosody ejabberd}
OTHERS=$ROOT/bench/other_servers.sh
IDLE=$ROOT/bench/idle_components.py
SECRET=bench$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')

die() { echo "compare_servers.sh: $*" >&2; exit 1; }
log() { echo "compare_servers.sh: $*" >&2; }

[ "$(id -u)" = 0 ] || die "needs root (the other servers run as their Debian users)"
STANZAD=$(readlink -f "$STANZAD_BIN_DIR/stanzad") || true
STANZACTL=$(readlink -f "$STANZAD_BIN_DIR/stanzactl") || true
STANZA_BENCH=$(readlink -f "$STANZA_BENCH") || true
for b in "$STANZAD" "$STANZACTL" "$STANZA_BENCH"; do
  [ -x "$b" ] || die "no executable $b (set STANZAD_BIN_DIR / STANZA_BENCH)"
done
for n in $BRIDGES $IDLE_N $ROUNDS $DURATION_S $WARMUP_S $WINDOW $PAYLOAD_BYTES; do
  [[ $n =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "bad number $n"
done
case " $SERVERS " in *" prosody "*|*" ejabberd "*)
  if ! [ -x /usr/bin/prosody ] || ! [ -x /usr/sbin/ejabberdctl ]; then "$OTHERS" install; fi;;
esac

if [ -z "${OUT_DIR:-}" ]; then OUT_DIR=$(mktemp -d /tmp/compare-servers.XXXXXX); fi
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd -P)
chmod 755 "$OUT_DIR"  # the prosody and ejabberd users must reach their directories
RESULTS=$OUT_DIR/results.tsv
: >"$RESULTS"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# The server running now: its kind, directory, PID (for /proc), port, secrets file.
CUR_KIND="" CUR_DIR="" CUR_PID="" CUR_PORT="" CUR_SECRETS="" IDLE_PID=""

# free_port, alive, cpu_seconds, machine_busy_seconds, rss_bytes, settled_rss
. bench/proc_lib.sh

stop_idle() {
  [ -n "$IDLE_PID" ] || return 0
  kill -TERM "$IDLE_PID" 2>/dev/null || true
  for _ in $(seq 100); do alive "$IDLE_PID" || break; sleep 0.1; done
  if alive "$IDLE_PID"; then kill -KILL "$IDLE_PID" 2>/dev/null || true; fi
  wait "$IDLE_PID" 2>/dev/null || true
  IDLE_PID=""
}

stop_server() {
  [ -n "$CUR_KIND" ] || return 0
  case $CUR_KIND in
    stanzad)
      kill -TERM "$CUR_PID" 2>/dev/null || true
      for _ in $(seq 100); do alive "$CUR_PID" || break; sleep 0.1; done
      if alive "$CUR_PID"; then log "stanzad did not exit on SIGTERM; SIGKILL"; kill -KILL "$CUR_PID" 2>/dev/null || true; fi
      wait "$CUR_PID" 2>/dev/null || true
      ;;
    *) timeout 120 "$OTHERS" stop "$CUR_KIND" "$CUR_DIR" || log "stopping $CUR_KIND failed";;
  esac
  CUR_KIND="" CUR_PID=""
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_idle
  stop_server
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server KIND N: starts KIND with components b0..b{N-1}; 0 when it serves them.
start_server() {
  local kind=$1 n=$2 tag=${3:-}
  CUR_DIR=$OUT_DIR/$kind-$n${tag:+-$tag}
  rm -rf "$CUR_DIR" && mkdir -p "$CUR_DIR"
  CUR_PORT=$(free_port)
  CUR_SECRETS=$CUR_DIR/secrets.json
  case $kind in
    stanzad)
      "$STANZAD" --state_dir="$CUR_DIR/state" --domain=example.com --listen=127.0.0.1 \
        --component_port="$CUR_PORT" --threads=2 --connections_max=$((n + 1000)) \
        --preauth_connections_per_ip_max=0 --log_level=warning </dev/null >"$CUR_DIR/stanzad.log" 2>&1 &
      CUR_PID=$! CUR_KIND=stanzad
      for _ in $(seq 100); do
        timeout 5 "$STANZACTL" --state_dir="$CUR_DIR/state" status >/dev/null 2>&1 && break
        alive "$CUR_PID" || break
        sleep 0.1
      done
      timeout 5 "$STANZACTL" --state_dir="$CUR_DIR/state" status >/dev/null 2>&1 ||
        { log "stanzad does not answer:"; tail -n 20 "$CUR_DIR/stanzad.log" >&2; return 1; }
      # Four stanzactl at a time; each one a real operator command.
      # (Each add rewrites the durable configuration: 10,000 take about 7 minutes.)
      seq 0 $((n - 1)) | timeout $((120 + n / 10)) xargs -P 4 -I{} \
        "$STANZACTL" --state_dir="$CUR_DIR/state" callbridge add b{} >/dev/null ||
        { log "callbridge add failed"; return 1; }
      timeout 30 "$STANZACTL" --state_dir="$CUR_DIR/state" --json callbridge list >"$CUR_SECRETS"
      [ "$(grep -o '"component"' "$CUR_SECRETS" | wc -l)" = "$n" ] ||
        { log "stanzad lists $(grep -o '"component"' "$CUR_SECRETS" | wc -l) bridges, not $n"; return 1; }
      for _ in $(seq 100); do
        ss -Hltn "( sport = :$CUR_PORT )" | grep -qF "127.0.0.1:$CUR_PORT " && return 0
        sleep 0.1
      done
      log "stanzad does not listen on 127.0.0.1:$CUR_PORT"; return 1
      ;;
    prosody|ejabberd)
      "$OTHERS" secrets "$n" "$SECRET" >"$CUR_SECRETS"
      CUR_KIND=$kind
      CUR_PID=$(timeout 300 "$OTHERS" start "$kind" "$CUR_DIR" "$CUR_PORT" "$n" "$SECRET") ||
        { CUR_PID=""; log "$kind did not start"; return 1; }
      ;;
    *) die "unknown server $kind";;
  esac
}

# ------------------------------------------------------------------ throughput
# Rounds interleave the servers, so that load from elsewhere on the machine falls on
# all of them alike; the busy cores of the whole machine during each run are kept.
limit=$(awk -v d="$DURATION_S" -v w="$WARMUP_S" 'BEGIN {printf "%d", d + w + 100}')
for round in $(seq "$ROUNDS"); do
  for n in $BRIDGES; do
    for kind in $SERVERS; do
      log "round $round, $kind, $n bridges: starting"
      if ! start_server "$kind" "$n" "r$round"; then
        stop_server
        printf 'throughput\t%s\t%s\t%s\tFAILED (server did not start)\n' "$round" "$kind" "$n" >>"$RESULTS"
        continue
      fi
      before=$(cpu_seconds "$CUR_PID") busy0=$(machine_busy_seconds) t0=$(date +%s.%N)
      if line=$(timeout "$limit" "$STANZA_BENCH" --server="127.0.0.1:$CUR_PORT" \
          --secrets_json="$CUR_SECRETS" --bridges="$n" --window="$WINDOW" \
          --payload_bytes="$PAYLOAD_BYTES" --duration_s="$DURATION_S" --warmup_s="$WARMUP_S" \
          2>"$CUR_DIR/stanza-bench.err"); then
        after=$(cpu_seconds "$CUR_PID") busy1=$(machine_busy_seconds) t1=$(date +%s.%N)
        cores=$(awk -v a="$after" -v b="$before" -v t0="$t0" -v t1="$t1" 'BEGIN {printf "%.2f", (a - b) / (t1 - t0)}')
        machine=$(awk -v a="$busy1" -v b="$busy0" -v t0="$t0" -v t1="$t1" 'BEGIN {printf "%.2f", (a - b) / (t1 - t0)}')
        printf 'throughput\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$kind" "$n" "$cores" "$machine" "$line" >>"$RESULTS"
        log "round $round, $kind, $n bridges: $line (server $cores cores, machine $machine cores busy)"
      else
        log "round $round, $kind, $n bridges: stanza-bench failed: $(tail -c 600 "$CUR_DIR/stanza-bench.err")"
        printf 'throughput\t%s\t%s\t%s\tFAILED (stanza-bench: %s)\n' "$round" "$kind" "$n" \
          "$(tail -n 1 "$CUR_DIR/stanza-bench.err" | tr '\t' ' ' | cut -c1-200)" >>"$RESULTS"
      fi
      stop_server
    done
  done
done

# ------------------------------------------------------------------ idle memory
if [ "$IDLE_N" -gt 0 ]; then
  for kind in $SERVERS; do
    log "$kind, $IDLE_N idle components: starting"
    if ! start_server "$kind" "$IDLE_N" idle; then
      stop_server
      printf 'idle\t%s\t%s\tFAILED (server did not start)\n' "$kind" "$IDLE_N" >>"$RESULTS"
      continue
    fi
    before=$(settled_rss "$CUR_PID")  # after start-up (ejabberd shrinks for ~10 s)
    /usr/bin/python3 "$IDLE" --server="127.0.0.1:$CUR_PORT" --secrets_json="$CUR_SECRETS" \
      --count="$IDLE_N" --timeout_s=120 --hold_s=300 \
      >"$CUR_DIR/idle.out" 2>"$CUR_DIR/idle.err" </dev/null &
    IDLE_PID=$!
    ok=0
    for _ in $(seq 1300); do  # at most ~130 s
      if grep -q '^ready' "$CUR_DIR/idle.out" 2>/dev/null; then ok=1; break; fi
      alive "$IDLE_PID" || break
      sleep 0.1
    done
    if [ $ok = 1 ]; then
      sleep 1
      after1=$(rss_bytes "$CUR_PID")
      after5=$(settled_rss "$CUR_PID")
      alive "$IDLE_PID" || ok=0  # a connection closed by the server ends it early
    fi
    stop_idle
    if [ $ok = 1 ]; then
      printf 'idle\t%s\t%s\t%s\t%s\t%s\n' "$kind" "$IDLE_N" "$before" "$after1" "$after5" >>"$RESULTS"
      log "$kind: VmRSS $before -> $after1 (1 s) -> $after5 (settled) bytes with $IDLE_N idle components"
    else
      log "$kind: idle components failed: $(tail -c 600 "$CUR_DIR/idle.err")"
      printf 'idle\t%s\t%s\tFAILED (%s)\n' "$kind" "$IDLE_N" \
        "$(tail -n 1 "$CUR_DIR/idle.err" | tr '\t' ' ' | cut -c1-200)" >>"$RESULTS"
    fi
    stop_server
  done
fi

# ------------------------------------------------------------------ report
/usr/bin/python3 - "$RESULTS" <<'PY'
import json, sys
thr, idle = [], []
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    (thr if f[0] == "throughput" else idle).append(f[1:])

def fmt(x):
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    return f"{x / 1e3:.1f} k" if x >= 1e4 else f"{x:,.0f}"

if thr:
    print()
    print("| round | bridges | server | stanzas/s | per bridge min–max | server CPU (cores) "
          "| machine busy (cores) | client CPU | errors |")
    print("|---|---|---|---|---|---|---|---|---|")
rates = {}  # (round, n) -> {kind: rate}
for f in thr:
    rnd, kind, n = int(f[0]), f[1], int(f[2])
    if f[3].startswith("FAILED"):
        print(f"| {rnd} | {n} | {kind} | {f[3]} | | | | | |")
        continue
    r = json.loads(f[5])
    rates.setdefault((rnd, n), {})[kind] = r["stanzas_per_s"]
    if "error_replies" in r:  # stanza-bench before the loss accounting
        errors = f"{r['error_replies']} error replies"
    else:
        errors = (f"{r.get('bounced', '?')} bounced, {r.get('lost', '?')} lost, "
                  f"{r.get('duplicated', '?')} duplicated")
    print(f"| {rnd} | {n} | {kind} | {fmt(r['stanzas_per_s'])} | {fmt(r['per_bridge_min_per_s'])}–"
          f"{fmt(r['per_bridge_max_per_s'])} | {f[3]} | {f[4]} | {r['client_cpu_busy_fraction']:.2f} | "
          f"{errors} |")

def ratio_line(label, by_kind):
    others = {k: v for k, v in by_kind.items() if k != "stanzad"}
    if "stanzad" not in by_kind or not others:
        return
    best = max(others, key=others.get)
    ratio = by_kind["stanzad"] / others[best] if others[best] else float("inf")
    print(f"{label}: stanzad {fmt(by_kind['stanzad'])} / {best} {fmt(others[best])} "
          f"(the faster other) = {ratio:.1f}x (goal >= 10x: {'met' if ratio >= 10 else 'NOT met'})")

if rates:
    print()
for (rnd, n) in sorted(rates):
    ratio_line(f"round {rnd}, {n} bridges", rates[(rnd, n)])
best = {}
for (rnd, n), by_kind in rates.items():
    for kind, v in by_kind.items():
        best.setdefault(n, {})[kind] = max(v, best.get(n, {}).get(kind, 0))
for n in sorted(best):
    ratio_line(f"best of the rounds, {n} bridges", best[n])
if idle:
    print()
    print("| server | idle components | VmRSS before | after (1 s) | per component (1 s) "
          "| per component (settled) |")
    print("|---|---|---|---|---|---|")
    for f in idle:
        kind, n = f[0], int(f[1])
        if f[2].startswith("FAILED"):
            print(f"| {kind} | {n} | {f[2]} | | | |")
            continue
        b, a1, a5 = int(f[2]), int(f[3]), int(f[4])
        print(f"| {kind} | {n} | {b / 1e6:.1f} MB | {a1 / 1e6:.1f} MB | {(a1 - b) / n:,.0f} B | "
              f"{(a5 - b) / n:,.0f} B |")
PY
echo
echo "raw results: $RESULTS"
