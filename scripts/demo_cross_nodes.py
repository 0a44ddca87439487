#!/usr/bin/python3
"""Demo: call bridges on three nodes of a cluster exchange stanzas.

Usage: demo_cross_nodes.py STATE_DIR_OF_ANY_NODE PORT
(bridges cb1, cb4 and cb5 must exist; cb1 connects to 127.0.0.1, cb4 to 127.0.0.2,
cb5 to 127.0.0.3, all on PORT)
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../tests/integration"))
from stanzad_harness import DOMAIN, RawComponent, StanzadProcess  # noqa: E402


def main():
    state_dir, port = sys.argv[1], int(sys.argv[2])
    secrets = StanzadProcess(state_dir=state_dir).secrets()
    bridges = {name: RawComponent(port, name, secrets[name], ip=ip).connect()
               for name, ip in (("cb1", "127.0.0.1"), ("cb4", "127.0.0.2"), ("cb5", "127.0.0.3"))}
    time.sleep(0.3)  # the nodes learn each other's routes
    for sender, receiver in (("cb1", "cb4"), ("cb4", "cb5"), ("cb5", "cb1")):
        stanza = (f"<message from='{sender}.{DOMAIN}' to='{receiver}.{DOMAIN}' "
                  f"id='{sender}-{receiver}'><body>hello from {sender}</body></message>")
        start = time.monotonic()
        bridges[sender].send(stanza)
        bridges[receiver].read_until(f"{sender}-{receiver}")
        took = (time.monotonic() - start) * 1000
        print(f"  {sender} ({bridges[sender].sock.getpeername()[0]}) -> "
              f"{receiver} ({bridges[receiver].sock.getpeername()[0]}): delivered in {took:.1f} ms")
    for bridge in bridges.values():
        bridge.close()


if __name__ == "__main__":
    main()
