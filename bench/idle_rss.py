#!/usr/bin/python3
"""Server memory per idle connection: call bridges, or clients over TLS.

Bridges (the default): starts stanzad (2 shards) on a fresh state dir on
127.0.0.1, adds N bridges through the admin socket, reads the daemon's VmRSS,
connects and authenticates N XEP-0114 components, waits a second and reads
VmRSS again. Prints one line: (after - before) / N. The figure includes the
recv-buffer pages the shards touch while the bridges connect (a fixed cost,
bounded per shard), so it falls as N grows.

Clients (--clients): the same for N XMPP clients over TLS. stanzad gets a lab
certificate (`stanzactl pki selfsigned`) and N users (`user add` over the admin
socket, with the credentials text `c2s-bench --print_credentials` prints);
VmRSS is read once the users are in, then c2s-bench --mode=idle logs the N
clients in (STARTTLS, SCRAM-SHA-1, bind; --concurrency at a time) and holds
them, and VmRSS is read again a second after the last login.

Usage: STANZAD_BIN_DIR=build/cmd /usr/bin/python3 bench/idle_rss.py [N=10000]
       STANZAD_BIN_DIR=build/cmd C2S_BENCH=build/bench/c2s-bench \\
           /usr/bin/python3 bench/idle_rss.py --clients [N=10000] [--concurrency=50]
"""
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../tests/integration"))
from stanzad_harness import (BIN_DIR, STANZACTL, RawComponent, StanzadProcess,  # noqa: E402
                             wait_until)

C2S_BENCH = os.environ.get("C2S_BENCH", os.path.join(BIN_DIR, "../bench/c2s-bench"))
PASSWORD = "bench-password"
# Every bridge and client connects from 127.0.0.1, many logging in at once.
NODE_FLAGS = ["--preauth_connections_per_ip_max=0"]


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def raise_file_limit(count):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 1000
    if hard != resource.RLIM_INFINITY and hard < wanted:
        sys.exit(f"need {wanted} file descriptors, the hard limit is {hard} (raise ulimit -n)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def measure_bridges(count):
    node = StanzadProcess(threads=2, extra_flags=NODE_FLAGS + [f"--connections_max={count + 100}"]).start()
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


def measure_clients(count, concurrency):
    if not os.access(C2S_BENCH, os.X_OK):
        sys.exit(f"no c2s-bench at {C2S_BENCH} (set C2S_BENCH)")
    credentials = subprocess.run([C2S_BENCH, f"--print_credentials={PASSWORD}"], check=True,
                                 capture_output=True, text=True, timeout=30).stdout.strip()
    pki = tempfile.mkdtemp(prefix="idle-rss-pki-")
    node = StanzadProcess(threads=2, extra_flags=NODE_FLAGS + [f"--connections_max={count + 100}"]).start()
    bench = None
    try:
        subprocess.run([os.path.abspath(STANZACTL), "pki", "selfsigned", "xmpp", "CN:example.com",
                        "subjectAltName:example.com", "days:30"], cwd=pki, check=True,
                       capture_output=True, timeout=60)
        code, out, err = node.stanzactl("certs", os.path.join(pki, "xmpp.key"),
                                        os.path.join(pki, "xmpp.crt"))
        assert code == 0, out + err
        node.wait_serving()
        for i in range(count):
            code, out = node.admin("user", "add", f"u{i}", credentials)
            assert code == 0, out
        time.sleep(0.5)
        before = rss_bytes(node.process.pid)
        bench = subprocess.Popen(
            [C2S_BENCH, f"--server=127.0.0.1:{node.c2s_port}", "--mode=idle",
             f"--clients={count}", f"--users={count}", f"--password={PASSWORD}",
             f"--concurrency={concurrency}", "--hold_s=600", "--connect_timeout_s=300"],
            stdout=subprocess.PIPE, text=True)
        line = wait_until(bench.stdout.readline, timeout=310, what="c2s-bench's idle line")
        if not line.startswith(f"idle: {count} clients logged in"):
            sys.exit(f"c2s-bench: {line.strip()}")
        time.sleep(1.0)
        after = rss_bytes(node.process.pid)
        print(f"idle_rss clients={count} tls=yes shards=2 rss_before_bytes={before} "
              f"rss_after_bytes={after} per_connection_bytes={(after - before) / count:.0f}")
    finally:
        if bench is not None and bench.poll() is None:
            bench.terminate()
            bench.wait(timeout=30)
        node.cleanup()
        shutil.rmtree(pki, ignore_errors=True)


def main():
    args = sys.argv[1:]
    clients = "--clients" in args
    concurrency = 50
    numbers = []
    for arg in args:
        if arg.startswith("--concurrency="):
            concurrency = int(arg.split("=", 1)[1])
        elif arg != "--clients":
            numbers.append(int(arg))
    count = numbers[0] if numbers else 10000
    raise_file_limit(count)
    if clients:
        measure_clients(count, concurrency)
    else:
        measure_bridges(count)


if __name__ == "__main__":
    main()
