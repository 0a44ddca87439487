#!/bin/bash
# Clients over TLS: stanzad vs Prosody 0.12 and ejabberd 23.01 (Debian 12), in one run.
#
#   sudo bench/compare_c2s.sh          (from the repository root, as root)
#
# Every server serves example.com on free 127.0.0.1 ports: clients on a c2s port
# (STARTTLS required, the same self-signed certificate made once with `stanzactl pki
# selfsigned`), users u0..u{USERS-1} with one password (SCRAM-SHA-1 keys stored, 4096
# iterations, one salt), and components b0..b{BRIDGES-1}.example.com on a component
# port. Loads (c2s-bench, one epoll thread, our TLS and SASL client code):
#
#   logins   $LOGINS logins, $CONCURRENCY at a time: connect, STARTTLS, TLS, SASL
#            ($MECHANISM), bind, clean close. Logins/s, p50/p99 login latency.
#   stanzas  $CLIENTS clients logged in, sending to the $BRIDGES components in turn,
#            $WINDOW each in flight (closed loop), $WARMUP_S s warm-up, $DURATION_S s
#            measured: stanzas/s arriving at the components; lost and duplicated ids.
#   idle     for each N in $IDLE_N: a fresh server, its VmRSS once steady, N clients
#            logged in and held, VmRSS 1 s after the last login and once steady again:
#            (after - before) / N.
#
# In each of $ROUNDS rounds every server is started fresh and takes the logins and then
# the stanzas load (rounds interleave the servers, so that load from elsewhere on this
# shared machine falls on all alike); then the idle runs, each on a fresh server. The
# server's CPU time over each load is read from /proc, and so is the whole machine's.
#
# The servers (what is set for fairness; everything else is each one's default):
#   stanzad   --threads=2; users added over the admin socket (`user add NAME
#             CREDENTIALS`, the text `c2s-bench --print_credentials` prints, as `stanzactl
#             user add` would store it), bridges with `stanzactl callbridge add`.
#   prosody   c2s with mod_tls and mod_saslauth (no mod_limits: no c2s rate limit), the
#             components, internal_hashed accounts written as its data files (the same
#             salt, iteration count and keys), network_backend epoll, tcp_backlog 1024.
#   ejabberd  an ejabberd_c2s listener (starttls_required, shaper none, max_stanza_size
#             256 KiB) and an ejabberd_service listener (one password, global_routes
#             false), no modules, no shapers or shaper_rules (so no c2s_shaper and no
#             max_user_sessions), auth internal with scram passwords loaded into Mnesia
#             with `ejabberdctl load` (the same salt, iteration count and keys).
# Prosody and ejabberd run as their Debian users, installed and started and stopped
# with bench/other_servers.sh's machinery (install, stop, its ejabberdctl wrapper);
# their configurations are written here.
#
# Environment (defaults): STANZAD_BIN_DIR (build/cmd), C2S_BENCH (build/bench/c2s-bench),
# SERVERS ("stanzad prosody ejabberd"), ROUNDS (2), LOGINS (2000), CONCURRENCY (50),
# CLIENTS (200; 0 skips the stanzas load), BRIDGES (10), DURATION_S (10), WARMUP_S (1),
# WINDOW (8), MECHANISM (SCRAM-SHA-1), IDLE_N ("10000"; empty skips), IDLE_CONCURRENCY
# (50), OUT_DIR (a new /tmp/compare-c2s.*). Results: $OUT_DIR/results.tsv and the
# tables printed at the end. Everything listens on 127.0.0.1 only; every wait is bounded,
# and every process started here is stopped by PID on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd -P)
STANZAD_BIN_DIR=${STANZAD_BIN_DIR:-build/cmd}
C2S_BENCH=${C2S_BENCH:-build/bench/c2s-bench}
SERVERS=${SERVERS:-stanzad prosody ejabberd}
ROUNDS=${ROUNDS:-2}
LOGINS=${LOGINS:-2000}
CONCURRENCY=${CONCURRENCY:-50}
CLIENTS=${CLIENTS:-200}
BRIDGES=${BRIDGES:-10}
DURATION_S=${DURATION_S:-10}
WARMUP_S=${WARMUP_S:-1}
WINDOW=${WINDOW:-8}
MECHANISM=${MECHANISM:-SCRAM-SHA-1}
IDLE_N=${IDLE_N-10000}
IDLE_CONCURRENCY=${IDLE_CONCURRENCY:-50}
OTHERS=$ROOT/bench/other_servers.sh
DOMAIN=example.com
PASSWORD=bench-password
SECRET=bench$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')

