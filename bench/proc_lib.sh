# Shell helpers the benchmark scripts share (sourced, not run): free ports and
# what /proc says of a process. bench/compare_servers.sh, bench/compare_c2s.sh
# and bench/other_servers.sh source it.

# A free TCP port on 127.0.0.1.
free_port() {
  /usr/bin/python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# A process exists and is not a zombie (PID 1 here may not reap orphans).
alive() {
  local state
  [ -r "/proc/$1/stat" ] || return 1
  state=$(sed 's/^.*) \(.\).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# CPU seconds (user + system, all threads) of PID.
cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); print ($12 + $13) / hz}' "/proc/$1/stat"
}

# CPU seconds the whole machine spent busy (all cores; /proc/stat's first line).
machine_busy_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" {print ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit}' /proc/stat
}

rss_bytes() {
  awk '/^VmRSS:/ {print $2 * 1024}' "/proc/$1/status"
}

# VmRSS of PID once it is steady: the last 4 samples, 1 s apart, within 0.2% of
# each other (at most ~40 s; ejabberd shrinks for ~10 s after start-up).
settled_rss() {
  local samples=() _
  for _ in $(seq 40); do
    samples+=("$(rss_bytes "$1")")
    if [ ${#samples[@]} -ge 4 ] && printf '%s\n' "${samples[@]: -4}" |
        awk 'NR == 1 {lo = hi = $1} {if ($1 < lo) lo = $1; if ($1 > hi) hi = $1}
             END {exit !(hi - lo <= 0.002 * hi)}'; then
      break
    fi
    sleep 1
  done
  echo "${samples[-1]}"
}
