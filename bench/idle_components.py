#!/usr/bin/python3
"""Opens N XEP-0114 component connections, authenticates them and holds them idle.

Used by bench/compare_servers.sh to measure a server's memory per idle connected
component (stanzad, Prosody, ejabberd alike). Reads the accounts from the same JSON
that stanza-bench --secrets_json reads (a list of objects with "component" and
"secret": `stanzactl --json callbridge list` or `bench/other_servers.sh secrets`),
connects the first N with at most --parallel handshakes in flight, and prints
"ready N" on stdout once every one has received <handshake/>. It then holds the
connections, reading and discarding whatever arrives, until SIGTERM/SIGINT or
--hold_s seconds (default 600). Exit status 0 when all N were ready and none was
closed by the server; 1 otherwise.

Handshake (XEP-0114 §3): lowercase hex SHA-1 of the stream id followed by the secret.

Usage: idle_components.py --server=127.0.0.1:PORT --secrets_json=FILE --count=N
           [--timeout_s=120] [--hold_s=600] [--parallel=100]
Stdlib only; bounded: not all ready within --timeout_s is an error, and the hold
ends after --hold_s at the latest.
"""
import argparse
import hashlib
import json
import re
import resource
import selectors
import signal
import socket
import sys
import time

HEADER_ID = re.compile(rb"<stream:stream\s[^>]*?\bid=(['\"])([^'\"]*)\1[^>]*>")


class Component:
    def __init__(self, name, secret):
        self.name = name
        self.secret = secret
        self.sock = None
        self.buf = b""
        self.state = "new"  # new, header, handshake, ready, closed


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True, help="HOST:PORT (IPv4 loopback)")
    p.add_argument("--secrets_json", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--timeout_s", type=float, default=120.0)
    p.add_argument("--hold_s", type=float, default=600.0)
    p.add_argument("--parallel", type=int, default=100)
    a = p.parse_args()
    host, _, port = a.server.rpartition(":")
    if not host.startswith("127."):
        p.error("--server must be on 127.0.0.0/8")
    a.address = (host, int(port))
    return a


def main():
    args = parse_args()
    with open(args.secrets_json) as f:
        accounts = json.load(f)
    if args.count < 1 or args.count > len(accounts):
        sys.exit(f"idle_components: --count must be between 1 and the {len(accounts)} "
                 f"accounts in {args.secrets_json}")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.count + 64
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            sys.exit(f"idle_components: need {wanted} file descriptors; the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    components = [Component(a["component"], a["secret"]) for a in accounts[:args.count]]
    sel = selectors.DefaultSelector()
    pending = list(reversed(components))
    in_flight = 0
    ready = 0
    failed = 0
    deadline = time.monotonic() + args.timeout_s

    def close(c, why):
        nonlocal failed, in_flight
        if c.state in ("header", "handshake"):
            in_flight -= 1
        if c.state != "closed":
            failed += 1
            print(f"idle_components: {c.name}: {why}: {c.buf[-300:]!r}", file=sys.stderr)
            try:
                sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            c.sock.close()
            c.state = "closed"

    def on_readable(c):
        nonlocal ready, in_flight
        try:
            data = c.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            close(c, f"recv failed ({e})")
            return
        if not data:
            close(c, "closed by the server")
            return
        if c.state == "ready":
            return  # idle: discard (whitespace keepalives, if any)
        c.buf += data
        if b"stream:error" in c.buf:
            close(c, "stream error")
            return
        if c.state == "header":
            m = HEADER_ID.search(c.buf)
            if m:
                digest = hashlib.sha1(m.group(2) + c.secret.encode()).hexdigest()
                try:
                    c.sock.settimeout(10)
                    c.sock.sendall(f"<handshake>{digest}</handshake>".encode())
                    c.sock.setblocking(False)
                except OSError as e:
                    close(c, f"send failed ({e})")
                    return
                c.state = "handshake"
        if c.state == "handshake" and b"<handshake/>" in c.buf:
            c.state = "ready"
            c.buf = b""
            ready += 1
            in_flight -= 1

    def open_next():
        nonlocal in_flight
        c = pending.pop()
        try:
            c.sock = socket.create_connection(args.address, timeout=10)
            c.sock.sendall(("<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
                            "xmlns:stream='http://etherx.jabber.org/streams' to='%s'>"
                            % c.name).encode())
        except OSError as e:
            c.state = "closed"
            raise SystemExit(f"idle_components: {c.name}: cannot connect: {e}")
        c.sock.setblocking(False)
        c.state = "header"
        in_flight += 1
        sel.register(c.sock, selectors.EVENT_READ, c)

    while ready + failed < len(components):
        if stop:
            sys.exit("idle_components: stopped before all were ready")
        now = time.monotonic()
        if now > deadline:
            sys.exit(f"idle_components: only {ready} of {len(components)} ready after "
                     f"{args.timeout_s:.0f}s ({failed} failed)")
        while pending and in_flight < args.parallel:
            open_next()
        for key, _ in sel.select(timeout=min(0.5, max(0.01, deadline - now))):
            on_readable(key.data)
    if failed:
        sys.exit(f"idle_components: {failed} of {len(components)} failed")
    print(f"ready {ready}", flush=True)

    # Hold until SIGTERM/SIGINT or --hold_s.
    hold_deadline = time.monotonic() + args.hold_s
    while not stop and time.monotonic() < hold_deadline:
        for key, _ in sel.select(timeout=0.5):
            on_readable(key.data)
    for c in components:
        if c.state != "closed":
            c.sock.close()
    if failed:
        sys.exit(f"idle_components: {failed} connections closed by the server while idle")


if __name__ == "__main__":
    main()