die() { echo "compare_c2s.sh: $*" >&2; exit 1; }
log() { echo "compare_c2s.sh: $*" >&2; }

[ "$(id -u)" = 0 ] || die "needs root (the other servers run as their Debian users)"
STANZAD=$(readlink -f "$STANZAD_BIN_DIR/stanzad") || true
STANZACTL=$(readlink -f "$STANZAD_BIN_DIR/stanzactl") || true
C2S_BENCH=$(readlink -f "$C2S_BENCH") || true
for b in "$STANZAD" "$STANZACTL" "$C2S_BENCH"; do
  [ -x "$b" ] || die "no executable $b (set STANZAD_BIN_DIR / C2S_BENCH)"
done
for n in $ROUNDS $LOGINS $CONCURRENCY $CLIENTS $BRIDGES $DURATION_S $WARMUP_S $WINDOW \
         $IDLE_CONCURRENCY $IDLE_N; do
  [[ $n =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "bad number $n"
done
case $MECHANISM in SCRAM-SHA-1|PLAIN) ;; *) die "MECHANISM must be SCRAM-SHA-1 or PLAIN (what all three share)";; esac
case " $SERVERS " in *" prosody "*|*" ejabberd "*)
  if ! [ -x /usr/bin/prosody ] || ! [ -x /usr/sbin/ejabberdctl ]; then "$OTHERS" install; fi;;
esac
# Users for the logins and stanzas loads (login k is user k % USERS; client k is user k);
# an idle run with N clients starts its server with N users.
LOAD_USERS=$(printf '%s\n' "$LOGINS" "$CLIENTS" 1 | sort -n | tail -n 1)
USERS=$LOAD_USERS
MOST_USERS=$(printf '%s\n' "$LOAD_USERS" $IDLE_N | sort -n | tail -n 1)

if [ -z "${OUT_DIR:-}" ]; then OUT_DIR=$(mktemp -d /tmp/compare-c2s.XXXXXX); fi
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd -P)
chmod 755 "$OUT_DIR"  # the prosody and ejabberd users must reach their directories
RESULTS=$OUT_DIR/results.tsv
: >"$RESULTS"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((MOST_USERS + 1000)) ] || die "ulimit -n is $(ulimit -n); need $((MOST_USERS + 1000))"

# The certificate every server presents, and the credentials text for stanzad.
PKI=$OUT_DIR/pki
rm -rf "$PKI" && mkdir -p "$PKI"
(cd "$PKI" && timeout 60 "$STANZACTL" pki selfsigned xmpp "CN:$DOMAIN" "subjectAltName:$DOMAIN" \
   days:30 >/dev/null 2>&1) || die "stanzactl pki selfsigned failed"
[ -s "$PKI/xmpp.key" ] && [ -s "$PKI/xmpp.crt" ] || die "no $PKI/xmpp.key and xmpp.crt"
CREDENTIALS=$("$C2S_BENCH" --print_credentials="$PASSWORD")

# The server running now: kind, directory, PID (for /proc), ports, bridge secrets file.
CUR_KIND="" CUR_DIR="" CUR_PID="" CUR_C2S="" CUR_COMP="" CUR_SECRETS="" BENCH_PID=""

# free_port, alive, cpu_seconds, machine_busy_seconds, rss_bytes, settled_rss
. bench/proc_lib.sh

