#!/usr/bin/python3
"""Server memory per idle call bridge connection.

Starts stanzad (2 shards) on a fresh state dir on 127.0.0.1, adds N bridges
through the admin socket, reads the daemon's VmRSS, connects and authenticates
N XEP-0114 components, waits a second and reads VmRSS again. Prints one line:
(after - before) / N. The figure includes the recv-buffer pages the shards
touch while the bridges connect (a fixed cost, bounded per shard), so it falls
as N grows.

Usage: STANZAD_BIN_DIR=build/cmd /usr/bin/python3 bench/idle_rss.py [N=10000]
"""
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../tests/integration"))
from stanzad_harness import RawComponent, StanzadProcess  # noqa: E402


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 1000
    if hard != resource.RLIM_INFINITY and hard < wanted:
        sys.exit(f"need {wanted} file descriptors, the hard limit is {hard} (raise ulimit -n)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    node = StanzadProcess(threads=2, extra_flags=[f"--connections_max={count + 100}"]).start()
    try:
        node.wait_serving()
        for i in range(count):
            code, out = node.admin("callbridge", "add", f"b{i}")
            assert code == 0, out
        secrets = node.secrets()
        time.sleep(0.5)
        before = rss_bytes(node.process.pid)
        bridges = []
        for i in range(count):
            bridge = RawComponent(node.port, f"b{i}", secrets[f"b{i}"])
            bridge.open_stream().handshake(expect_ok=False)
            bridges.append(bridge)
        for bridge in bridges:
            bridge.read_until("<handshake/>")
        time.sleep(1.0)
        after = rss_bytes(node.process.pid)
        print(f"idle_rss bridges={count} shards=2 rss_before_bytes={before} "
              f"rss_after_bytes={after} per_connection_bytes={(after - before) / count:.0f}")
    finally:
        node.cleanup()


if __name__ == "__main__":
    main()
