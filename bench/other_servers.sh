#!/bin/bash
# Installs, configures, starts and stops the servers stanzad is compared with
# (issue 4, "Benchmarks"): Prosody 0.12 and ejabberd 23.01, both from Debian 12.
# Each instance is a set of XEP-0114 components b0.example.com .. b{N-1}.example.com
# with one shared secret, accepting component connections on 127.0.0.1:PORT only.
#
#   bench/other_servers.sh install
#       apt-get install -y prosody ejabberd (skipped when both are installed), then
#       stops and disables the Debian system services (prosody, ejabberd, epmd) so that
#       nothing but the instances started below runs.
#   bench/other_servers.sh start prosody|ejabberd DIR PORT N SECRET
#       Writes the config into DIR (a fresh directory; it is chowned to the server's
#       unprivileged user), starts the server in the background as that user, waits
#       until it listens on 127.0.0.1:PORT and answers a component stream opened to
#       b{N-1} with its stream header (at most $OTHER_SERVERS_START_TIMEOUT_S, default
#       60 s + 10 ms per component), and prints the PID to measure (prosody: the lua5.4
#       process; ejabberd: the beam.smp process).  Exit status 0 only when ready; on
#       failure it prints the logs' tails and stops what it started.
#   bench/other_servers.sh stop prosody|ejabberd DIR
#       Stops the instance started with that DIR (prosody: SIGTERM to its PID;
#       ejabberd: `ejabberdctl stop` for its node, SIGTERM/SIGKILL if that fails) and
#       waits (bounded) until its processes have exited.
#   bench/other_servers.sh secrets N SECRET
#       Prints the JSON that stanza-bench --secrets_json reads for these components.
#
# Nothing listens on other ports except, for ejabberd, the Erlang distribution port
# (127.0.0.1, a free ephemeral port, cookie random per instance) that ejabberdctl
# uses to stop the node.  ejabberd runs without epmd (-erl_epmd_port, OTP >= 23), so
# no epmd is started.  c2s, s2s and HTTP are not loaded / not listening, and nothing
# is sent off the machine: Prosody has no s2s; ejabberd has s2s_access none and an
# Erlang resolver that reads no resolv.conf and would only ask 127.0.0.1.
#
# ejabberd's listener has one shared password and no list of hosts, so it accepts
# any component name with SECRET (a listed host's process keeps the whole list:
# about 300 KB per connection with 2,000 listed).  OTHER_SERVERS_EJABBERD_HOSTS_LIST=1
# lists b0..b{N-1} with their password instead.
#
# Environment: OTHER_SERVERS_LOGLEVEL=warn|info|debug (default warn; below debug no
# delivered stanza is logged, but Prosody logs each one it bounces),
# OTHER_SERVERS_START_TIMEOUT_S (default 60 + N/100), OTHER_SERVERS_STOP_TIMEOUT_S
# (default 60), OTHER_SERVERS_EJABBERD_HOSTS_LIST (default 0).
set -euo pipefail

DOMAIN=example.com
START_TIMEOUT_S=${OTHER_SERVERS_START_TIMEOUT_S:-}  # default: 60 s + 10 ms per component
STOP_TIMEOUT_S=${OTHER_SERVERS_STOP_TIMEOUT_S:-60}
LOGLEVEL=${OTHER_SERVERS_LOGLEVEL:-warn}
EJABBERD_HOSTS_LIST=${OTHER_SERVERS_EJABBERD_HOSTS_LIST:-0}
SELF=$(readlink -f "$0")
made_policy=0

