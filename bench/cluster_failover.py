#!/usr/bin/python3
"""Leader failover time of a real 3-node stanzad cluster on 127.0.0.1-3.

Forms the cluster with stanzactl, then --trials times: SIGKILLs the leader,
measures the time until both survivors name the same new leader (polling their
admin sockets every 2 ms), and the time until a configuration change commits
through the new leader; restarts the killed node and waits until it has caught
up. Prints one JSON line per trial and a summary; --json_out appends the lines
for bench/plot.py.

Usage: STANZAD_BIN_DIR=build/cmd /usr/bin/python3 bench/cluster_failover.py [--trials=20]
"""
import argparse
import json
import os
import re
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../tests/integration"))
from stanzad_harness import StanzadProcess, wait_until  # noqa: E402


def leader_of(node):
    code, out = node.admin("cluster", "status")
    if code != 0:
        return None
    for line in out.splitlines():
        if line.endswith(" (Leader)"):
            return line[: -len(" (Leader)")]
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--json_out", default="")
    args = parser.parse_args()

    nodes = [StanzadProcess(ip=f"127.0.0.{i + 1}", threads=1) for i in range(3)]
    results = []
    try:
        for node in nodes:
            node.start()
            node.wait_serving()
            assert node.admin("cluster", "enable")[0] == 0
        address = {id(n): f"{n.ip}:{n.cluster_port}" for n in nodes}
        assert nodes[0].admin("cluster", "initialize")[0] == 0
        for node in nodes[1:]:
            code, out = node.admin("cluster", "join", address[id(nodes[0])])
            assert code == 0, out
        for trial in range(args.trials):
            old = leader_of(nodes[0]) or leader_of(nodes[1])
            victim = next(n for n in nodes if address[id(n)] == old)
            survivors = [n for n in nodes if n is not victim]
            victim.stop(signal.SIGKILL)
            killed = time.monotonic()
            deadline = killed + 10
            while True:
                leaders = {leader_of(n) for n in survivors}
                if len(leaders) == 1 and None not in leaders and old not in leaders:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"trial {trial}: no new leader in 10 s")
                time.sleep(0.002)
            elected = time.monotonic()
            code, out = survivors[0].admin("callbridge", "add", f"t{trial}")
            assert code == 0, out
            committed = time.monotonic()
            result = {"mode": "failover", "label": "stanzad", "trial": trial,
                      "new_leader_ms": round((elected - killed) * 1000, 1),
                      "first_commit_ms": round((committed - killed) * 1000, 1)}
            results.append(result)
            print(json.dumps(result), flush=True)
            if args.json_out:
                with open(args.json_out, "a") as f:
                    f.write(json.dumps(result) + "\n")
            victim.start(seed=False)
            victim.wait_serving()
            wait_until(lambda: re.search(f"Callbridge : t{trial}\\n",
                                         victim.admin("callbridge", "list")[1]) is not None,
                       timeout=15, what="the restarted node catching up")
    finally:
        for node in nodes:
            node.cleanup()
    elected = sorted(r["new_leader_ms"] for r in results)
    commits = sorted(r["first_commit_ms"] for r in results)

    def pct(values, p):
        return values[min(len(values) - 1, int(p * len(values)))]
    print(f"\n{len(results)} trials: new leader after SIGKILL median "
          f"{statistics.median(elected):.1f} ms, "
          f"p90 {pct(elected, 0.9)} ms, max {elected[-1]} ms; first change committed "
          f"median {statistics.median(commits):.1f} ms, max {commits[-1]} ms")


if __name__ == "__main__":
    main()