# probe PORT KIND: the server answers a client stream (KIND c2s: with <starttls/>) or a
# component stream for b{BRIDGES-1} (KIND component: with a stream id); at most 5 s.
probe() {
  timeout 10 /usr/bin/python3 - "$1" "$2" "b$((BRIDGES - 1)).$DOMAIN" "$DOMAIN" <<'PY'
import re, socket, sys, time
port, kind, component, domain = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
deadline = time.time() + 5
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    if kind == "c2s":
        s.sendall(("<?xml version='1.0'?><stream:stream to='%s' version='1.0' xmlns='jabber:client' "
                   "xmlns:stream='http://etherx.jabber.org/streams'>" % domain).encode())
        want = rb"<starttls"
    else:
        s.sendall(("<stream:stream xmlns='jabber:component:accept' "
                   "xmlns:stream='http://etherx.jabber.org/streams' to='%s'>" % component).encode())
        want = rb"<stream:stream[^>]*\sid="
    buf = b""
    while not re.search(want, buf) and time.time() < deadline:
        s.settimeout(max(0.1, deadline - time.time()))
        d = s.recv(65536)
        if not d:
            break
        buf += d
    try:
        s.sendall(b"</stream:stream>")
    except OSError:
        pass
    s.close()
    sys.exit(0 if re.search(want, buf) and b"stream:error" not in buf else 1)
except OSError:
    sys.exit(1)
PY
}

# wait_serving PID: both ports answer (at most 120 s + 10 ms per user).
wait_serving() {
  local deadline=$((SECONDS + 120 + USERS / 100))
  while [ $SECONDS -lt $deadline ]; do
    alive "$1" || { log "$CUR_KIND exited"; return 1; }
    if probe "$CUR_C2S" c2s && probe "$CUR_COMP" component; then return 0; fi
    sleep 0.2
  done
  log "$CUR_KIND does not answer on 127.0.0.1:$CUR_C2S and :$CUR_COMP"
  return 1
}

stop_bench() {
  [ -n "$BENCH_PID" ] || return 0
  kill -TERM "$BENCH_PID" 2>/dev/null || true
  for _ in $(seq 100); do alive "$BENCH_PID" || break; sleep 0.1; done
  if alive "$BENCH_PID"; then kill -KILL "$BENCH_PID" 2>/dev/null || true; fi
  wait "$BENCH_PID" 2>/dev/null || true
  BENCH_PID=""
}

stop_server() {
  [ -n "$CUR_KIND" ] || return 0
  case $CUR_KIND in
    stanzad)
      if [ -n "$CUR_PID" ]; then
        kill -TERM "$CUR_PID" 2>/dev/null || true
        for _ in $(seq 100); do alive "$CUR_PID" || break; sleep 0.1; done
        if alive "$CUR_PID"; then log "stanzad did not exit on SIGTERM; SIGKILL"; kill -KILL "$CUR_PID" 2>/dev/null || true; fi
        wait "$CUR_PID" 2>/dev/null || true
      fi
      ;;
    *) timeout 120 "$OTHERS" stop "$CUR_KIND" "$CUR_DIR" || log "stopping $CUR_KIND failed";;
  esac
  CUR_KIND="" CUR_PID=""
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_bench
  stop_server
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------ stanzad

# Adds users u0..u{N-1} with CREDENTIALS over the admin socket (the protocol stanzactl
# speaks; one process instead of N).
stanzad_add_users() {
  timeout $((300 + USERS / 10)) /usr/bin/python3 - "$1/stanzad.sock" "$USERS" "$CREDENTIALS" <<'PY'
import socket, sys, time
path, count, credentials = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def admin(*args):
    request = b"stanzactl 1\njson 0\n"
    for arg in args:
        data = arg.encode()
        request += b"arg %d\n%s\n" % (len(data), data)
    request += b"end\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(60)
        s.connect(path)
        s.sendall(request)
        response = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            response += chunk
    header, _, body = response.partition(b"\n")
    return int(header.split()[1]), body.decode()
start = time.time()
for i in range(count):
    code, out = admin("user", "add", f"u{i}", credentials)
    if code != 0:
        sys.exit(f"user add u{i}: {out}")
print(f"{count} users added in {time.time() - start:.1f} s", file=sys.stderr)
PY
}

