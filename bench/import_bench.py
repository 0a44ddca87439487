#!/usr/bin/env python3
"""Bulk import at size on a 3-node cluster: `stanzactl callbridge import` of N bridges and
`stanzactl user import` of M users (XEP-0227 with SCRAM credentials, so no password is
hashed), run on a follower, then the lists and exports, and a fourth node joining (it
receives and installs the snapshot of everything).

    STANZAD_BIN_DIR=build/cmd bench/import_bench.py [--bridges 100000] [--users 1000000]
        [--changes 200]

The files are written first (random salts and keys, valid in form; nobody logs in). Each
step is timed from stanzactl's start to its exit; the import rates, the time for a joining
node to hold every bridge and user, and the resident memory of the leader before and after
are printed. With --changes N, N `callbridge add-secret` and N `user add` are then timed one
at a time on a follower and on the leader (30 s after the import, before the join), from
the admin socket to the answer (committed and applied there), with everything present: p50,
p90, p99 and max in milliseconds, as bench/config_change_latency.py prints them. Every wait
is bounded; the daemons are the bench's own and are killed by PID.
IMPORT_BENCH_LOGS=DIR keeps the nodes' logs there.
"""
import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("STANZAD_TEST_SLOWDOWN", "30")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from stanzad_harness import DOMAIN, STANZACTL, StanzadProcess  # noqa: E402
from config_change_latency import credentials_text, form_cluster, ok, percentile  # noqa: E402
from config_change_latency import timed as timed_changes  # noqa: E402

STEP_SECONDS_MAX = 900
QUIET_SECONDS = 30  # before single changes are timed


def b64(n):
    return base64.b64encode(os.urandom(n)).decode()


def write_bridges(path, count):
    with open(path, "w") as f:
        for i in range(count):
            f.write(f"bridge{i} {b64(15)}\n")


def write_users(path, count):
    """XEP-0227 as Prosody writes it: SCRAM-SHA-1 and -256 for every user."""
    with open(path, "w") as f:
        f.write(f"<?xml version='1.0'?>\n<server-data xmlns='urn:xmpp:pie:0'>"
                f"<host jid='{DOMAIN}'>\n")
        for i in range(count):
            f.write(f"<user name='user{i}'>"
                    f"<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>"
                    f"<iter-count>4096</iter-count><salt>{b64(16)}</salt>"
                    f"<server-key>{b64(20)}</server-key><stored-key>{b64(20)}</stored-key>"
                    f"</scram-credentials>"
                    f"<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-256'>"
                    f"<iter-count>4096</iter-count><salt>{b64(16)}</salt>"
                    f"<server-key>{b64(32)}</server-key><stored-key>{b64(32)}</stored-key>"
                    f"</scram-credentials></user>\n")
        f.write("</host></server-data>\n")


def timed(node, *args):
    """Runs stanzactl on `node` (its output thrown away); the seconds it took, or raises."""
    start = time.monotonic()
    result = subprocess.run([STANZACTL, f"--state_dir={node.state_dir}"] + list(args),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            timeout=STEP_SECONDS_MAX)
    seconds = time.monotonic() - start
    if result.returncode != 0:
        raise RuntimeError(f"stanzactl {' '.join(args)}: exit {result.returncode}: "
                           f"{result.stderr[-2000:]}")
    return seconds


