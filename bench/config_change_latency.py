#!/usr/bin/env python3
"""Configuration change latency at size: `callbridge add-secret` and `user add` timed from the
admin socket to the answer (committed, durable and live), with N bridges and M users present.

    STANZAD_BIN_DIR=build/cmd bench/config_change_latency.py [--sizes 1000:10000,10000:100000]
        [--changes 200] [--cluster]

Each size is BRIDGES:USERS (a little less is filled at config::kCallbridgesMax and
kUsersMax, leaving room for the changes timed). One node is filled before it starts: the
bench writes its `config` file (one bridge and one user line each; every user has the same
SCRAM credentials, which stanzactl made once), so filling costs seconds. With --cluster, three
nodes on 127.0.0.1-3 form a cluster empty and are filled with ordinary admin requests to the
leader, 64 in flight (the leader batches them into few Raft writes); the changes are then
timed on a follower (forwarded to the leader) and on the leader. Password hashing is
excluded: the credentials text is made before the clock starts, as stanzactl does before it
sends.

Prints one line per size and command: p50, p90, p99 and max in milliseconds. Every loop is
bounded in count and time; the daemons are the bench's own and are killed by PID at the end.
"""
import argparse
import os
import re
import selectors
import socket
import sys
import time

# A node with a million users takes more than the harness's 10 s to parse its config and
# open its admin socket: the harness's bounds on waiting scale with this.
os.environ.setdefault("STANZAD_TEST_SLOWDOWN", "30")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from stanzad_harness import DOMAIN, StanzadProcess  # noqa: E402

SECRET = "benchSecret0001"
FILL_SECONDS_MAX = 1800  # one size's fill and cluster formation


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def credentials_text(bin_dir):
    """SCRAM credentials as the config file stores them, made once by stanzactl."""
    node = StanzadProcess(threads=1).start()
    try:
        code, _, err = node.stanzactl("user", "add", "seed", stdin="bench-password\n")
        assert code == 0, err
        node.stop()
        node.start()  # the daemon folds its journal into the config file as it starts
        with open(os.path.join(node.state_dir, "config")) as f:
            match = re.search(r"^user seed (.+)$", f.read(), re.M)
        assert match, "no user line in the config"
        return match.group(1)
    finally:
        node.cleanup()


def fill(node, bridges, users, credentials):
    """Writes the node's config file with `bridges` bridges and `users` users."""
    with open(os.path.join(node.state_dir, "config"), "w") as f:
        f.write(f"stanzad-config 1\ndomain {DOMAIN}\nlisten {node.ip}\nenabled 1\n")
        for i in range(bridges):
            f.write(f"callbridge fill{i} {SECRET}\n")
        line_tail = " " + credentials + "\n"
        f.writelines(f"user fill{i}" + line_tail for i in range(users))
    os.chmod(os.path.join(node.state_dir, "config"), 0o600)


def admin(node, *args, timeout_s=10):
    """node.admin with a longer timeout: initialize with a large seed takes a while."""
    request = b"stanzactl 1\njson 0\n"
    for arg in args:
        data = arg.encode()
        request += b"arg %d\n%s\n" % (len(data), data)
    request += b"end\n"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        s.connect(os.path.join(node.state_dir, "stanzad.sock"))
        s.sendall(request)
        response = b""
        while chunk := s.recv(65536):
            response += chunk
    header, _, body = response.partition(b"\n")
    return int(header.split()[1]), body.decode()


def ok(node, *args):
    code, out = admin(node, *args, timeout_s=FILL_SECONDS_MAX)
    assert code == 0, f"{args}: {out}"
    return out


def request_bytes(args):
    request = b"stanzactl 1\njson 0\n"
    for arg in args:
        data = arg.encode()
        request += b"arg %d\n%s\n" % (len(data), data)
    return request + b"end\n"


def pipelined(nodes, requests, window=64, seconds_max=FILL_SECONDS_MAX):
    """Sends `requests` (argument lists) over up to `window` admin connections at once, so
    that the leader puts many proposals into one Raft write; every answer must be exit 0.
    The daemon reads at most 16 requests at once (admin_socket.h) and closes a connection
    beyond that at once: such a request is sent again."""
    selector = selectors.DefaultSelector()
    target = [nodes[0]]  # the leader, as far as the answers tell
    pending = iter(requests)
    retry = []
    resets = 0
    retries = 0
    in_flight = 0
    done = 0
    deadline = time.monotonic() + seconds_max
    started = time.monotonic()

    def open_next():
        args = retry.pop() if retry else next(pending, None)
        if args is None:
            return False
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(os.path.join(target[0].state_dir, "stanzad.sock"))
            s.sendall(request_bytes(args))
        except OSError:
            pass  # refused: the read below sees it and sends it again
        selector.register(s, selectors.EVENT_READ, [args, b""])
        return True

    while in_flight < window and open_next():
        in_flight += 1
    while in_flight:
        assert time.monotonic() < deadline, f"fill: {done} done in {seconds_max} s"
        for key, _ in selector.select(timeout=10):
            try:
                chunk = key.fileobj.recv(65536)
            except ConnectionResetError:
                chunk = None
            if chunk:
                key.data[1] += chunk
                continue
            selector.unregister(key.fileobj)
            key.fileobj.close()
            in_flight -= 1
            if chunk is None or not key.data[1]:  # refused unread: again
                resets += 1
                assert resets < 10 * window + len(retry) + done, "too many refused requests"
                retry.append(key.data[0])
                if open_next():
                    in_flight += 1
                continue
            answer = key.data[1]
            if not answer.startswith(b"exit 0\n") and b"already exists" not in answer:
                # The leader changed under the load (the answer says so): sent again, and
                # "already exists" then means the first try committed.
                retries += 1
                assert retries <= RETRIES_MAX, f"{key.data[0]}: {answer[:300]}"
                # Forwarded to a new leader: the fill goes there directly (a follower opens
                # one link per forwarded request, and the leader bounds those).
                moved = re.search(rb"link to ([0-9.]+):(\d+)", answer)
                for node in nodes:
                    if moved and (node.ip, node.cluster_port) == (moved.group(1).decode(),
                                                                  int(moved.group(2))):
                        target[0] = node
                retry.append(key.data[0])
                if open_next():
                    in_flight += 1
                continue
            done += 1
            if done % 100_000 == 0:
                print(f"  filled {done} in {time.monotonic() - started:.0f} s", flush=True)
            if open_next():
                in_flight += 1
    if retries:
        print(f"  {retries} fill requests sent again after a leader change", flush=True)
    return done


