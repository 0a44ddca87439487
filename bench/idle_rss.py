#!/usr/bin/python3
"""Server memory per idle connection: call bridges, or clients over TLS.

Bridges (the default): starts stanzad on a fresh state dir on 127.0.0.1,
configures N bridges with `stanzactl callbridge import` (their secrets read back
with `stanzactl --json callbridge list`), reads the daemon's VmRSS, then connects
and authenticates N XEP-0114 components with one stanza-bench --mode=idle per
17,000 bridges (each within the open files limit, each from a 127.2.x.y source
address of its own, since one address runs out of ports), waits 2.5 seconds after
the last is ready and reads VmRSS again. Prints one line: (after - before) / N.
The figure includes the recv-buffer pages the shards touch while the bridges
connect (a fixed cost, bounded per shard), so it falls as N grows. The daemon
gets --connections_max with 10% to spare (SO_REUSEPORT does not split
connections exactly evenly over the shards, and each shard holds its share of
the limit), 2 shards, or as many as it takes for each shard's table of direct
descriptors to fit under the open files hard limit (6 for 100,000 under 20,000).

Clients (--clients): the same for N XMPP clients over TLS. stanzad gets a lab
certificate (`stanzactl pki selfsigned`) and N users (`user add` over the admin
socket, with the credentials text `c2s-bench --print_credentials` prints);
VmRSS is read once the users are in, then c2s-bench --mode=idle logs the N
clients in (STARTTLS, SCRAM-SHA-1, bind; --concurrency at a time) and holds
them, and VmRSS is read again a second after the last login.

Usage: STANZAD_BIN_DIR=build/cmd /usr/bin/python3 bench/idle_rss.py [N=10000] [--configured=M]
           [--threads=T]
       (--configured: M >= N bridges configured, the first N connected; --threads: the
       daemon's shards, instead of the fewest that fit the open files limit)
       (stanza-bench from STANZAD_BENCH_DIR, default STANZAD_BIN_DIR/../bench)
       STANZAD_BIN_DIR=build/cmd C2S_BENCH=build/bench/c2s-bench \\
           /usr/bin/python3 bench/idle_rss.py --clients [N=10000] [--concurrency=50]
"""
import json
import os
import resource
import secrets as secrets_module
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../tests/integration"))
from stanzad_harness import (BIN_DIR, STANZACTL, StanzadProcess, wait_until)  # noqa: E402

