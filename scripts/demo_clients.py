#!/usr/bin/python3
"""Demo: XMPP clients over TLS on two nodes talk to a call bridge on a third, and
to each other.

Usage: demo_clients.py STATE_DIR_OF_ANY_NODE COMPONENT_PORT C2S_PORT
(users juliet and romeo with password "pencil", and bridge cb1, must exist;
juliet connects to 127.0.0.2, romeo to 127.0.0.3, cb1 to 127.0.0.1)
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../tests/integration"))
from stanzad_harness import DOMAIN, RawComponent, StanzadProcess, TlsClient  # noqa: E402


def main():
    state_dir, port, c2s_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    secrets = StanzadProcess(state_dir=state_dir).secrets()
    start = time.monotonic()
    peers = {
        "juliet": TlsClient(c2s_port, "juliet", "pencil", "balcony", ip="127.0.0.2"),
        "romeo": TlsClient(c2s_port, "romeo", "pencil", "garden", ip="127.0.0.3"),
    }
    print(f"  juliet (127.0.0.2) and romeo (127.0.0.3) logged in over TLS "
          f"(STARTTLS, SASL PLAIN, bind) in {(time.monotonic() - start) * 1000:.0f} ms")
    peers["cb1"] = RawComponent(port, "cb1", secrets["cb1"], ip="127.0.0.1").connect()
    time.sleep(0.3)  # the nodes learn each other's routes
    for sender, receiver in (("juliet", "cb1"), ("cb1", "juliet"), ("juliet", "romeo"),
                             ("romeo", "juliet")):
        marker = f"{sender}-{receiver}-{time.monotonic_ns()}"
        stanza = (f"<message from='{peers[sender].address}' to='{peers[receiver].address}' "
                  f"id='{marker}'><body>hello from {sender}</body></message>")
        start = time.monotonic()
        peers[sender].send(stanza)
        peers[receiver].read_until(marker)
        took = (time.monotonic() - start) * 1000
        print(f"  {peers[sender].address} -> {peers[receiver].address}: delivered in "
              f"{took:.1f} ms")
    for peer in peers.values():
        peer.close()


if __name__ == "__main__":
    main()
