#!/usr/bin/python3
"""A reconnect storm: N call bridges on one node of a real 3-node cluster lose it at once.

Starts three stanzad nodes on 127.0.0.1-3 (--threads each), forms a cluster, imports
--bridges call bridges (`stanzactl callbridge import`, secrets read back with
`stanzactl --json callbridge list`) and starts dnsmasq on 127.0.0.1 with
_xmpp-component._tcp.example.com naming the victim at priority 10 and the two others at
priority 20 (equal weights), so every bridge finds the victim first and, when it fails,
one of the others in a weighted random order (RFC 2782). The victim is the leader
(--victim=leader, the worse case: the survivors elect one meanwhile) or a follower.

stanza-bench (latency mode, open loop at --rate stanzas/s in all, bridge i sending to
bridge i+1, --srv) connects every bridge to the victim, then SIGKILLs it --kill_at_s
into its measuring window; each bridge reconnects at once to its next target, and a
failed attempt is retried on the next one after a backoff with jitter (stanza-bench
--retries_max, --retry_backoff_ms). Measured:
- from the kill until the last bridge is authenticated again (and p50/p90/p99), the
  client's TCP connects and handshakes per second (mean over the storm, best 100 ms);
- the survivors' own counters, sampled every 100 ms from /metrics: connections
  accepted and refused, handshakes, bridges connected, and their CPU time (/proc);
- the kernel's listen-queue counters (ListenOverflows, ListenDrops, SyncookiesSent in
  /proc/net/netstat, machine-wide) over the run: a full accept or SYN queue shows there;
- attempts that failed and why, bridges that gave up (refused for good);
- stanzas flowing again: kill_to_flow_ms (the first message due after the kill that is
  delivered) and per second of due time, messages due and delivered (flow_by_s).
Goal (issue 15): every bridge back within 10 s, none refused for good.

Bridges connect from --source_ips addresses in 127.2.0.0/16 (default: one per bridge, as
real bridges each have their own address, so the per-address limits stay as they ship).
--bridges defaults to 50,000. Each stanza-bench holds one descriptor per bridge, so past
17,000 bridges the bridges are split over several stanza-bench processes (each within an
open files limit as low as 20,000, with addresses of its own); the first one kills the
victim, after a warm-up long enough for the others to be ready, and its stanza figures
are the ones reported; the storm's figures are over all of them (the last bridge back of
any, counts summed; each process times from the kill or from the first drop it saw). Every
node gets --connections_max for all N and, with --threads=0 (the default), as many shards
as its connections need for each shard's table of direct descriptors to fit under the
open files hard limit. Bounded: each step has a timeout; only the processes this script
starts are stopped (by their PIDs), whatever happens.

Usage: STANZAD_BIN_DIR=build/cmd /usr/bin/python3 bench/reconnect_storm.py \\
           [--bridges=N] [--threads=0] [--victim=leader|follower] [--rate=5000] \\
           [--connecting_max=0] [--source_ips=0] [--json_out=FILE] [--perf=FILE] \\
           [--logs_dir=DIR]
"""
import argparse
import json
import os
import re
import resource
import secrets as secrets_module
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../tests/integration"))
sys.path.insert(0, os.path.dirname(__file__))
from stanzad_harness import BIN_DIR, STANZACTL, StanzadProcess, wait_until  # noqa: E402
from cluster_failover import leader_of, new_leader_ms, start_cluster, wait_stable  # noqa: E402
from dns_doctor_test import Dnsmasq  # noqa: E402

BENCH_DIR = os.environ.get("STANZAD_BENCH_DIR", os.path.join(BIN_DIR, "../bench"))
STANZA_BENCH = os.path.join(BENCH_DIR, "stanza-bench")
STEP_SECONDS_MAX = 600
# Bridges per stanza-bench process (one descriptor each, under a limit as low as 20,000).
BRIDGES_PER_BENCH = 17000
# How much longer than the others the killing stanza-bench warms up, so that every other
# one has its bridges on the victim before the kill.
KILLER_EXTRA_WARMUP_S = 20