def rss_mib(node):
    with open(f"/proc/{node.process.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def counts(node):
    code, out, err = node.stanzactl("status", json=True)
    if code != 0:
        return (-1, -1)
    status = json.loads(out)
    return status["callbridges_configured"], status["users_configured"]


def wait_for_counts(node, bridges, users):
    deadline = time.monotonic() + STEP_SECONDS_MAX
    while counts(node) != (bridges, users):
        assert time.monotonic() < deadline, f"{node.ip} never held everything"
        time.sleep(0.1)


def run(args, nodes, bridges_path, users_path):
    nodes[0].start()
    form_cluster(nodes, [])
    leader, follower = nodes[0], nodes[1]
    rss_before = rss_mib(leader)
    seconds = timed(follower, "callbridge", "import", bridges_path)
    print(f"callbridge import: {args.bridges} in {seconds:.2f} s "
          f"({args.bridges / seconds:,.0f}/s), on a follower", flush=True)
    seconds = timed(follower, "user", "import", users_path)
    print(f"user import (XEP-0227, SCRAM): {args.users} in {seconds:.2f} s "
          f"({args.users / seconds:,.0f}/s), on a follower", flush=True)
    for node in nodes:
        wait_for_counts(node, args.bridges, args.users)
    rss_after = rss_mib(leader)
    per_item = (rss_after - rss_before) * 1024 * 1024 / (args.bridges + args.users)
    print(f"leader RSS {rss_before:.0f} -> {rss_after:.0f} MiB "
          f"({per_item:.0f} B per configured bridge or user)", flush=True)
    for command in (("callbridge", "list"), ("callbridge", "export"), ("user", "list"),
                    ("user", "export")):
        print(f"{' '.join(command)}: {timed(follower, *command):.2f} s", flush=True)
    # The import is about 1,100 entries; each member snapshots after 1,000 to 1,437 (by its
    # id). Small changes until every member has a snapshot, so that the joiner is sent one
    # (and does not replay the log).
    changes = 0
    while changes < 1000 and not all(
            os.path.exists(os.path.join(node.state_dir, "cluster", "raft_snapshot"))
            for node in nodes):
        ok(follower, "user", "del", f"user{changes}")
        changes += 1
    print(f"{changes} small changes until every member had taken a snapshot", flush=True)
    added = (0, 0)
    if args.changes:
        added = time_changes(args, {"follower": follower, "leader": leader}, args.users - changes)
    joiner = StanzadProcess(ip="127.0.0.4", threads=1)
    nodes.append(joiner)
    joiner.start()
    ok(joiner, "cluster", "enable")
    start = time.monotonic()
    try:
        code, out = joiner.join(leader)
        if code != 0:
            # The join command waits a bounded time for the configuration; the node goes on.
            print(f"join answered: {out.strip()}", flush=True)
    except TimeoutError:
        print("join: no answer within the harness's 10 s; waiting for the counts", flush=True)
    wait_for_counts(joiner, args.bridges + added[0], args.users - changes + added[1])
    print(f"a fourth node joins and holds every bridge and user: "
          f"{time.monotonic() - start:.2f} s", flush=True)


def time_changes(args, targets, users):
    """Times single changes with every bridge and user present (see the module's text)."""
    credentials = credentials_text(os.environ.get("STANZAD_BIN_DIR", ""))
    # Once the members' own work after the import has had time to end: their snapshots and
    # mirror rewrites (which start when changes pause 2 s), hundreds of MB each on the one
    # disk the three nodes share here. Steady state, where neither comes often: a snapshot
    # after the log holds half the last one's bytes, a rewrite after the journal holds 3x
    # the config.
    time.sleep(QUIET_SECONDS)
    deadline = time.monotonic() + STEP_SECONDS_MAX
    added = [0, 0]  # bridges, users
    for where, target in targets.items():
        for command, args_for in (
                ("callbridge add-secret",
                 lambda i: ("callbridge", "add-secret", f"{where}{i}", "--secret=benchSecret01")),
                ("user add", lambda i: ("user", "add", f"{where}{i}", credentials))):
            latencies = timed_changes(target, args_for, args.changes, deadline)
            added[0 if command.startswith("callbridge") else 1] += len(latencies)
            if not latencies:
                print(f"{where} {command}: no change timed before the deadline", flush=True)
                continue
            print(f"cluster bridges={args.bridges} users={users} {where} {command:21s} "
                  f"n={len(latencies)} p50={percentile(latencies, 0.5):.2f} "
                  f"p90={percentile(latencies, 0.9):.2f} p99={percentile(latencies, 0.99):.2f} "
                  f"max={max(latencies):.2f} ms", flush=True)
    return tuple(added)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bridges", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=0,
                        help="then time this many single changes per command and node")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="import_bench.")
    bridges_path = os.path.join(work, "bridges.txt")
    users_path = os.path.join(work, "users.xml")
    nodes = [StanzadProcess(ip="127.0.0.1", threads=1)]
    try:
        start = time.monotonic()
        write_bridges(bridges_path, args.bridges)
        write_users(users_path, args.users)
        print(f"files: {args.bridges} bridges ({os.path.getsize(bridges_path) >> 10} KiB), "
              f"{args.users} users ({os.path.getsize(users_path) >> 20} MiB) written in "
              f"{time.monotonic() - start:.1f} s", flush=True)
        run(args, nodes, bridges_path, users_path)
    finally:
        keep = os.environ.get("IMPORT_BENCH_LOGS")
        for node in nodes:
            if keep:
                os.makedirs(keep, exist_ok=True)
                with open(os.path.join(keep, f"{node.ip}.log"), "w") as f:
                    f.write(node.read_log())
            node.cleanup()
        for path in (bridges_path, users_path):
            if os.path.exists(path):
                os.remove(path)
        os.rmdir(work)


if __name__ == "__main__":
    main()