die() { echo "other_servers.sh: $*" >&2; exit 1; }
log() { echo "other_servers.sh: $*" >&2; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# free_port, alive (and the rest of /proc helpers)
. "$(dirname "$SELF")/proc_lib.sh"

# wait_gone SECONDS PID...: 0 when all have exited within SECONDS.
wait_gone() {
  local limit=$1; shift
  local deadline=$((SECONDS + limit)) pid any
  while :; do
    any=0
    for pid in "$@"; do alive "$pid" && any=1; done
    [ $any = 0 ] && return 0
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.1
  done
}

# The PID's command line contains STRING (guards against a reused PID).
cmdline_has() {
  local pid=$1 needle=$2
  alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$needle"
}

# Something listens on TCP PORT (any address).
port_taken() {
  ss -Hltn "( sport = :$1 )" 2>/dev/null | grep -q .
}

# PID listens on 127.0.0.1:PORT.
pid_listens() {
  ss -Hltnp "( sport = :$2 )" 2>/dev/null | grep -F "127.0.0.1:$2 " | grep -qF "pid=$1,"
}

check_secret() {
  case $1 in
    ''|*[\"\'\\\`\$]*|*[[:cntrl:]]*|*' '*) die "SECRET must be non-empty, without quotes, backslashes, \$, spaces or control characters";;
  esac
}

# Runs a command as USER (exec, so the PID stays that of the command).
as_user() {
  local user=$1; shift
  setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"
}

prepare_dir() {
  local dir=$1 user=$2
  [ -d "$dir" ] || die "$dir is not a directory"
  chown -R "$user:" "$dir"
  as_user "$user" test -w "$dir" -a -x "$dir" ||
    die "user $user cannot write $dir (are all its parent directories searchable by others?)"
}

# Opens a component stream to HOST on 127.0.0.1:PORT and waits (at most SECONDS) for
# the server's stream header with an id; 0 when it came without a stream error.  A
# listening socket is not enough: Prosody opens its port before it has loaded the
# component hosts (about 30 s for 10,000 of them) and only then answers.
probe_stream() {
  /usr/bin/python3 - "$1" "$2" "$3" <<'PY'
import re, socket, sys, time
port, host, limit = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
deadline = time.time() + limit
try:
    s = socket.create_connection(("127.0.0.1", port), timeout=max(0.1, limit))
    s.sendall(("<stream:stream xmlns='jabber:component:accept' "
               "xmlns:stream='http://etherx.jabber.org/streams' to='%s'>" % host).encode())
    buf = b""
    while not re.search(rb"<stream:stream[^>]*\sid=['\"][^>]*>", buf):
        s.settimeout(max(0.1, deadline - time.time()))
        d = s.recv(65536)
        if not d:
            break
        buf += d
    time.sleep(0.05)
    s.setblocking(False)
    try:
        buf += s.recv(65536)
    except OSError:
        pass
    try:
        s.sendall(b"</stream:stream>")
    except OSError:
        pass
    s.close()
    ok = re.search(rb"<stream:stream[^>]*\sid=", buf) and b"stream:error" not in buf
    sys.exit(0 if ok else 1)
except OSError:
    sys.exit(1)
PY
}

# wait_ready PID PORT HOST LOGFILE...: waits until PID listens on 127.0.0.1:PORT and
# answers a component stream for HOST.
wait_ready() {
  local pid=$1 port=$2 host=$3; shift 3
  local deadline=$((SECONDS + START_TIMEOUT_S)) f left why=""
  while :; do
    if ! alive "$pid"; then why="server exited"; break; fi
    left=$((deadline - SECONDS))
    if [ $left -le 0 ]; then why="not ready after ${START_TIMEOUT_S}s"; break; fi
    if pid_listens "$pid" "$port" && probe_stream "$port" "$host" "$left"; then return 0; fi
    sleep 0.1
  done
  log "$why (pid $pid, 127.0.0.1:$port); log tails:"
  for f in "$@"; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 30 "$f" >&2; }; done
  return 1
}

# ---------------------------------------------------------------------------- install

# beam.smp processes of Debian's ejabberd service (spool /var/lib/ejabberd).
system_ejabberd_pids() {
  ps -u ejabberd -o pid=,args= 2>/dev/null | awk '/beam\.smp/ && /\/var\/lib\/ejabberd/ {print $1}' || true
}

cmd_install() {
  [ "$(id -u)" = 0 ] || die "install needs root"
  local need=0 p
  for p in prosody ejabberd; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need=1
  done
  if [ $need = 1 ]; then
    # Keep the package scripts from starting the services (they would listen on
    # 5222/5269/5280 on all interfaces) unless the system already has a policy.
    local policy=/usr/sbin/policy-rc.d
    if [ ! -e $policy ]; then
      printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy && made_policy=1
      trap 'if [ $made_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive timeout 1800 apt-get install -y prosody ejabberd >&2 ||
      { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive timeout 1800 apt-get install -y prosody ejabberd >&2; }
    if [ $made_policy = 1 ]; then rm -f $policy; made_policy=0; fi
  else
    log "prosody and ejabberd already installed"
  fi
  # Stop the system services only when they run: Debian's ejabberd init script runs
  # `ejabberdctl status/stop`, whose Erlang client starts an epmd on 0.0.0.0:4369.
  local booted_systemd=0 pidfile pid
  [ -d /run/systemd/system ] && booted_systemd=1
  if [ -n "$(system_ejabberd_pids)" ]; then
    log "stopping the system ejabberd"
    if [ $booted_systemd = 1 ]; then timeout 120 systemctl stop ejabberd.service >&2 || true
    else timeout 120 service ejabberd stop >&2 || true; fi
  fi
  pidfile=/run/prosody/prosody.pid
  pid=$(cat $pidfile 2>/dev/null || true)
  if [ -n "$pid" ] && alive "$pid"; then
    log "stopping the system prosody"
    if [ $booted_systemd = 1 ]; then timeout 120 systemctl stop prosody.service >&2 || true
    else timeout 120 service prosody stop >&2 || true; fi
  fi
  # Still running 30 s after the init scripts returned: SIGTERM by PID, then SIGKILL.
  for pid in $(system_ejabberd_pids) $(cat $pidfile 2>/dev/null || true); do
    wait_gone 30 "$pid" && continue
    log "stopping system service pid $pid"
    kill "$pid" 2>/dev/null || true
    wait_gone 30 "$pid" || kill -9 "$pid" 2>/dev/null || true
  done
  # The epmd that Debian's ejabberd service (or its init script's ejabberdctl) started
  # on 0.0.0.0:4369, once no node is registered with it (`epmd -kill` refuses otherwise).
  # A stopped node's name may linger for a moment: retry for up to 10 s.
  local try
  for try in $(seq 20); do
    pgrep -u ejabberd -x epmd >/dev/null || break
    if ! timeout 10 epmd -names 2>/dev/null | grep -q '^name '; then
      log "stopping the idle epmd of the ejabberd user"
      timeout 10 epmd -kill >/dev/null 2>&1 || true
      break
    fi
    [ "$try" = 20 ] || sleep 0.5
  done
  # Not started at boot (nor, under systemd, on a connection to epmd's socket).
  for p in ejabberd prosody; do
    update-rc.d "$p" disable >/dev/null 2>&1 || true
  done
  timeout 60 systemctl disable ejabberd.service prosody.service epmd.socket epmd.service \
    >/dev/null 2>&1 || true
  if [ $booted_systemd = 1 ]; then
    timeout 60 systemctl stop epmd.socket epmd.service >&2 || true
  fi
  local left
  left=$(ps -eo pid=,user=,stat=,args= | awk '($2=="prosody" || $2=="ejabberd") && $3 !~ /^Z/' || true)
  [ -z "$left" ] || log "still running as prosody/ejabberd users (not started by install):
$left"
  log "installed: prosody $(dpkg-query -W -f='${Version}' prosody), ejabberd $(dpkg-query -W -f='${Version}' ejabberd); system services stopped and disabled"
}

# ---------------------------------------------------------------------------- prosody

start_prosody() {
  local dir=$1 port=$2 n=$3 secret=$4 i level=$LOGLEVEL
  [ -x /usr/bin/prosody ] || die "prosody is not installed (run: $SELF install)"
  [ -e "$dir/prosody.pid.start" ] && alive "$(cat "$dir/prosody.pid.start")" && die "an instance already runs in $dir"
  case $level in warning) level=warn;; esac
  mkdir -p "$dir/data" "$dir/certs"
  {
    cat <<EOF
-- Written by bench/other_servers.sh: $n XEP-0114 components on 127.0.0.1:$port.
pidfile = "$dir/prosody.pid"
data_path = "$dir/data"
log = { $level = "$dir/prosody.log" }
-- Only the component listener: c2s and s2s are not loaded; no HTTP modules.
modules_enabled = { }
modules_disabled = { "c2s", "s2s", "s2s_auth_certs", "offline" }
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
component_ports = { $port }
component_interfaces = { "127.0.0.1" }
c2s_ports = { }
s2s_ports = { }
http_ports = { }
https_ports = { }
c2s_direct_tls_ports = { }
s2s_direct_tls_ports = { }
network_backend = "epoll"
network_settings = { tcp_backlog = 1024 }

VirtualHost "$DOMAIN"

EOF
    for ((i = 0; i < n; i++)); do
      printf 'Component "b%d.%s"\n\tcomponent_secret = "%s"\n' "$i" "$DOMAIN" "$secret"
    done
  } >"$dir/prosody.cfg.lua"
  prepare_dir "$dir" prosody
  # The server holds nothing of ours open, so $(... start ...) returns at once.
  # setpriv execs env, which execs lua5.4: $! is the server's PID.
  setpriv --reuid=prosody --regid=prosody --init-groups -- \
    /usr/bin/env HOME="$dir/data" /usr/bin/prosody -F --config "$dir/prosody.cfg.lua" \
    </dev/null >"$dir/prosody.stdout" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/prosody.pid.start"
  if ! wait_ready "$pid" "$port" "b$((n - 1)).$DOMAIN" "$dir/prosody.stdout" "$dir/prosody.log"; then
    stop_prosody "$dir" >/dev/null 2>&1 || true
    return 1
  fi
  echo "$pid"
}

