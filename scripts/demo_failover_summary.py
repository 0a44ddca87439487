#!/usr/bin/python3
"""Prints the last stanza-bench JSON line from standard input as the demo's summary.

Usage: ... | demo_failover_summary.py [leader]
  leader: the run killed the leader (--kill_pid) with the bridges on the others.
  (none): the run killed a node that had bridges (--failover).
"""
import json
import sys

lines = [line for line in sys.stdin.read().splitlines() if line.startswith("{")]
if not lines:
    sys.exit("stanza-bench printed no result")
r = json.loads(lines[-1])
if sys.argv[1:] == ["leader"]:
    flow = r.get("kill_to_flow_ms")
    print(f"  failover: stanzas flowed end to end again {flow} ms after the SIGKILL "
          f"(longest time without a delivery: {r['max_delivery_gap_ms']} ms)")
    print(f"  sent {r['sent']:,}, delivered {r['delivered']:,}, lost {r['lost']}, "
          f"duplicated {r['duplicated']}, answered with an error {r['bounced']}")
    sys.exit(0)
print(f"  sent {r['sent']:,}, delivered {r['delivered']:,}, answered with an error "
      f"{r['bounced']}, lost {r['lost']}, duplicated {r['duplicated']}, "
      f"arrived late (re-sent) {r.get('reordered', 0)}")
print(f"  {r['bridges_failed_over']} bridges failed over to another node, each without a "
      f"server for at most {r['down_ms_max']} ms; p99 latency {r['p99_us'] / 1000:.1f} ms")
print("  (lost: what the killed node itself held; see docs/benchmarks.md)")
