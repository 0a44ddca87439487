#!/usr/bin/python3
"""Idle connections to a node's cluster port: how fast they are shed, at what CPU.

Starts one stanzad (a one-node cluster, default limits), then opens --links TCP
connections to its cluster port as fast as the client can, from --sources loopback
addresses (127.0.0.10...), and sends nothing. Watches every connection until the node
closes it. Prints one JSON line: how many were opened, the time until the last was
closed (from the first connect), how many the node held until the handshake deadline,
stanzad's CPU time over the flood (utime+stime from /proc) as a share of one core, and
whether a member-style request (stanzactl status) answered meanwhile, and how fast.

Usage: STANZAD_BIN_DIR=build/cmd /usr/bin/python3 bench/cluster_port_flood.py \
           [--links=15000] [--sources=60]
Bounded: at most --links connections, 60 s in all.
"""
import argparse
import json
import os
import resource
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../tests/integration"))
from stanzad_harness import StanzadProcess  # noqa: E402


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drain(selector, timeout):
    """Reads what arrived; closes (and counts) the links the node closed."""
    closed = 0
    for key, _ in selector.select(timeout):
        try:
            data = key.fileobj.recv(4096)
        except OSError:
            data = b""
        if not data:
            selector.unregister(key.fileobj)
            key.fileobj.close()
            closed += 1
    return closed


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--links", type=int, default=15000)
    parser.add_argument("--sources", type=int, default=60)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    links = min(args.links, hard - 200)
    node = StanzadProcess(threads=1)
    try:
        node.start()
        node.wait_serving()
        assert node.admin("cluster", "enable")[0] == 0
        assert node.admin("cluster", "initialize")[0] == 0
        pid = node.process.pid
        selector = selectors.DefaultSelector()
        opened = closed = 0
        refused_at_connect = 0
        cpu_before = cpu_s(pid)
        start = time.monotonic()
        last_close = start
        status_ms = []
        for i in range(links):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            sock.bind((f"127.0.0.{10 + i % args.sources}", 0))
            try:
                sock.connect((node.ip, node.cluster_port))
            except BlockingIOError:
                pass
            except OSError:
                refused_at_connect += 1
                sock.close()
                continue
            selector.register(sock, selectors.EVENT_READ)
            opened += 1
            if i % 500 == 0:  # drain what the node closed, and ask it something
                closed_now = drain(selector, 0)
                if closed_now:
                    closed += closed_now
                    last_close = time.monotonic()
                if i % 5000 == 0:
                    t = time.monotonic()
                    code, _ = node.admin("status")
                    status_ms.append(round((time.monotonic() - t) * 1000, 1))
                    assert code == 0
        all_open = time.monotonic()
        deadline = start + 60
        while selector.get_map() and time.monotonic() < deadline:
            closed_now = drain(selector, 0.05)
            if closed_now:
                closed += closed_now
                last_close = time.monotonic()
        cpu = cpu_s(pid) - cpu_before
        wall = last_close - start
        print(json.dumps({
            "links": links, "opened": opened, "refused_at_connect": refused_at_connect,
            "closed_by_node": closed, "still_open": len(selector.get_map()),
            "open_s": round(all_open - start, 2), "all_closed_after_s": round(wall, 2),
            "stanzad_cpu_s": round(cpu, 2),
            "stanzad_cpu_share_of_one_core": round(cpu / max(wall, 0.001), 3),
            "status_ms_during_flood": status_ms,
        }))
        for key in list(selector.get_map().values()):
            key.fileobj.close()
    finally:
        node.cleanup()


if __name__ == "__main__":
    main()
