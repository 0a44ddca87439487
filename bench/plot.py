#!/usr/bin/python3
"""Draws stanza-bench results as PNG charts with gnuplot (Debian's gnuplot-nox).

Input: files of JSON lines, one stanza-bench result each (bench/relay_compare.py
--json_out and bench/compare_servers.sh write them), with a "label" naming the
server ("stanzad", "tcp-relay", "prosody", "ejabberd"; when absent, taken from
"protocol").

Output, in --out_dir:
  throughput.png  median stanzas/s per server and bridge count (throughput mode)
  latency.png     p50 / p99 / p99.9 per server and bridge count (latency mode)
  failover.png    per trial: time from SIGKILL of the leader to a new leader and
                  to the first committed change (bench/cluster_failover.py)

Usage: /usr/bin/python3 bench/plot.py --out_dir=docs/img RESULTS.jsonl [...]
"""
import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
import tempfile


def load(paths):
    rows = []
    for path in paths:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                row = json.loads(line)
                row.setdefault("label", "tcp-relay" if row.get("protocol") == "relay"
                               else "stanzad")
                rows.append(row)
    return rows


def gnuplot(script):
    result = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True,
                            timeout=60)
    if result.returncode != 0:
        sys.exit(f"gnuplot failed ({result.returncode}): {result.stderr}{result.stdout}")


def histogram(data_path, out_png, title, ylabel, columns, logscale):
    plots = ", ".join(
        f"'{data_path}' using {i + 2}:xtic(1) title '{name}'" for i, name in enumerate(columns))
    gnuplot(f"""
set terminal pngcairo size 900,500 font ',10'
set output '{out_png}'
set title '{title}'
set ylabel '{ylabel}'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top right
set grid ytics
{'set logscale y' if logscale else ''}
set yrange [{'1' if logscale else '0'}:*]
plot {plots}
""")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out_dir", default="docs/img")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    rows = load(args.files)
    os.makedirs(args.out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="stanza-plot-")

    throughput = collections.defaultdict(list)  # (bridges, label) -> values
    for row in rows:
        if row.get("mode") == "throughput":
            throughput[(row["bridges"], row["label"])].append(row["stanzas_per_s"])
    if throughput:
        labels = sorted({label for _, label in throughput})
        path = os.path.join(work, "throughput.dat")
        with open(path, "w") as f:
            for bridges in sorted({b for b, _ in throughput}):
                values = [statistics.median(throughput.get((bridges, l), [0])) for l in labels]
                f.write(f'"{bridges} bridges" ' + " ".join(f"{v:.0f}" for v in values) + "\n")
        histogram(path, os.path.join(args.out_dir, "throughput.png"),
                  "Component-to-component stanzas/s (median of runs; log scale)",
                  "stanzas per second", labels, logscale=True)

    latency = collections.defaultdict(list)  # (bridges, label) -> rows
    for row in rows:
        if row.get("mode") == "latency":
            latency[(row["bridges"], row["label"])].append(row)
    if latency:
        path = os.path.join(work, "latency.dat")
        columns = []
        with open(path, "w") as f:
            for (bridges, label), runs in sorted(latency.items()):
                rate = runs[0].get("rate", 0)
                values = [statistics.median(r[k] for r in runs)
                          for k in ("p50_us", "p99_us", "p999_us")]
                f.write(f'"{label} {bridges}b @{rate / 1000:.0f}k/s" '
                        + " ".join(f"{v:.1f}" for v in values) + "\n")
            columns = ["p50", "p99", "p99.9"]
        histogram(path, os.path.join(args.out_dir, "latency.png"),
                  "Latency at half of the stanzad peak rate (median of runs; log scale)",
                  "microseconds", columns, logscale=True)
    failover = [row for row in rows if row.get("mode") == "failover"]
    if failover:
        path = os.path.join(work, "failover.dat")
        with open(path, "w") as f:
            for row in failover:
                f.write(f"{row['trial']} {row['new_leader_ms']} {row['first_commit_ms']}\n")
        gnuplot(f"""
set terminal pngcairo size 900,400 font ',10'
set output '{os.path.join(args.out_dir, "failover.png")}'
set title 'Leader killed with SIGKILL: a new leader, and the first change committed (3 nodes)'
set xlabel 'trial'
set ylabel 'milliseconds after the kill'
set grid
set key top right
set yrange [0:*]
plot '{path}' using 1:3 with linespoints pt 7 title 'first change committed', \\
     '{path}' using 1:2 with linespoints pt 5 title 'new leader'
""")
    print(f"wrote charts to {args.out_dir}")


if __name__ == "__main__":
    main()