def raise_file_limit(wanted):
    """For us and, inherited, the nodes and stanza-bench; root may raise the hard limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        except (ValueError, OSError):
            sys.exit(f"need {wanted} open files, the hard limit is {hard} (run as root, or "
                     "raise ulimit -Hn)")
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))


def stanzactl(node, *args, json_output=False):
    command = [os.path.abspath(STANZACTL), f"--state_dir={node.state_dir}"]
    command += (["--json"] if json_output else []) + list(args)
    result = subprocess.run(command, capture_output=True, text=True, timeout=STEP_SECONDS_MAX)
    if result.returncode != 0:
        raise RuntimeError(f"stanzactl {' '.join(args)}: {result.stderr[-2000:]}")
    return result.stdout


def import_bridges(nodes, count, work):
    """Imports sb0..sb{count-1}; returns stanza-bench's secrets file (in that order)."""
    names = [f"sb{i}" for i in range(count)]
    path = os.path.join(work, "bridges.txt")
    with open(path, "w") as f:
        for name in names:
            f.write(f"{name} {secrets_module.token_hex(16)}\n")
    started = time.monotonic()
    stanzactl(nodes[0], "callbridge", "import", path)
    print(f"imported {count} bridges in {time.monotonic() - started:.1f} s", file=sys.stderr)
    for node in nodes:
        wait_until(lambda: json.loads(stanzactl(node, "status", json_output=True))
                   ["callbridges_configured"] >= count, timeout=120, interval=0.5,
                   what=f"{node.ip} holding every bridge")
    rows = {row["name"]: row for row in json.loads(stanzactl(nodes[0], "callbridge", "list",
                                                             json_output=True))}
    secrets_path = os.path.join(work, "secrets.json")
    with open(secrets_path, "w") as f:
        json.dump([rows[name] for name in names], f, separators=(",", ":"))
    return secrets_path


def metrics(node):
    """The counters of the storm, summed over the node's shards."""
    with urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port}/metrics",
                                timeout=2) as response:
        body = response.read().decode()
    def total(pattern):
        return sum(float(v) for v in re.findall(pattern + r"\S* (\S+)$", body, re.M))
    return {"accepted": total(r"^stanzad_connections_accepted_total"),
            "refused": total(r"^stanzad_connections_refused_total"),
            "handshakes": total(r'^stanzad_handshakes_total\{[^}]*outcome="ok"'),
            "handshake_failures": total(r'^stanzad_handshakes_total\{[^}]*outcome="failed"'),
            "bridges": total(r"^stanzad_bridges_connected")}


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def listen_counters():
    """Machine-wide TcpExt counters of the listen queues."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], map(int, values.split()[1:])))
            return {k: table.get(k, 0) for k in ("ListenOverflows", "ListenDrops",
                                                 "SyncookiesSent", "TCPReqQFullDrop",
                                                 "TCPReqQFullDoCookies")}
    return {}


class Sampler(threading.Thread):
    """Samples the survivors' counters every 100 ms until stopped (bounded by `seconds`)."""

    def __init__(self, nodes, seconds):
        super().__init__(daemon=True)
        self.nodes, self.seconds = nodes, seconds
        self.samples = []  # (monotonic time, [metrics per node], [cpu s per node])
        self.stop_event = threading.Event()

    def run(self):
        deadline = time.monotonic() + self.seconds
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            try:
                sample = (time.monotonic(), [metrics(n) for n in self.nodes],
                          [cpu_seconds(n.process.pid) for n in self.nodes])
                self.samples.append(sample)
            except (OSError, ValueError):
                pass
            self.stop_event.wait(0.1)


def server_side(samples, killed):
    """From the survivors' samples: what they accepted, refused and authenticated after the
    kill; over the storm (from the kill until their handshake count stopped growing) the
    mean rates and their CPU per handshake (which includes the stanzas meanwhile)."""
    after = [s for s in samples if s[0] >= killed - 0.15]
    if len(after) < 2:
        return {}
    first = after[0]
    def total(sample, key):
        return sum(m[key] for m in sample[1])
    final = max(total(s, "handshakes") for s in after)
    done = next(s for s in after if total(s, "handshakes") >= final)
    span = max(done[0] - first[0], 0.1)
    handshakes = total(done, "handshakes") - total(first, "handshakes")
    accepted = total(done, "accepted") - total(first, "accepted")
    cpu = sum(done[2]) - sum(first[2])
    # Per sample (~100 ms) from the kill until the storm ended: accepted, authenticated.
    timeline = [[int(total(b, "accepted") - total(a, "accepted")),
                 int(total(b, "handshakes") - total(a, "handshakes"))]
                for a, b in zip(after, after[1:]) if a[0] < done[0]]
    return {"survivors_by_sample": timeline,
            "survivors_accepted": int(accepted),
            "survivors_refused": int(total(after[-1], "refused") - total(first, "refused")),
            "survivors_handshakes": int(handshakes),
            "survivors_handshake_failures":
                int(total(after[-1], "handshake_failures") - total(first, "handshake_failures")),
            "survivors_bridges_most": max(int(total(s, "bridges")) for s in after),
            "survivors_storm_s": round(span, 2),
            "survivors_accepts_per_s": round(accepted / span),
            "survivors_handshakes_per_s": round(handshakes / span),
            "survivors_cpu_s": round(cpu, 2),
            "survivors_cpu_us_per_handshake": round(cpu / handshakes * 1e6, 1)
            if handshakes else None}