stop_prosody() {
  local dir=$1 pid
  [ -f "$dir/prosody.pid.start" ] || { log "no prosody running from $dir (already stopped?)"; return 0; }
  pid=$(cat "$dir/prosody.pid.start")
  if cmdline_has "$pid" "$dir/prosody.cfg.lua"; then
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_gone "$STOP_TIMEOUT_S" "$pid"; then
      log "prosody pid $pid ignored SIGTERM for ${STOP_TIMEOUT_S}s; SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      wait_gone 10 "$pid" || die "prosody pid $pid does not exit"
    fi
  fi
  rm -f "$dir/prosody.pid.start"
}

# ---------------------------------------------------------------------------- ejabberd

# ejabberdctl with this instance's config, logs, spool and node.
ejabberdctl_for() {
  local dir=$1; shift
  local node
  node=$(cat "$dir/ejabberd/node")
  as_user ejabberd env HOME="$dir/ejabberd/home" /usr/sbin/ejabberdctl \
    --config-dir "$dir/ejabberd" --ctl-config "$dir/ejabberd/ejabberdctl.cfg" \
    --config "$dir/ejabberd/ejabberd.yml" --logs "$dir/ejabberd/log" \
    --spool "$dir/ejabberd/db" --node "$node" "$@"
}

start_ejabberd() {
  local dir=$1 port=$2 n=$3 secret=$4 i level=$LOGLEVEL
  [ -x /usr/sbin/ejabberdctl ] || die "ejabberd is not installed (run: $SELF install)"
  [ -e "$dir/ejabberd/beam.pid" ] && alive "$(cat "$dir/ejabberd/beam.pid")" && die "an instance already runs in $dir"
  case $level in warn) level=warning;; esac
  local e=$dir/ejabberd
  mkdir -p "$e/log" "$e/db" "$e/home" "$e/modules.d" "$e/contrib"
  local dist_port cookie node
  dist_port=$(free_port)
  cookie=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  node="bench_${port}_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')@localhost"
  echo "$node" >"$e/node"
  # Erlang's resolver: names from the hosts file only; its DNS client reads no
  # resolv.conf and would only ask 127.0.0.1.  So nothing of ejabberd's leaves the
  # machine even if something tries to resolve a name (see s2s_access below).
  cat >"$e/inetrc" <<'EOF'
{lookup, [file]}.
{resolv_conf, ""}.
{nameserver, {127,0,0,1}, 53}.
{host, {127,0,0,1}, ["localhost"]}.
EOF
  # Read by ejabberdctl (bash).  ERL_DIST_PORT makes it run the node without epmd
  # (-erl_epmd_port P -start_epmd false) and its control clients with -dist_listen false.
  cat >"$e/ejabberdctl.cfg" <<EOF
ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0 -setcookie $cookie -kernel inet_dist_use_interface {127,0,0,1}"
ERL_DIST_PORT=$dist_port
ERLANG_NODE=$node
EJABBERD_PID_PATH=$e/ejabberd.pid
CONTRIB_MODULES_PATH=$e/contrib
CONTRIB_MODULES_CONF_DIR=$e/modules.d
EJABBERD_BYPASS_WARNINGS=true
EOF
  {
    cat <<EOF
# Written by bench/other_servers.sh: $n XEP-0114 components on 127.0.0.1:$port.
hosts:
  - $DOMAIN
loglevel: $level
log_rotate_count: 1
log_rotate_size: 104857600
certfiles: []
acme:
  auto: false
# Only the component listener: no c2s, s2s or HTTP listeners.
listen:
  -
    port: $port
    ip: "127.0.0.1"
    module: ejabberd_service
    backlog: 1024
    # Each connection routes only the component it authenticated as (the default,
    # true, registers every configured host on every connection).
    global_routes: false
EOF
    if [ "$EJABBERD_HOSTS_LIST" = 1 ]; then
      # Every component named with its password.  Each connection's process keeps
      # the whole list in its state (host_opts), so memory per connection grows
      # with N (about 300 KB per connection with 2,000 listed).
      echo "    hosts:"
      for ((i = 0; i < n; i++)); do
        printf '      "b%d.%s":\n        password: "%s"\n' "$i" "$DOMAIN" "$secret"
      done
    else
      # One shared secret for any component name (the components need not be
      # listed): each connection keeps only its own name.  The default.
      printf '    password: "%s"\n' "$secret"
    fi
    cat <<EOF
auth_method: internal
# No server-to-server traffic: a stanza for a component that is not connected (as
# at the end of a benchmark run) would otherwise start an outgoing s2s connection
# with a DNS lookup of its domain.  With s2s_access none it is bounced at once.
s2s_access: none
modules: {}
EOF
  } >"$e/ejabberd.yml"
  prepare_dir "$dir" ejabberd
  # ejabberdctl (bash) runs erl as a child; erl execs erlexec, which execs beam.smp.
  (cd "$e/db" && exec setpriv --reuid=ejabberd --regid=ejabberd --init-groups -- \
      env HOME="$e/home" /usr/sbin/ejabberdctl \
      --config-dir "$e" --ctl-config "$e/ejabberdctl.cfg" --config "$e/ejabberd.yml" \
      --logs "$e/log" --spool "$e/db" --node "$node" foreground) \
    </dev/null >"$e/foreground.out" 2>&1 &
  local ctl_pid=$! beam_pid="" deadline=$((SECONDS + START_TIMEOUT_S)) c
  echo "$ctl_pid" >"$e/ctl.pid"
  while [ -z "$beam_pid" ]; do
    for c in $(pgrep -P "$ctl_pid" 2>/dev/null || true); do
      [ "$(cat "/proc/$c/comm" 2>/dev/null)" = beam.smp ] && beam_pid=$c
    done
    [ -n "$beam_pid" ] && break
    if ! alive "$ctl_pid" || [ $SECONDS -ge $deadline ]; then
      log "ejabberd's beam.smp did not start; log tails:"
      tail -n 30 "$e/foreground.out" >&2 || true
      stop_ejabberd "$dir" >/dev/null 2>&1 || true
      return 1
    fi
    sleep 0.05
  done
  echo "$beam_pid" >"$e/beam.pid"
  if ! wait_ready "$beam_pid" "$port" "b$((n - 1)).$DOMAIN" "$e/foreground.out" "$e/log/ejabberd.log" "$e/log/error.log"; then
    stop_ejabberd "$dir" >/dev/null 2>&1 || true
    return 1
  fi
  echo "$beam_pid"
}