start_stanzad() {
  local dir=$1
  "$STANZAD" --state_dir="$dir/state" --domain="$DOMAIN" --listen=127.0.0.1 \
    --c2s_port="$CUR_C2S" --component_port="$CUR_COMP" --threads=2 \
    --connections_max=$((USERS + BRIDGES + 1000)) --preauth_connections_per_ip_max=0 \
    --metrics_addr="127.0.0.1:$(free_port)" \
    --cluster_port="$(free_port)" --log_level=warning </dev/null >"$dir/stanzad.log" 2>&1 &
  CUR_PID=$!
  local ok=0
  for _ in $(seq 100); do
    if timeout 5 "$STANZACTL" --state_dir="$dir/state" status >/dev/null 2>&1; then ok=1; break; fi
    alive "$CUR_PID" || break
    sleep 0.1
  done
  [ $ok = 1 ] || { log "stanzad does not answer:"; tail -n 20 "$dir/stanzad.log" >&2; return 1; }
  timeout 30 "$STANZACTL" --state_dir="$dir/state" certs "$PKI/xmpp.key" "$PKI/xmpp.crt" \
    >/dev/null || { log "stanzactl certs failed"; return 1; }
  local i
  for ((i = 0; i < BRIDGES; i++)); do
    timeout 30 "$STANZACTL" --state_dir="$dir/state" callbridge add "b$i" >/dev/null ||
      { log "callbridge add b$i failed"; return 1; }
  done
  timeout 30 "$STANZACTL" --state_dir="$dir/state" --json callbridge list >"$CUR_SECRETS"
  stanzad_add_users "$dir/state" || { log "adding users failed"; return 1; }
}

# ------------------------------------------------------------------------------ prosody

# Prosody's internal_hashed account files for u0..u{N-1}: SCRAM-SHA-1 salt, iteration
# count, StoredKey and ServerKey (hex) taken from CREDENTIALS, so all three servers hold
# the same keys.
prosody_accounts() {
  /usr/bin/python3 - "$1" "$USERS" "$CREDENTIALS" <<'PY'
import base64, os, sys
directory, count, credentials = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sha1 = next(v for v in credentials.split() if v.startswith("SCRAM-SHA-1$"))
iterations, rest = sha1[len("SCRAM-SHA-1$"):].split(":", 1)
salt64, keys = rest.split("$", 1)
stored64, server64 = keys.split(":")
salt = base64.b64decode(salt64).decode("ascii")  # c2s-bench's salts are printable ASCII
assert all(c.isalnum() or c in "-_" for c in salt)
text = ('return {\n\t["iteration_count"] = %d;\n\t["salt"] = "%s";\n\t["server_key"] = "%s";\n'
        '\t["stored_key"] = "%s";\n};\n' % (int(iterations), salt,
                                           base64.b64decode(server64).hex(),
                                           base64.b64decode(stored64).hex()))
os.makedirs(directory, exist_ok=True)
for i in range(count):
    with open(os.path.join(directory, f"u{i}.dat"), "w") as f:
        f.write(text)
PY
}

start_prosody() {
  local dir=$1 i
  mkdir -p "$dir/data" "$dir/certs"
  cp "$PKI/xmpp.key" "$PKI/xmpp.crt" "$dir/certs/"
  {
    cat <<EOF
-- Written by bench/compare_c2s.sh: clients on 127.0.0.1:$CUR_C2S (STARTTLS required),
-- $BRIDGES XEP-0114 components on 127.0.0.1:$CUR_COMP.
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
log = { warn = "$dir/prosody.log" }
-- TLS and SASL for clients; nothing else (no mod_limits: clients are not rate limited).
modules_enabled = { "tls", "saslauth" }
modules_disabled = { "s2s", "s2s_auth_certs", "offline" }
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { $CUR_C2S }
c2s_interfaces = { "127.0.0.1" }
component_ports = { $CUR_COMP }
component_interfaces = { "127.0.0.1" }
s2s_ports = { }
http_ports = { }
https_ports = { }
c2s_direct_tls_ports = { }
s2s_direct_tls_ports = { }
network_backend = "epoll"
network_settings = { tcp_backlog = 1024 }
c2s_require_encryption = true
authentication = "internal_hashed"
ssl = { key = "$dir/certs/xmpp.key", certificate = "$dir/certs/xmpp.crt" }

VirtualHost "$DOMAIN"

EOF
    for ((i = 0; i < BRIDGES; i++)); do
      printf 'Component "b%d.%s"\n\tcomponent_secret = "%s"\n' "$i" "$DOMAIN" "$SECRET"
    done
  } >"$dir/prosody.cfg.lua"
  prosody_accounts "$dir/data/example%2ecom/accounts"
  chown -R prosody: "$dir"
  setpriv --reuid=prosody --regid=prosody --init-groups -- \
    /usr/bin/env HOME="$dir/data" /usr/bin/prosody -F --config "$dir/prosody.cfg.lua" \
    </dev/null >"$dir/prosody.stdout" 2>&1 &
  CUR_PID=$!
  echo "$CUR_PID" >"$dir/prosody.pid.start"  # what other_servers.sh stop reads
}

