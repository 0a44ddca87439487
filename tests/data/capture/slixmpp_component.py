#!/usr/bin/python3
"""Captures the bytes a real third-party XMPP library sends as a component.

Runs a minimal XEP-0114 server on a loopback port that accepts any handshake,
connects slixmpp's ComponentXMPP to it, makes the component send a message with
non-ASCII text and markup characters, a presence with caps, a disco#info query
and a ping, and writes every byte slixmpp sent to the file given as argv[1].
The result is checked in as tests/data/streams/slixmpp_component.xml and the
tokenizer tests replay it split at every offset.

Usage: /usr/bin/python3 tests/data/capture/slixmpp_component.py OUT.xml
"""
import asyncio
import sys

import slixmpp

captured = bytearray()
done = asyncio.Event()


async def serve(reader, writer):
    header_sent = False
    while True:
        data = await reader.read(65536)
        if not data:
            break
        captured.extend(data)
        if not header_sent and b">" in data:
            writer.write(b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
                         b"xmlns:stream='http://etherx.jabber.org/streams' "
                         b"from='cb1.example.com' id='3BF96D32'>")
            header_sent = True
        if b"</handshake>" in data:
            writer.write(b"<handshake/>")
        if b"</stream:stream>" in captured:
            writer.write(b"</stream:stream>")
            break
        await writer.drain()
    writer.close()
    done.set()


class Bridge(slixmpp.ComponentXMPP):
    def __init__(self, port):
        super().__init__("cb1.example.com", "secret-1234", "127.0.0.1", port)
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")
        self.add_event_handler("session_start", self.start)

    async def start(self, _event):
        self.send_message(mto="alice@example.com/phone", mfrom="cb1.example.com",
                          mbody="Grüße aus Zürich — 会议已开始 😀 <b>&'\"", mtype="chat")
        self.send_presence(pfrom="cb1.example.com", pto="focus@auth.example.com/focus",
                           pstatus="ready", ppriority=5)
        iq = self.make_iq_get(queryxmlns="http://jabber.org/protocol/disco#info",
                              ito="example.com", ifrom="cb1.example.com")
        iq.send()
        ping = self.make_iq_get(queryxmlns="urn:xmpp:ping", ito="example.com",
                                ifrom="cb1.example.com")
        ping.send()
        await asyncio.sleep(0.3)
        self.disconnect()


async def main(out_path):
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bridge = Bridge(port)
    bridge.connect()
    await asyncio.wait_for(done.wait(), timeout=10)
    server.close()
    with open(out_path, "wb") as out:
        out.write(bytes(captured))


if __name__ == "__main__":
    asyncio.get_event_loop().run_until_complete(main(sys.argv[1]))
