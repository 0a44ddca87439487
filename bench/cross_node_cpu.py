#!/usr/bin/python3
"""Server CPU per stanza that crosses nodes, against one that stays on a node (issue 13).

Starts a 3-node cluster on 127.0.0.1-3 (--threads=THREADS each, --routing=ROUTING),
adds BRIDGES bridges, then takes turns, --rounds times:
  cross: stanza-bench with the bridges on nodes 2 and 3 (node 1 initialized the cluster
         and leads it), bridge i sending to bridge i+1, so every stanza crosses from
         one node to the other (in leader mode through the leader);
  local: the same bridges all on node 2 (nothing crosses).
For each run it reads the CPU seconds (user + system) of the three stanzad processes
from /proc before and after, and divides by the stanzas delivered: server CPU per
stanza. Prints one JSON line per run, then the ratio cross / local per round and its
median (goals: <= 1.5 with --routing=direct, <= 2.5 with leader).

--spread: each round also runs the bridges spread over all three nodes (bridge i on
node i mod 3; every stanza crosses) and prints its throughput as a ratio to the local
run's (one node): what three nodes route against one, on the same machine.

--saturate_s=N: instead of the rounds, one cross run of N seconds; before and after it
reads every node's /metrics and prints, per follower, how its leader's Raft messages
were spaced under that load (stanzad_raft_leader_gap_seconds: the p99 from the
histogram's buckets, an upper bound; goal <= 100 ms) and the Raft terms (a change is a
leader election; goal: none).

Usage: STANZAD_BIN_DIR=build/cmd /usr/bin/python3 bench/cross_node_cpu.py \\
           [--bench_dir=build/bench] [--routing=direct] [--bridges=20] [--rounds=3] \\
           [--threads=1] [--duration_s=5] [--spread] [--saturate_s=60]
Bounded: every stanza-bench call has a timeout; the nodes are stopped on exit.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../tests/integration"))
from stanzad_harness import StanzadProcess, wait_until  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def status(node):
    code, out, err = node.stanzactl("cluster", "status", json=True)
    assert code == 0, out + err
    return json.loads(out)


def gap_histogram(node):
    """(cumulative counts by upper bound in ms, count) of the node's leader gaps."""
    with urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port}/metrics",
                                timeout=10) as response:
        lines = response.read().decode().splitlines()
    buckets, count = {}, 0
    for line in lines:
        if line.startswith("stanzad_raft_leader_gap_seconds_bucket{le=\""):
            bound = line.split('"')[1]
            value = int(float(line.rsplit(" ", 1)[1]))
            if bound != "+Inf":
                buckets[float(bound) * 1000] = value
        elif line.startswith("stanzad_raft_leader_gap_seconds_count "):
            count = int(float(line.rsplit(" ", 1)[1]))
    return buckets, count