# ------------------------------------------------------------------------------ ejabberd

start_ejabberd() {
  local dir=$1 e=$1/ejabberd
  mkdir -p "$e/log" "$e/db" "$e/home" "$e/modules.d" "$e/contrib"
  cat "$PKI/xmpp.key" "$PKI/xmpp.crt" >"$e/xmpp.pem"
  local dist_port cookie node
  dist_port=$(free_port)
  cookie=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  node="c2s_${CUR_C2S}_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')@localhost"
  echo "$node" >"$e/node"
  # As other_servers.sh: names from the hosts file only, no epmd, distribution on 127.0.0.1.
  cat >"$e/inetrc" <<'EOF'
{lookup, [file]}.
{resolv_conf, ""}.
{nameserver, {127,0,0,1}, 53}.
{host, {127,0,0,1}, ["localhost"]}.
EOF
  cat >"$e/ejabberdctl.cfg" <<EOF
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 -setcookie $cookie -kernel inet_dist_use_interface {127,0,0,1}"
ERL_DIST_PORT=$dist_port
ERLANG_NODE=$node
EJABBERD_PID_PATH=$e/ejabberd.pid
CONTRIB_MODULES_PATH=$e/contrib
CONTRIB_MODULES_CONF_DIR=$e/modules.d
EJABBERD_BYPASS_WARNINGS=true
EOF
  cat >"$e/ejabberd.yml" <<EOF
# Written by bench/compare_c2s.sh: clients on 127.0.0.1:$CUR_C2S (STARTTLS required),
# XEP-0114 components on 127.0.0.1:$CUR_COMP.
hosts:
  - $DOMAIN
loglevel: warning
log_rotate_count: 1
log_rotate_size: 104857600
certfiles:
  - "$e/xmpp.pem"
acme:
  auto: false
listen:
  -
    port: $CUR_C2S
    ip: "127.0.0.1"
    module: ejabberd_c2s
    backlog: 1024
    starttls_required: true
    # No traffic shaping of clients (the default config's c2s_shaper would be 1000 B/s).
    shaper: none
    max_stanza_size: 262144
  -
    port: $CUR_COMP
    ip: "127.0.0.1"
    module: ejabberd_service
    backlog: 1024
    global_routes: false
    password: "$SECRET"
auth_method: internal
auth_password_format: scram
s2s_access: none
# No shapers, no shaper_rules: no max_user_sessions, no c2s_shaper.
modules: {}
EOF
  chown -R ejabberd: "$dir"
  (cd "$e/db" && exec setpriv --reuid=ejabberd --regid=ejabberd --init-groups -- \
      env HOME="$e/home" /usr/sbin/ejabberdctl \
      --config-dir "$e" --ctl-config "$e/ejabberdctl.cfg" --config "$e/ejabberd.yml" \
      --logs "$e/log" --spool "$e/db" --node "$node" foreground) \
    </dev/null >"$e/foreground.out" 2>&1 &
  local ctl_pid=$! beam_pid="" deadline=$((SECONDS + 60)) c
  echo "$ctl_pid" >"$e/ctl.pid"
  while [ -z "$beam_pid" ]; do
    for c in $(pgrep -P "$ctl_pid" 2>/dev/null || true); do
      [ "$(cat "/proc/$c/comm" 2>/dev/null)" = beam.smp ] && beam_pid=$c
    done
    [ -n "$beam_pid" ] && break
    if ! alive "$ctl_pid" || [ $SECONDS -ge $deadline ]; then
      log "ejabberd's beam.smp did not start:"; tail -n 30 "$e/foreground.out" >&2 || true
      return 1
    fi
    sleep 0.05
  done
  echo "$beam_pid" >"$e/beam.pid"  # what other_servers.sh stop reads
  CUR_PID=$beam_pid
}