stop_ejabberd() {
  local dir=$1 e=$1/ejabberd beam_pid="" ctl_pid="" node pids=()
  [ -f "$e/node" ] || { log "no ejabberd started in $dir"; return 0; }
  node=$(cat "$e/node")
  [ -f "$e/beam.pid" ] && beam_pid=$(cat "$e/beam.pid")
  [ -f "$e/ctl.pid" ] && ctl_pid=$(cat "$e/ctl.pid")
  # Only PIDs that are still this instance's processes.
  if [ -n "$beam_pid" ] && cmdline_has "$beam_pid" "$node"; then pids+=("$beam_pid"); else beam_pid=""; fi
  if [ -n "$ctl_pid" ] && cmdline_has "$ctl_pid" "$e/ejabberdctl.cfg"; then pids+=("$ctl_pid"); else ctl_pid=""; fi
  [ ${#pids[@]} = 0 ] && { rm -f "$e/beam.pid" "$e/ctl.pid"; return 0; }
  if [ -n "$beam_pid" ]; then
    (cd "$e/db" && timeout 60 "$SELF" __ejabberdctl "$dir" stop) >/dev/null 2>&1 ||
      log "ejabberdctl stop failed for $node; using SIGTERM"
  fi
  if ! wait_gone "$STOP_TIMEOUT_S" "${pids[@]}"; then
    [ -n "$beam_pid" ] && alive "$beam_pid" && kill -TERM "$beam_pid" 2>/dev/null
    if ! wait_gone 15 "${pids[@]}"; then
      log "ejabberd did not exit; SIGKILL"
      local p
      for p in "${pids[@]}"; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
      wait_gone 10 "${pids[@]}" || die "ejabberd processes ${pids[*]} do not exit"
    fi
  fi
  # erl_child_setup and inet_gethost are children of beam.smp and exit with it.
  rm -f "$e/beam.pid" "$e/ctl.pid"
}

# ---------------------------------------------------------------------------- main

[ $# -ge 1 ] || usage
case $1 in
  install)
    [ $# = 1 ] || usage
    cmd_install
    ;;
  start)
    [ $# = 6 ] || usage
    server=$2 dir=$3 port=$4 n=$5 secret=$6
    { [[ $port =~ ^[0-9]+$ ]] && [ "$port" -ge 1 ] && [ "$port" -le 65535 ]; } || die "bad PORT $port"
    { [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ]; } || die "bad N $n"
    check_secret "$secret"
    : "${START_TIMEOUT_S:=$((60 + n / 100))}"
    [ "$(id -u)" = 0 ] || die "start needs root (it runs the server as its Debian user)"
    dir=$(cd "$dir" && pwd -P) || die "no directory $3"
    port_taken "$port" && die "something already listens on port $port"
    # Room for 10,000+ connections (the servers inherit this limit).
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    case $server in
      prosody) start_prosody "$dir" "$port" "$n" "$secret" ;;
      ejabberd) start_ejabberd "$dir" "$port" "$n" "$secret" ;;
      *) usage ;;
    esac
    ;;
  stop)
    [ $# = 3 ] || usage
    server=$2
    dir=$(cd "$3" && pwd -P) || die "no directory $3"
    case $server in
      prosody) stop_prosody "$dir" ;;
      ejabberd) stop_ejabberd "$dir" ;;
      *) usage ;;
    esac
    ;;
  secrets)
    [ $# = 3 ] || usage
    [[ $2 =~ ^[0-9]+$ ]] || die "bad N $2"
    check_secret "$3"
    printf '['
    for ((i = 0; i < $2; i++)); do
      [ $i = 0 ] || printf ','
      printf '{"component":"b%d.%s","secret":"%s"}' "$i" "$DOMAIN" "$3"
    done
    printf ']\n'
    ;;
  __ejabberdctl)  # internal: ejabberdctl for the instance in DIR
    shift
    dir=$1; shift
    ejabberdctl_for "$dir" "$@"
    ;;
  *) usage ;;
esac