def run_storm(nodes, address, args, secrets_path, work):
    leader = wait_stable(nodes, address, timeout=60)
    if args.victim == "leader":
        victim = leader
    else:
        victim = next(n for n in nodes if n is not leader)
    survivors = [n for n in nodes if n is not victim]
    records = []
    for i, node in enumerate(nodes):
        priority = 10 if node is victim else 20
        records += [f"--host-record=n{i + 1}.example.com,{node.ip}",
                    f"--srv-host=_xmpp-component._tcp.example.com,n{i + 1}.example.com,"
                    f"{node.port},{priority},50"]
    dns = Dnsmasq(records)
    benches = []
    perf = None
    parts = max(1, -(-args.bridges // args.bridges_per_bench))
    share = -(-args.bridges // parts)
    with open(secrets_path) as f:
        accounts = json.load(f)
    extra = KILLER_EXTRA_WARMUP_S if parts > 1 else 0
    sampler = Sampler(survivors, seconds=args.ready_timeout_s + args.warmup_s + extra
                      + args.duration_s + args.drain_s + 60)
    before = listen_counters()
    try:
        for k in range(parts):
            part = accounts[k * share:(k + 1) * share]
            path = os.path.join(work, f"secrets-{k}.json")
            with open(path, "w") as f:
                json.dump(part, f, separators=(",", ":"))
            # Each process's addresses are its own: k * share, ... (one per bridge by default).
            sources = min(len(part), args.source_ips)
            command = [STANZA_BENCH, "--mode=latency", f"--rate={args.rate / parts}",
                       f"--bridges={len(part)}", "--srv=example.com",
                       f"--dns_server=127.0.0.1:{dns.port}", f"--secrets_json={path}",
                       f"--drain_s={args.drain_s}", f"--source_ips={sources}",
                       f"--source_ip_first={min(k * share, 254 * 256 - 1)}",
                       f"--connecting_max={args.connecting_max}",
                       f"--ready_timeout_s={args.ready_timeout_s}",
                       f"--retries_max={args.retries_max}"]
            if k == 0:
                command += [f"--warmup_s={args.warmup_s + extra}",
                            f"--duration_s={args.duration_s}",
                            f"--kill_pid={victim.process.pid}", f"--kill_at_s={args.kill_at_s}"]
            else:  # its window covers the killer's
                command += [f"--warmup_s={args.warmup_s}",
                            f"--duration_s={args.duration_s + extra + 10}"]
            print(" ".join(command), file=sys.stderr)
            benches.append(subprocess.Popen(command, stdout=subprocess.PIPE,
                                            stderr=subprocess.PIPE, text=True))
        sampler.start()
        bounded = (args.ready_timeout_s + 10 + args.warmup_s + extra + args.duration_s + 10
                   + args.drain_s + 30)
        # The victim is our child: its PID stays ours until poll() reaps it.
        wait_until(lambda: victim.process.poll() is not None
                   or any(b.poll() is not None for b in benches),
                   timeout=args.ready_timeout_s + 10 + args.warmup_s + extra + args.kill_at_s
                   + 10, interval=0.002, what="stanza-bench killing the victim")
        killed = time.monotonic()
        if args.perf:  # the survivors' and the client's CPU over the storm's first 3 s
            perf = subprocess.Popen(["perf", "record", "-q", "-F", "999", "-g", "-o", args.perf,
                                     "-p", ",".join(str(pid) for pid in
                                                    [n.process.pid for n in survivors]
                                                    + [b.pid for b in benches]),
                                     "--", "sleep", "3"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if victim.process.poll() is None:
            failed = next(b for b in benches if b.poll() is not None)
            raise RuntimeError(f"a stanza-bench exited before the kill: "
                               f"{failed.communicate(timeout=10)[1][-3000:]}")
        leader_ms = new_leader_ms(survivors, address[id(victim)], killed, 0.01)
        outputs = [b.communicate(timeout=bounded) for b in benches]
        if perf is not None:
            perf.wait(timeout=30)
    finally:
        if perf is not None and perf.poll() is None:
            perf.kill()
            perf.wait(timeout=10)
        sampler.stop_event.set()
        for bench in benches:
            if bench.poll() is None:
                bench.kill()
                bench.communicate(timeout=10)
        dns.stop()
    sampler.join(5)
    after = listen_counters()
    runs = []
    for k, (bench, (out, err)) in enumerate(zip(benches, outputs)):
        if bench.returncode != 0:
            raise RuntimeError(f"stanza-bench {k} exited {bench.returncode}: {err[-3000:]}")
        runs.append(json.loads(out.strip().splitlines()[-1]))
    run = runs[0]
    # The others were ready before the kill: their first drop came with it.
    for k, other in enumerate(runs[1:], 1):
        if other.get("storm_first_drop_ms") is None:
            raise RuntimeError(f"stanza-bench {k} saw no drop: its bridges were not on the victim")
    result = {"mode": "reconnect_storm", "bridges": args.bridges, "threads": args.threads,
              "victim": args.victim, "rate": args.rate, "connecting_max": args.connecting_max,
              "source_ips": args.source_ips, "new_leader_ms": leader_ms,
              "bench_processes": parts}
    for key in ("storm_first_back_ms", "storm_last_back_ms", "storm_back_ms_p50", "storm_back_ms_p90",
                "storm_back_ms_p99", "storm_first_drop_ms", "storm_bridges_back",
                "storm_tcp_connects_per_s", "storm_tcp_connects_per_s_best_100ms",
                "storm_handshakes_per_s", "storm_handshakes_per_s_best_100ms",
                "connect_attempts", "failed_attempts", "refused", "handshake_timeouts",
                "stream_errors_before_ready", "bridges_gave_up", "bridges_failed_over",
                "bridges_still_down", "kill_to_flow_ms", "max_delivery_gap_ms", "sent",
                "delivered", "lost", "duplicated", "bounced", "lost_on_failed_over_paths",
                "skipped_while_down", "client_cpu_busy_fraction", "flow_by_s",
                "storm_back_by_100ms", "storm_drops_by_100ms",
                "storm_client_cpu_busy_fraction"):
        result[key] = run.get(key)
    if len(runs) > 1:
        def values(key):
            return [r.get(key) for r in runs if r.get(key) is not None]
        for key in ("storm_last_back_ms", "storm_back_ms_p99"):
            result[key] = max(values(key), default=None)
        for key in ("storm_bridges_back", "connect_attempts", "failed_attempts", "refused",
                    "handshake_timeouts", "stream_errors_before_ready", "bridges_gave_up",
                    "bridges_failed_over", "bridges_still_down", "storm_tcp_connects_per_s",
                    "storm_handshakes_per_s"):
            result[key] = sum(values(key))
        result["storm_last_back_ms_by_process"] = values("storm_last_back_ms")
        result["storm_client_cpu_busy_fraction"] = max(values("storm_client_cpu_busy_fraction"),
                                                       default=0)
    result.update(server_side(sampler.samples, killed))
    result["listen_queue_counters"] = {k: after[k] - before.get(k, 0) for k in after}
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bridges", type=int, default=0,
                        help="default: 50,000, or what the open files hard limit allows")
    parser.add_argument("--threads", type=int, default=0,
                        help="shards per node; 0: as many as the connections need under the "
                        "open files limit (direct descriptors), at least 1")
    parser.add_argument("--victim", choices=("leader", "follower"), default="leader")
    parser.add_argument("--rate", type=float, default=5000, help="stanzas/s in all")
    parser.add_argument("--connecting_max", type=int, default=0,
                        help="stanza-bench: attempts in progress at once (0: no cap)")
    parser.add_argument("--source_ips", type=int, default=0,
                        help="stanza-bench source addresses; 0: one per bridge")
    parser.add_argument("--bridges_per_bench", type=int, default=BRIDGES_PER_BENCH,
                        help="bridges per stanza-bench process")
    parser.add_argument("--retries_max", type=int, default=30)
    parser.add_argument("--ready_timeout_s", type=float, default=300)
    parser.add_argument("--warmup_s", type=float, default=2)
    parser.add_argument("--duration_s", type=float, default=20)
    parser.add_argument("--kill_at_s", type=float, default=3)
    parser.add_argument("--drain_s", type=float, default=5)
    parser.add_argument("--json_out", default="")
    parser.add_argument("--perf", default="",
                        help="perf record the survivors and stanza-bench for 3 s from the kill "
                        "into this file")
    parser.add_argument("--logs_dir", default="", help="copy the nodes' logs here at the end")
    args = parser.parse_args()
    if not 0 <= args.kill_at_s < args.duration_s:
        parser.error("--kill_at_s must be in [0, --duration_s)")
    if not os.path.exists(STANZA_BENCH):
        parser.error(f"no {STANZA_BENCH}: build stanza-bench or set STANZAD_BENCH_DIR")
    if args.bridges == 0:
        args.bridges = 50000
    if args.source_ips == 0:
        args.source_ips = min(args.bridges, 254 * 256)
    # Each stanza-bench holds one descriptor per bridge of its share, plus its own.
    raise_file_limit(min(args.bridges, args.bridges_per_bench) + 2000)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
    work = tempfile.mkdtemp(prefix="reconnect-storm-")
    connections_max = args.bridges * 12 // 10 + 1000
    # A node's connections are direct descriptors: each shard's share must fit the limit.
    if args.threads == 0:
        args.threads = max(1, -(-connections_max // (limit - 1000)))
    flags = [f"--connections_max={connections_max}"]
    nodes = [StanzadProcess(ip=f"127.0.0.{i + 1}", threads=args.threads, open_files_max=limit,
                            extra_flags=flags) for i in range(3)]
    try:
        address = start_cluster(nodes)
        wait_stable(nodes, address, timeout=60)
        secrets_path = import_bridges(nodes, args.bridges, work)
        result = run_storm(nodes, address, args, secrets_path, work)
        line = json.dumps(result)
        print(line, flush=True)
        if args.json_out:
            with open(args.json_out, "a") as f:
                f.write(line + "\n")
        back = result["storm_last_back_ms"]
        # Every bridge that lost its node is back (one refused by the victim before the
        # kill, e.g. by the per-address pre-auth cap, is on a survivor already).
        met = (result["bridges_gave_up"] == 0 and result["bridges_still_down"] == 0
               and result["storm_bridges_back"] >= result["bridges_failed_over"] > 0
               and back is not None and back <= 10000)
        print(f"\n{args.bridges} bridges on the {args.victim}, killed: the last back after "
              f"{back / 1000:.2f} s (p50 {result['storm_back_ms_p50'] / 1000:.2f} s, p99 "
              f"{result['storm_back_ms_p99'] / 1000:.2f} s); client: "
              f"{result['storm_tcp_connects_per_s']:.0f} connects/s and "
              f"{result['storm_handshakes_per_s']:.0f} handshakes/s over the storm (best 100 ms: "
              f"{result['storm_handshakes_per_s_best_100ms']:.0f}/s), the client's thread "
              f"{result['storm_client_cpu_busy_fraction'] * 100:.0f}% busy; survivors: "
              f"{result.get('survivors_accepts_per_s')} accepts/s and "
              f"{result.get('survivors_handshakes_per_s')} handshakes/s over "
              f"{result.get('survivors_storm_s')} s (100 ms samples), "
              f"{result.get('survivors_cpu_us_per_handshake')} us CPU per handshake; "
              f"{result['failed_attempts']} attempts failed, {result['bridges_gave_up']} gave up; "
              f"first stanza after the kill {result['kill_to_flow_ms']} ms; listen queues: "
              f"{result['listen_queue_counters']}")
        print(f"goal (every bridge back within 10 s, none refused for good): "
              f"{'met' if met else 'MISSED'}")
    finally:
        for node in nodes:
            node.stop(signal.SIGKILL)
            if args.logs_dir:
                os.makedirs(args.logs_dir, exist_ok=True)
                shutil.copy(node.log_path, os.path.join(args.logs_dir, f"{node.ip}.log"))
            node.cleanup()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