# Users u0..u{N-1} with scram passwords (the same salt, iteration count and keys as the
# others), loaded into the running node's Mnesia passwd table from a text file.
ejabberd_add_users() {
  local dir=$1 file=$1/ejabberd/users.mnesia
  /usr/bin/python3 - "$file" "$USERS" "$CREDENTIALS" "$DOMAIN" <<'PY'
import base64, sys
path, count, credentials, domain = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
sha1 = next(v for v in credentials.split() if v.startswith("SCRAM-SHA-1$"))
iterations, rest = sha1[len("SCRAM-SHA-1$"):].split(":", 1)
salt64, keys = rest.split("$", 1)
stored64, server64 = keys.split(":")
# ejabberd 23.01: #passwd{us = {User, Server}, password = #scram{storedkey, serverkey, salt,
# hash, iterationcount}}, the keys and salt in base64 as binaries.
with open(path, "w") as f:
    f.write("{tables,[{passwd,[{record_name,passwd},{attributes,[us,password]}]}]}.\n")
    for i in range(count):
        f.write('{passwd,{<<"u%d">>,<<"%s">>},{scram,<<"%s">>,<<"%s">>,<<"%s">>,sha,%d}}.\n'
                % (i, domain, stored64, server64, salt64, int(iterations)))
PY
  chown ejabberd: "$file"
  local out
  out=$(cd "$dir/ejabberd/db" && timeout 300 "$OTHERS" __ejabberdctl "$dir" load "$file" 2>&1) ||
    { log "ejabberdctl load failed: $out"; return 1; }
  out=$(cd "$dir/ejabberd/db" && timeout 60 "$OTHERS" __ejabberdctl "$dir" registered_users \
        "$DOMAIN" 2>&1) || { log "ejabberdctl registered_users failed: $out"; return 1; }
  [ "$(grep -c '^u[0-9]' <<<"$out")" = "$USERS" ] ||
    { log "ejabberd lists $(grep -c '^u[0-9]' <<<"$out") users after the load, not $USERS"; return 1; }
}

# ------------------------------------------------------------------------------ start

# start_server KIND TAG USERS: a fresh KIND with USERS users, the bridges and the certificate.
start_server() {
  local kind=$1 tag=$2
  USERS=$3
  CUR_DIR=$OUT_DIR/$kind-$tag
  rm -rf "$CUR_DIR" && mkdir -p "$CUR_DIR"
  chmod 755 "$CUR_DIR"
  CUR_C2S=$(free_port) CUR_COMP=$(free_port)
  CUR_SECRETS=$CUR_DIR/secrets.json CUR_KIND=$kind
  local t0=$SECONDS
  case $kind in
    stanzad) start_stanzad "$CUR_DIR" || return 1;;
    prosody) start_prosody "$CUR_DIR" || return 1;;
    ejabberd) start_ejabberd "$CUR_DIR" || return 1;;
    *) die "unknown server $kind";;
  esac
  wait_serving "$CUR_PID" || return 1
  if [ "$kind" = ejabberd ]; then ejabberd_add_users "$CUR_DIR" || return 1; fi
  log "$kind ($tag) serving with $USERS users and $BRIDGES bridges after $((SECONDS - t0)) s (pid $CUR_PID)"
}

# The c2s-bench flags every load shares.
bench_flags() {
  local flags=(--server="127.0.0.1:$CUR_C2S" --domain="$DOMAIN" --user_prefix=u
               --users="$USERS" --password="$PASSWORD" --mechanism="$MECHANISM")
  printf '%s\n' "${flags[@]}"
}