def form_cluster(nodes, extra_flags):
    """Starts two more nodes (appended to `nodes` at once, so they are cleaned up even if
    forming fails) and forms a cluster of the three."""
    first = nodes[0]
    others = [StanzadProcess(ip=f"127.0.0.{i}", threads=1, extra_flags=extra_flags)
              for i in (2, 3)]
    for node in others:
        nodes.append(node)
        node.start()
    for node in nodes:
        ok(node, "cluster", "enable")
    ok(first, "cluster", "initialize")
    for node in others:
        code, out = node.join(first)
        assert code == 0, out
    return nodes


def timed(node, args_for, count, deadline):
    latencies_ms = []
    for i in range(count):
        if time.monotonic() > deadline:
            break
        args = args_for(i)
        start = time.perf_counter()
        code, out = node.admin(*args)
        latencies_ms.append((time.perf_counter() - start) * 1000)
        assert code == 0, f"{args}: {out}"
    return latencies_ms


RETRIES_MAX = 10_000  # fill requests refused by a leader change, sent again
USERS_MAX = 1_000_000  # config::kUsersMax: a size of 1M leaves room for the users added
BRIDGES_MAX = 100_000  # config::kCallbridgesMax


def run_size(bridges, users, changes, cluster, credentials, changes_seconds_max):
    # Room for the changes (two targets in a cluster) and the one that checks the follower.
    users = min(users, USERS_MAX - 2 * changes - 8)
    bridges = min(bridges, BRIDGES_MAX - 2 * changes - 8)
    first = StanzadProcess(threads=1, ip="127.0.0.1")
    nodes = [first]
    try:
        started = time.monotonic()
        if cluster:
            # Formed small, then filled through the leader's admin socket, many requests in
            # flight: the ordinary path (Raft entries), batched into few writes.
            fill(first, 0, 0, credentials)
            first.start(seed=False)
            nodes = form_cluster(nodes, [])
            pipelined(nodes, (("callbridge", "add-secret", f"fill{i}", f"--secret={SECRET}")
                              for i in range(bridges)))
            pipelined(nodes, (("user", "add", f"fill{i}", credentials) for i in range(users)))
            targets = {"follower": nodes[1], "leader": nodes[0]}
            # Answered once applied on the follower: it has caught up with the fill.
            ok(nodes[1], "callbridge", "add-secret", "caught-up", f"--secret={SECRET}")
        else:
            fill(first, bridges, users, credentials)
            first.start(seed=False)
            targets = {"single": first}
        filled_s = time.monotonic() - started
        deadline = time.monotonic() + changes_seconds_max
        results = {}
        for where, target in targets.items():
            results[f"{where} callbridge add-secret"] = timed(
                target, lambda i: ("callbridge", "add-secret", f"{where}{i}", f"--secret={SECRET}"),
                changes, deadline)
            results[f"{where} user add"] = timed(
                target, lambda i: ("user", "add", f"{where}{i}", credentials), changes, deadline)
        for command, latencies in results.items():
            print(f"{'cluster' if cluster else 'single'} bridges={bridges} users={users} "
                  f"{command:31s} n={len(latencies)} p50={percentile(latencies, 0.5):.2f} "
                  f"p90={percentile(latencies, 0.9):.2f} p99={percentile(latencies, 0.99):.2f} "
                  f"max={max(latencies):.2f} ms (filled in {filled_s:.1f} s)", flush=True)
    finally:
        for node in nodes:
            node.cleanup()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000:10000,10000:100000,100000:1000000")
    parser.add_argument("--changes", type=int, default=200, help="per command and size")
    parser.add_argument("--changes_seconds_max", type=float, default=300)
    parser.add_argument("--cluster", action="store_true", help="3 nodes on 127.0.0.1-3")
    args = parser.parse_args()
    credentials = credentials_text(os.environ.get("STANZAD_BIN_DIR", ""))
    for size in args.sizes.split(","):
        bridges, users = (int(n) for n in size.split(":"))
        run_size(bridges, users, args.changes, args.cluster, credentials, args.changes_seconds_max)


if __name__ == "__main__":
    main()
