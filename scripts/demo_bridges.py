#!/usr/bin/python3
"""Demo: two call bridges talk through a running stanzad; a third tries a wrong secret.

Usage: demo_bridges.py STATE_DIR PORT [IP]   (bridges cb1 and cb2 must exist on the node)
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../tests/integration"))
from stanzad_harness import DOMAIN, RawComponent, StanzadProcess  # noqa: E402


def show(label, data):
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    print(f"  {label}: {text}")


def main():
    state_dir, port = sys.argv[1], int(sys.argv[2])
    ip = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
    node = StanzadProcess(state_dir=state_dir)
    secrets = node.secrets()
    cb1 = RawComponent(port, "cb1", secrets["cb1"], ip=ip).connect()
    cb2 = RawComponent(port, "cb2", secrets["cb2"], ip=ip).connect()
    print("cb1 and cb2 authenticated (XEP-0114 handshake accepted)")
    message = (f"<message from='room@cb1.{DOMAIN}/focus' to='room@cb2.{DOMAIN}' id='demo-1'>"
               "<body>Grüße — 会议已开始 😀 &amp; welcome</body></message>")
    cb1.send(message)
    cb2.read_until("demo-1")
    show("cb1 sent    ", message)
    show("cb2 received", cb2.received[cb2.received.index(b"<message"):])
    cb1.send(f"<iq type='get' from='cb1.{DOMAIN}' to='{DOMAIN}' id='ping-1'>"
             "<ping xmlns='urn:xmpp:ping'/></iq>")
    cb1.read_until("ping-1'/>")
    show("server answered cb1's ping", cb1.received[cb1.received.rindex(b"<iq"):])
    cb1.send(f"<message from='cb1.{DOMAIN}' to='cb7.{DOMAIN}' id='nowhere'/>")
    cb1.read_until("</message>")
    show("to an unknown bridge", cb1.received[cb1.received.rindex(b"<message"):])
    intruder = RawComponent(port, "cb2", "not-the-secret", ip=ip).open_stream()
    intruder.handshake(expect_ok=False)
    intruder.wait_closed()
    show("wrong secret", intruder.received[intruder.received.index(b"<stream:error"):])
    for component in (cb1, cb2, intruder):
        component.close()


if __name__ == "__main__":
    main()