C2S_BENCH = os.environ.get("C2S_BENCH", os.path.join(BIN_DIR, "../bench/c2s-bench"))
BENCH_DIR = os.environ.get("STANZAD_BENCH_DIR", os.path.join(BIN_DIR, "../bench"))
STANZA_BENCH = os.path.join(BENCH_DIR, "stanza-bench")
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
    """Open files for `count` connections and some to spare, for us and (inherited) the
    daemon and the bench; a hard limit below it is raised if we may (root)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 2000
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            sys.exit(f"need {wanted} file descriptors, the hard limit is {hard} "
                     "(raise ulimit -Hn, or run as root)")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    return wanted


def import_bridges(node, names, directory):
    """Configures the bridges with `stanzactl callbridge import`; returns the secrets file
    for stanza-bench (`stanzactl --json callbridge list`, in the order of `names`)."""
    path = os.path.join(directory, "bridges.txt")
    with open(path, "w") as f:
        for name in names:
            f.write(f"{name} {secrets_module.token_hex(16)}\n")
    result = subprocess.run([os.path.abspath(STANZACTL), f"--state_dir={node.state_dir}",
                             "callbridge", "import", path], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    result = subprocess.run([os.path.abspath(STANZACTL), f"--state_dir={node.state_dir}",
                             "--json", "callbridge", "list"], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    ordered = [rows[name] for name in names]
    secrets_path = os.path.join(directory, "secrets.json")
    with open(secrets_path, "w") as f:
        json.dump(ordered, f, separators=(",", ":"))
    return secrets_path


# Bridges per stanza-bench process: each holds one descriptor per bridge, within an open
# files limit that may be as low as 20,000 (and may not be raised without root).
BRIDGES_PER_BENCH = 17000


def measure_bridges(count, configured, threads=0):
    if not os.access(STANZA_BENCH, os.X_OK):
        sys.exit(f"no stanza-bench at {STANZA_BENCH} (set STANZAD_BENCH_DIR)")
    benches = max(1, -(-count // BRIDGES_PER_BENCH))
    raise_file_limit(min(count, BRIDGES_PER_BENCH))
    connections_max = count * 11 // 10 + 100
    # The daemon's connections are direct descriptors (--direct_descriptors): each shard's
    # table, its share of --connections_max, must fit under the open files limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = hard if hard != resource.RLIM_INFINITY else 1 << 20
    threads = threads or max(2, -(-connections_max // (limit - 1000)))
    work = tempfile.mkdtemp(prefix="idle-rss-")
    node = StanzadProcess(threads=threads, open_files_max=limit, extra_flags=NODE_FLAGS + [
        f"--connections_max={connections_max}"]).start()
    processes = []
    try:
        node.wait_serving()
        names = [f"b{i}" for i in range(max(count, configured))]
        secrets_path = import_bridges(node, names, work)
        with open(secrets_path) as f:
            accounts = json.load(f)[:count]
        time.sleep(0.5)
        before = rss_bytes(node.process.pid)
        # Each process gets its share of the bridges and source addresses of its own
        # (one address has ~28,000 ports toward the server).
        share = -(-count // benches)
        for k in range(benches):
            part = accounts[k * share:(k + 1) * share]
            path = os.path.join(work, f"secrets-{k}.json")
            with open(path, "w") as f:
                json.dump(part, f, separators=(",", ":"))
            processes.append(subprocess.Popen(
                [STANZA_BENCH, f"--server=127.0.0.1:{node.port}", f"--secrets_json={path}",
                 "--mode=idle", f"--bridges={len(part)}", "--source_ips=1",
                 f"--source_ip_first={k}", "--hold_s=600", "--ready_timeout_s=300"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        started = time.monotonic()
        for k, bench in enumerate(processes):
            # Bounded by its --ready_timeout_s: past it, it exits and the pipe ends.
            for line in bench.stderr:
                if "bridges ready" in line:
                    break
            else:
                sys.exit(f"stanza-bench {k} exited {bench.wait()} before its bridges were ready")
        connect_s = time.monotonic() - started
        # Idle: the cross-shard queues give back what the binds wrote once quiet for 1 s
        # (EngineOptions::queue_release_quiet_ms); read after that, as an idle node is.
        time.sleep(2.5)
        after = rss_bytes(node.process.pid)
        print(f"idle_rss bridges={count} configured={max(count, configured)} shards={threads} "
              f"bench_processes={benches} connect_s={connect_s:.1f} rss_before_bytes={before} "
              f"rss_after_bytes={after} per_connection_bytes={(after - before) / count:.0f}")
    finally:
        for bench in processes:
            if bench.poll() is None:
                bench.terminate()
                bench.wait(timeout=30)
        node.cleanup()
        shutil.rmtree(work, ignore_errors=True)


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
    configured = 0
    threads = 0
    for arg in args:
        if arg.startswith("--configured="):
            configured = int(arg.split("=", 1)[1])
        elif arg.startswith("--threads="):
            threads = int(arg.split("=", 1)[1])
        elif arg.startswith("--concurrency="):
            concurrency = int(arg.split("=", 1)[1])
        elif arg != "--clients":
            numbers.append(int(arg))
    count = numbers[0] if numbers else 10000
    if clients:
        raise_file_limit(count)
        measure_clients(count, concurrency)
    else:
        measure_bridges(count, configured, threads)


if __name__ == "__main__":
    main()