def gap_p99_ms(before, after):
    """The upper bound of the bucket holding the 99th percentile of the gaps between two
    readings (inf: beyond the last bound)."""
    (b0, c0), (b1, c1) = before, after
    total = c1 - c0
    if total == 0:
        return None, 0
    for bound in sorted(b1):
        if b1[bound] - b0.get(bound, 0) >= 0.99 * total:
            return bound, total
    return float("inf"), total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench_dir", default="build/bench")
    parser.add_argument("--routing", default="direct", choices=("direct", "leader"))
    parser.add_argument("--bridges", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--duration_s", type=float, default=5)
    parser.add_argument("--spread", action="store_true")
    parser.add_argument("--saturate_s", type=float, default=0)
    args = parser.parse_args()

    flags = [f"--routing={args.routing}", "--preauth_connections_per_ip_max=0"]
    nodes = []
    try:
        for i in range(3):
            node = StanzadProcess(ip=f"127.0.0.{i + 1}", threads=args.threads,
                                  extra_flags=flags)
            nodes.append(node)
            node.start()
            node.wait_serving()
        for node in nodes:
            assert node.admin("cluster", "enable")[0] == 0
        assert nodes[0].admin("cluster", "initialize")[0] == 0
        for node in nodes[1:]:
            code, out = node.join(nodes[0])
            assert code == 0, out
        for node in nodes:
            wait_until(lambda node=node: all(
                m["data_links_total"] > 0 and m["data_links_up"] == m["data_links_total"]
                for m in status(node)["members"] if not m["self"]),
                timeout=30, what=f"{node.ip}'s data links up")
        for i in range(args.bridges):
            assert nodes[0].admin("callbridge", "add", f"b{i}")[0] == 0
        secrets = os.path.join(nodes[0].state_dir, "secrets.json")
        with open(secrets, "w") as f:
            f.write(nodes[0].stanzactl("callbridge", "list", json=True)[1])
        for node in nodes:  # the bridges replicated everywhere
            wait_until(lambda node=node: f"Callbridge : b{args.bridges - 1}\n" in
                       node.stanzactl("callbridge", "list")[1], what="bridges replicated")

        def run(label, servers, duration_s=args.duration_s):
            before = sum(cpu_seconds(n.process.pid) for n in nodes)
            out = subprocess.run(
                [os.path.join(args.bench_dir, "stanza-bench"), f"--bridges={args.bridges}",
                 f"--server={servers}", f"--secrets_json={secrets}",
                 f"--duration_s={duration_s}", "--warmup_s=1"],
                capture_output=True, text=True, timeout=duration_s + 90)
            after = sum(cpu_seconds(n.process.pid) for n in nodes)
            if out.returncode != 0:
                raise RuntimeError(f"stanza-bench failed: {out.stderr.strip()}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            result.update(label=label, routing=args.routing, threads=args.threads,
                          server_cpu_s=round(after - before, 3),
                          cpu_us_per_stanza=round((after - before) * 1e6 /
                                                  max(1, result["delivered"]), 3))
            print(json.dumps(result), flush=True)
            return result

        cross_servers = f"127.0.0.2:{nodes[1].port},127.0.0.3:{nodes[2].port}"
        if args.saturate_s > 0:
            terms = [status(n)["term"] for n in nodes]
            before = [gap_histogram(n) for n in nodes]
            run("saturate", cross_servers, duration_s=args.saturate_s)
            after = [gap_histogram(n) for n in nodes]
            new_terms = [status(n)["term"] for n in nodes]
            for i, node in enumerate(nodes):
                p99, gaps = gap_p99_ms(before[i], after[i])
                print(f"node {i + 1}: term {terms[i]} -> {new_terms[i]}; leader gaps {gaps}, "
                      f"p99 <= {p99} ms (goal <= 100)", flush=True)
            print(f"leader elections during the load: {max(new_terms) - max(terms)} (goal 0)")
            return
        ratios = []
        spread_ratios = []
        spread_servers = f"{cross_servers},127.0.0.1:{nodes[0].port}"
        for _ in range(args.rounds):
            cross = run("cross", cross_servers)
            local = run("local", f"127.0.0.2:{nodes[1].port}")
            if args.spread:
                spread = run("spread", spread_servers)
                spread_ratios.append(spread["stanzas_per_s"] / local["stanzas_per_s"])
                print(f"spread over 3 nodes: {spread['stanzas_per_s']:,.0f}/s, "
                      f"{spread_ratios[-1]:.2f}x one node's", flush=True)
            ratios.append(cross["cpu_us_per_stanza"] / local["cpu_us_per_stanza"])
            print(f"round: cross {cross['stanzas_per_s']:,.0f}/s at "
                  f"{cross['cpu_us_per_stanza']:.2f} us/stanza (lost {cross['lost']}, "
                  f"duplicated {cross['duplicated']}); local {local['stanzas_per_s']:,.0f}/s at "
                  f"{local['cpu_us_per_stanza']:.2f} us; ratio {ratios[-1]:.2f}", flush=True)
        goal = 1.5 if args.routing == "direct" else 2.5
        print(f"CPU per stanza, cross / local ({args.routing}): "
              f"{', '.join(f'{r:.2f}' for r in ratios)}; median {statistics.median(ratios):.2f} "
              f"(goal <= {goal})")
        if spread_ratios:
            print(f"throughput, 3 nodes / 1 node: {', '.join(f'{r:.2f}' for r in spread_ratios)}; "
                  f"median {statistics.median(spread_ratios):.2f}")
    finally:
        for node in nodes:
            node.cleanup()


if __name__ == "__main__":
    main()
