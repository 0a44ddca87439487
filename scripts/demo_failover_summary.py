#!/usr/bin/python3
"""Prints the last stanza-bench JSON line from standard input as the demo's summary."""
import json
import sys

lines = [line for line in sys.stdin.read().splitlines() if line.startswith("{")]
if not lines:
    sys.exit("stanza-bench printed no result")
r = json.loads(lines[-1])
print(f"  sent {r['sent']:,}, delivered {r['delivered']:,}, answered with an error "
      f"{r['bounced']}, lost {r['lost']}, duplicated {r['duplicated']}, "
      f"arrived late (re-sent) {r.get('reordered', 0)}")
print(f"  {r['bridges_failed_over']} bridges failed over to another node, each without a "
      f"server for at most {r['down_ms_max']} ms; p99 latency {r['p99_us'] / 1000:.1f} ms")
print("  (lost: what the killed node itself held; see docs/benchmarks.md)")