# run_load ROUND KIND LOAD ARGS...: c2s-bench with the server's CPU use around it.
run_load() {
  local round=$1 kind=$2 load=$3; shift 3
  local limit=$((200 + ${DURATION_S%.*} + LOGINS / 10))
  local before busy0 t0 line after busy1 t1 cores machine
  before=$(cpu_seconds "$CUR_PID") busy0=$(machine_busy_seconds) t0=$(date +%s.%N)
  if line=$(timeout "$limit" "$C2S_BENCH" $(bench_flags) "$@" 2>"$CUR_DIR/$load.err"); then
    after=$(cpu_seconds "$CUR_PID") busy1=$(machine_busy_seconds) t1=$(date +%s.%N)
    cores=$(awk -v a="$after" -v b="$before" -v t0="$t0" -v t1="$t1" 'BEGIN {printf "%.2f", (a - b) / (t1 - t0)}')
    machine=$(awk -v a="$busy1" -v b="$busy0" -v t0="$t0" -v t1="$t1" 'BEGIN {printf "%.2f", (a - b) / (t1 - t0)}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$load" "$round" "$kind" "$cores" "$machine" "$line" >>"$RESULTS"
    log "round $round, $kind, $load: $line (server $cores cores, machine $machine cores busy)"
  else
    log "round $round, $kind, $load: c2s-bench failed: $(tail -c 600 "$CUR_DIR/$load.err")"
    printf '%s\t%s\t%s\tFAILED (%s)\n' "$load" "$round" "$kind" \
      "$(tail -n 1 "$CUR_DIR/$load.err" | tr '\t' ' ' | cut -c1-200)" >>"$RESULTS"
  fi
}

# ------------------------------------------------------------------------------ loads
for round in $(seq "$ROUNDS"); do
  for kind in $SERVERS; do
    log "round $round, $kind: starting"
    if ! start_server "$kind" "r$round" "$LOAD_USERS"; then
      stop_server
      printf 'logins\t%s\t%s\tFAILED (server did not start)\n' "$round" "$kind" >>"$RESULTS"
      continue
    fi
    if [ "$LOGINS" -gt 0 ]; then
      run_load "$round" "$kind" logins --mode=logins --logins="$LOGINS" \
        --concurrency="$CONCURRENCY"
    fi
    if [ "$CLIENTS" -gt 0 ]; then
      if [ "$kind" = stanzad ]; then bridges=(--secrets_json="$CUR_SECRETS")
      else bridges=(--bridge_prefix=b --bridge_secret="$SECRET"); fi
      run_load "$round" "$kind" stanzas --mode=stanzas --clients="$CLIENTS" \
        --concurrency="$CONCURRENCY" --bridges="$BRIDGES" \
        --component_server="127.0.0.1:$CUR_COMP" "${bridges[@]}" --window="$WINDOW" \
        --seconds="$DURATION_S" --warmup_s="$WARMUP_S" --connect_timeout_s=120
    fi
    stop_server
  done
done

# ------------------------------------------------------------------------------ idle memory
for n in $IDLE_N; do
  for kind in $SERVERS; do
    log "$kind, $n idle clients: starting"
    if ! start_server "$kind" "idle$n" "$n"; then
      stop_server
      printf 'idle\t%s\t%s\tFAILED (server did not start)\n' "$n" "$kind" >>"$RESULTS"
      continue
    fi
    before=$(settled_rss "$CUR_PID")
    "$C2S_BENCH" $(bench_flags) --mode=idle --clients="$n" --concurrency="$IDLE_CONCURRENCY" \
      --hold_s=600 --connect_timeout_s=400 \
      >"$CUR_DIR/idle.out" 2>"$CUR_DIR/idle.err" </dev/null &
    BENCH_PID=$!
    ok=0
    for _ in $(seq 4200); do  # at most ~420 s
      if grep -q "^idle: $n clients logged in" "$CUR_DIR/idle.out" 2>/dev/null; then ok=1; break; fi
      alive "$BENCH_PID" || break
      sleep 0.1
    done
    if [ $ok = 1 ]; then
      sleep 1
      after1=$(rss_bytes "$CUR_PID")
      after5=$(settled_rss "$CUR_PID")
      alive "$BENCH_PID" || ok=0  # a client dropped by the server ends it early
    fi
    stop_bench
    if [ $ok = 1 ]; then
      printf 'idle\t%s\t%s\t%s\t%s\t%s\n' "$n" "$kind" "$before" "$after1" "$after5" >>"$RESULTS"
      log "$kind: VmRSS $before -> $after1 (1 s) -> $after5 (settled) bytes with $n idle clients"
    else
      log "$kind: idle clients failed: $(tail -c 600 "$CUR_DIR/idle.err") $(tail -c 200 "$CUR_DIR/idle.out")"
      printf 'idle\t%s\t%s\tFAILED (%s)\n' "$n" "$kind" \
        "$(tail -n 1 "$CUR_DIR/idle.err" | tr '\t' ' ' | cut -c1-200)" >>"$RESULTS"
    fi
    stop_server
  done
done

# ------------------------------------------------------------------------------ report
/usr/bin/python3 - "$RESULTS" <<'PY'
import json, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]

