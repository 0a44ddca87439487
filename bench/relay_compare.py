#!/usr/bin/python3
"""stanzad against the raw TCP relay, in one run (issue 4's relay goals).

Starts stanzad (--threads=2, bridges b0..b{N-1}) and bench/tcp_relay
(--threads=2) on loopback, then for each bridge count:
  1. throughput: stanza-bench against the relay and against stanzad, taking
     turns, --runs times; reports each run and the ratio of the medians
     (goal: stanzad >= 50% of the relay);
  2. latency: the rate is half of stanzad's median peak from step 1 (or
     --latency_rate); again the
     relay and stanzad take turns, --runs times, at that same rate; reports
     p50/p99/p999 and the ratio of p99s per pair of runs (goal: stanzad's p99
     <= 2x the relay's).
Prints one JSON line per run and a summary table. Bounded: every stanza-bench
call has a timeout; both servers are stopped on exit.

Usage: STANZAD_BIN_DIR=build/cmd /usr/bin/python3 bench/relay_compare.py \\
           [--bench_dir=build/bench] [--bridges=20,200] [--runs=3] [--duration_s=5] \\
           [--json_out=results.jsonl]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../tests/integration"))
from stanzad_harness import StanzadProcess, free_port, wait_until  # noqa: E402


def bench(args, extra, timeout, label):
    command = [os.path.join(args.bench_dir, "stanza-bench")] + extra
    out = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {out.stderr.strip()}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["label"] = label
    print(json.dumps(result), flush=True)
    if args.json_out:
        with open(args.json_out, "a") as f:
            f.write(json.dumps(result) + "\n")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bench_dir", default="build/bench")
    parser.add_argument("--bridges", default="20,200")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration_s", type=float, default=5)
    parser.add_argument("--warmup_s", type=float, default=1)
    parser.add_argument("--json_out", default="", help="append every result here (bench/plot.py)")
    parser.add_argument("--latency_rate", type=int, default=0,
                        help="stanzas/s for the latency runs (default: half of stanzad's peak)")
    args = parser.parse_args()
    counts = [int(n) for n in args.bridges.split(",")]

    relay_port = free_port()
    relay = subprocess.Popen(
        [os.path.join(args.bench_dir, "tcp-relay"), f"--listen=127.0.0.1:{relay_port}",
         "--threads=2"], stderr=subprocess.DEVNULL)
    # Every bridge connects from 127.0.0.1 at once: no per-address pre-auth cap.
    node = StanzadProcess(threads=2, extra_flags=["--preauth_connections_per_ip_max=0"]).start()
    summary = []
    try:
        node.wait_serving()
        for i in range(max(counts)):
            code, out = node.admin("callbridge", "add", f"b{i}")
            assert code == 0, out
        secrets_path = os.path.join(node.state_dir, "secrets.json")
        with open(secrets_path, "w") as f:
            f.write(node.stanzactl("callbridge", "list", json=True)[1])

        def wait_relay():
            import socket
            try:
                socket.create_connection(("127.0.0.1", relay_port), timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_until(wait_relay, what="tcp-relay listening")

        timing = [f"--duration_s={args.duration_s}", f"--warmup_s={args.warmup_s}"]
        limit = args.duration_s + args.warmup_s + 90
        for n in counts:
            relay_flags = ["--protocol=relay", f"--server=127.0.0.1:{relay_port}",
                           f"--bridges={n}"] + timing
            xmpp_flags = [f"--server=127.0.0.1:{node.port}", f"--secrets_json={secrets_path}",
                          f"--bridges={n}"] + timing
            peaks = {"relay": [], "stanzad": []}
            for _ in range(args.runs):
                peaks["relay"].append(bench(args, relay_flags, limit, "tcp-relay")["stanzas_per_s"])
                peaks["stanzad"].append(bench(args, xmpp_flags, limit, "stanzad")["stanzas_per_s"])
            relay_peak = statistics.median(peaks["relay"])
            stanzad_peak = statistics.median(peaks["stanzad"])
            rate = args.latency_rate or int(stanzad_peak / 2)
            p99 = {"relay": [], "stanzad": []}
            detail = {"relay": [], "stanzad": []}
            for _ in range(args.runs):
                for name, flags in (("relay", relay_flags), ("stanzad", xmpp_flags)):
                    r = bench(args, flags + ["--mode=latency", f"--rate={rate}"], limit,
                              "tcp-relay" if name == "relay" else "stanzad")
                    p99[name].append(r["p99_us"])
                    detail[name].append((r["p50_us"], r["p99_us"], r["p999_us"]))
            ratios = [s / r if r else float("inf") for s, r in zip(p99["stanzad"], p99["relay"])]
            summary.append((n, peaks, relay_peak, stanzad_peak, rate, detail, ratios))
    except Exception:
        print("stanzad log tail:\n" + "".join(node.read_log().splitlines(True)[-20:]),
              file=sys.stderr)
        raise
    finally:
        node.cleanup()
        relay.terminate()
        relay.wait(timeout=10)

    print()
    for n, peaks, relay_peak, stanzad_peak, rate, detail, ratios in summary:
        print(f"bridges={n}")
        print(f"  throughput relay   stanzas/s: {', '.join(f'{x:,.0f}' for x in peaks['relay'])}"
              f" (median {relay_peak:,.0f})")
        print(f"  throughput stanzad stanzas/s: {', '.join(f'{x:,.0f}' for x in peaks['stanzad'])}"
              f" (median {stanzad_peak:,.0f})")
        print(f"  stanzad / relay = {stanzad_peak / relay_peak:.2f} (goal >= 0.50)")
        print(f"  latency at {rate:,} stanzas/s (p50 / p99 / p999 us):")
        for name in ("relay", "stanzad"):
            runs = "; ".join(f"{a:.0f} / {b:.0f} / {c:.0f}" for a, b, c in detail[name])
            print(f"    {name:8s} {runs}")
        print(f"  p99 stanzad / relay per run: {', '.join(f'{x:.2f}' for x in ratios)}"
              f" (goal <= 2.00; median {statistics.median(ratios):.2f})")


if __name__ == "__main__":
    main()