def fmt(x):
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    return f"{x / 1e3:.1f} k" if x >= 1e4 else f"{x:,.0f}"

def ratio_lines(label, by_kind, goal):
    others = {k: v for k, v in by_kind.items() if k != "stanzad"}
    if "stanzad" not in by_kind or not others:
        return
    best = max(others, key=others.get)
    ratio = by_kind["stanzad"] / others[best] if others[best] else float("inf")
    print(f"{label}: stanzad {fmt(by_kind['stanzad'])} / {best} {fmt(others[best])} "
          f"(the faster peer) = {ratio:.1f}x (goal >= {goal}x: {'met' if ratio >= goal else 'NOT met'})")

for load, unit, key in (("logins", "logins/s", "logins_per_s"),
                        ("stanzas", "stanzas/s", "stanzas_per_s")):
    mine = [r for r in rows if r[0] == load]
    if not mine:
        continue
    print()
    if load == "logins":
        print("| round | server | logins/s | p50 / p99 login ms | failed | server CPU (cores) "
              "| machine busy | client CPU |")
    else:
        print("| round | server | stanzas/s | per bridge min–max | sent / lost / dup / bounced "
              "| server CPU (cores) | machine busy | client CPU |")
    print("|---|---|---|---|---|---|---|---|")
    rates = {}
    for r in mine:
        rnd, kind = int(r[1]), r[2]
        if r[3].startswith("FAILED"):
            print(f"| {rnd} | {kind} | {r[3]} | | | | | |")
            continue
        j = json.loads(r[5])
        rates.setdefault(rnd, {})[kind] = j[key]
        if load == "logins":
            print(f"| {rnd} | {kind} | {fmt(j[key])} | {j['login_p50_ms']:.1f} / "
                  f"{j['login_p99_ms']:.1f} | {j['failed']} {json.dumps(j['failures']) if j['failures'] else ''} "
                  f"| {r[3]} | {r[4]} | {j['client_cpu_busy_fraction']:.2f} |")
        else:
            print(f"| {rnd} | {kind} | {fmt(j[key])} | {fmt(j['per_bridge_min_per_s'])}–"
                  f"{fmt(j['per_bridge_max_per_s'])} | {j['sent']:,} / {j['lost']} / "
                  f"{j['duplicated']} / {j['bounced']} | {r[3]} | {r[4]} | "
                  f"{j['client_cpu_busy_fraction']:.2f} |")
    print()
    for rnd in sorted(rates):
        ratio_lines(f"{load}, round {rnd}", rates[rnd], 5)
    best = {}
    for by_kind in rates.values():
        for kind, v in by_kind.items():
            best[kind] = max(v, best.get(kind, 0))
    ratio_lines(f"{load}, best of the rounds", best, 5)

idle = [r for r in rows if r[0] == "idle"]
if idle:
    print()
    print("| server | idle TLS clients | VmRSS before | after (1 s) | per client (1 s) "
          "| per client (settled) |")
    print("|---|---|---|---|---|---|")
    for r in idle:
        n, kind = int(r[1]), r[2]
        if r[3].startswith("FAILED"):
            print(f"| {kind} | {n} | {r[3]} | | | |")
            continue
        b, a1, a5 = int(r[3]), int(r[4]), int(r[5])
        print(f"| {kind} | {n} | {b / 1e6:.1f} MB | {a1 / 1e6:.1f} MB | {(a1 - b) / n:,.0f} B | "
              f"{(a5 - b) / n:,.0f} B |")
        if kind == "stanzad":
            per = (a5 - b) / n
            print(f"stanzad, {n} clients: {per / 1024:.1f} KiB per idle TLS client "
                  f"(goal <= 24 KiB: {'met' if per <= 24 * 1024 else 'NOT met'})")
PY
echo
echo "raw results: $RESULTS"
