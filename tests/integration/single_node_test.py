"""Integration tests of one stanzad node: real processes, real sockets on
127.0.0.1, configured with stanzactl, driven by raw components and by
slixmpp (Debian's python3-slixmpp) as a real third-party component.

Run: STANZAD_BIN_DIR=build/cmd /usr/bin/python3 tests/integration/single_node_test.py -v
"""
import asyncio
import json
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from stanzad_harness import (DOMAIN, RawComponent, StanzadProcess, wait_until)  # noqa: E402

UTF8_BODY = "Grüße aus Zürich — 会议已开始 😀 &lt;b&gt; &amp; &apos;quoted&apos;"


class SingleNodeTest(unittest.TestCase):
    def setUp(self):
        self.node = StanzadProcess().start()
        self.node.wait_serving()
        self.components = []

    def tearDown(self):
        for component in self.components:
            component.close()
        self.node.cleanup()

    def bridge(self, name, secret=None):
        secrets = self.node.secrets()
        component = RawComponent(self.node.port, name, secret or secrets[name])
        self.components.append(component)
        return component

    def add_bridges(self, *names):
        for name in names:
            code, out = self.node.admin("callbridge", "add", name)
            self.assertEqual(code, 0, out)

    # --- operator commands -------------------------------------------------

    def test_callbridge_commands_through_stanzactl(self):
        code, out, err = self.node.stanzactl("xmpp", "callbridge", "add", "cb1")
        self.assertEqual(code, 0, err)
        self.assertRegex(out, r"^\*\*\*\nCallbridge : cb1\nDomain     : example.com\n"
                              r"Secret     : [A-Za-z0-9]{20}\n$")
        code, out, err = self.node.stanzactl("callbridge", "add-secret", "cb2",
                                             stdin="my-own-secret\n")
        self.assertEqual(code, 0, err)
        code, out, _ = self.node.stanzactl("callbridge", "list", json=True)
        bridges = {b["name"]: b for b in json.loads(out)}
        self.assertEqual(bridges["cb2"]["secret"], "my-own-secret")
        self.assertEqual(bridges["cb1"]["component"], "cb1.example.com")
        code, _, err = self.node.stanzactl("callbridge", "add-secret", "cb2",
                                           stdin="another-secret\n")
        self.assertEqual(code, 1)
        self.assertIn("--force", err)
        code, _, err = self.node.stanzactl("callbridge", "del", "nosuch")
        self.assertEqual(code, 1)
        self.assertIn("no call bridge named nosuch", err)
        code, out, _ = self.node.stanzactl("status")
        self.assertIn("XMPP state    : enabled, serving", out)
        self.assertIn(f"127.0.0.1:{self.node.port}", out)

    def durable_config(self):
        """The config file after a restart: what survived, with the journal
        (state_dir/config.journal, which holds the changes since the file was last
        written whole) folded in; the journal is checked for the password too."""
        journal_path = os.path.join(self.node.state_dir, "config.journal")
        with open(journal_path, "rb") as f:
            journal = f.read().decode("latin-1")
        self.node.stop()
        self.node.start(seed=False)
        with open(os.path.join(self.node.state_dir, "config")) as f:
            return f.read() + journal

    def test_user_commands_through_stanzactl_keep_the_password_out(self):
        password = "correct horse battery staple"
        code, out, err = self.node.stanzactl("user", "add", f"alice@{DOMAIN}",
                                             stdin=password + "\n")
        self.assertEqual(code, 0, err)
        self.assertEqual(out, f"User alice@{DOMAIN} added (SCRAM-SHA-1, SCRAM-SHA-256)\n")
        code, out, err = self.node.stanzactl("user", "list")
        self.assertEqual((code, out), (0, f"alice@{DOMAIN} SCRAM-SHA-1 SCRAM-SHA-256\n"), err)
        code, out, _ = self.node.stanzactl("user", "list", json=True)
        self.assertEqual(json.loads(out)["users"][0]["jid"], f"alice@{DOMAIN}")
        config = self.durable_config()
        self.assertIn("\nuser alice SCRAM-SHA-1$4096:", config)
        self.assertNotIn("horse", config)
        code, _, err = self.node.stanzactl("user", "add", "ALICE", stdin="other\n")
        self.assertEqual(code, 1)
        self.assertIn("stanzactl user passwd", err)
        code, _, err = self.node.stanzactl("user", "add", "bob", stdin="\n")
        self.assertEqual(code, 2)
        self.assertIn("no password given", err)
        code, out, err = self.node.stanzactl("user", "passwd", "alice", "--iterations=5000",
                                             stdin="new password\n")
        self.assertEqual(code, 0, err)
        config = self.durable_config()
        self.assertIn("\nuser alice SCRAM-SHA-1$5000:", config)
        self.assertNotIn("new password", config)
        code, out, err = self.node.stanzactl("user", "del", "alice")
        self.assertEqual(code, 0, err)
        code, out, _ = self.node.stanzactl("user", "list")
        self.assertIn("No users", out)

    # --- routing ------------------------------------------------------------

    def test_two_bridges_exchange_messages_and_iqs_both_ways(self):
        self.add_bridges("cb1", "cb2")
        cb1 = self.bridge("cb1").connect()
        cb2 = self.bridge("cb2").connect()
        message = (f"<message from='room@cb1.{DOMAIN}/a' to='room@cb2.{DOMAIN}' id='m1' "
                   f"type='groupchat'><body>{UTF8_BODY}</body></message>")
        cb1.send(message)
        cb2.read_until(message)  # byte for byte: UTF-8 and entities intact
        cb2.send(f"<iq type='get' from='cb2.{DOMAIN}' to='cb1.{DOMAIN}' id='q1'>"
                 "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        cb1.read_until("id='q1'")
        cb1.send(f"<iq type='result' from='cb1.{DOMAIN}' to='cb2.{DOMAIN}' id='q1'/>")
        cb2.read_until(f"<iq type='result' from='cb1.{DOMAIN}' to='cb2.{DOMAIN}' id='q1'/>")

    def test_server_answers_ping_and_unknown_destinations_get_errors(self):
        self.add_bridges("cb1")
        cb1 = self.bridge("cb1").connect()
        cb1.send(f"<iq type='get' from='cb1.{DOMAIN}' to='{DOMAIN}' id='p1'>"
                 "<ping xmlns='urn:xmpp:ping'/></iq>")
        cb1.read_until(f"<iq from='{DOMAIN}' to='cb1.{DOMAIN}' type='result' id='p1'/>")
        cb1.send(f"<message from='cb1.{DOMAIN}' to='cb7.{DOMAIN}' id='lost'/>")
        cb1.read_until("id='lost'><error type='cancel'><service-unavailable")
        cb1.send(f"<message from='cb1.{DOMAIN}' to='someone@elsewhere.org' id='far'/>")
        cb1.read_until("id='far'><error type='cancel'><remote-server-not-found")

    def test_slixmpp_component_talks_to_a_raw_component(self):
        self.add_bridges("cb1")
        code, out = self.node.admin("callbridge", "add-secret", "cb3", "--secret=slix-secret-1")
        self.assertEqual(code, 0, out)
        cb1 = self.bridge("cb1").connect()
        received = []
        ready = threading.Event()
        done = threading.Event()
        port = self.node.port

        def run_slixmpp():
            import slixmpp
            asyncio.set_event_loop(asyncio.new_event_loop())

            class Echo(slixmpp.ComponentXMPP):
                def __init__(self):
                    super().__init__(f"cb3.{DOMAIN}", "slix-secret-1", "127.0.0.1", port)
                    self.add_event_handler("session_start", lambda _: ready.set())
                    self.add_event_handler("message", self.on_message)

                def on_message(self, msg):
                    received.append(msg["body"])
                    reply = msg.reply("echo: " + msg["body"])
                    reply["from"] = f"bot@cb3.{DOMAIN}"
                    reply.send()

            xmpp = Echo()
            xmpp.connect()
            loop = asyncio.get_event_loop()

            async def stop_when_done():
                while not done.is_set():
                    await asyncio.sleep(0.05)
                xmpp.disconnect()
                await asyncio.sleep(0.2)
            loop.run_until_complete(stop_when_done())

        thread = threading.Thread(target=run_slixmpp, daemon=True)
        thread.start()
        try:
            self.assertTrue(ready.wait(15), "slixmpp did not authenticate")
            cb1.send(f"<message from='user@cb1.{DOMAIN}' to='bot@cb3.{DOMAIN}' type='chat' "
                     f"id='s1'><body>héllo 会议 &amp; more</body></message>")
            cb1.read_until("echo: héllo 会议 &amp; more".encode())
            self.assertEqual(received, ["héllo 会议 & more"])
        finally:
            done.set()
            thread.join(10)

    def test_reconnecting_bridge_replaces_the_old_connection(self):
        self.add_bridges("cb1", "cb2")
        old = self.bridge("cb1").connect()
        new = self.bridge("cb1").connect()
        old.read_until("<conflict ")
        self.assertTrue(old.wait_closed())
        cb2 = self.bridge("cb2").connect()
        cb2.send(f"<message from='cb2.{DOMAIN}' to='cb1.{DOMAIN}' id='to-new'/>")
        new.read_until("id='to-new'")

    def test_changes_in_a_row_are_live_at_once(self):
        """Each change edits the router configuration the shards read in place, in one of
        two buffers taken in turn: every answer must find the bridge's latest secret live
        (and the one before refused), however quickly the changes follow each other."""
        secrets = [f"secret-number-{i:02d}" for i in range(8)]
        for i, secret in enumerate(secrets):
            code, out = self.node.admin("callbridge", "add-secret", "cb1", f"--secret={secret}",
                                        "--force")
            self.assertEqual(code, 0, out)
            # A second bridge and a user between them, so the buffers' missed edits differ.
            code, out = self.node.admin("callbridge", "add-secret", f"other{i}",
                                        f"--secret={secret}")
            self.assertEqual(code, 0, out)
            live = RawComponent(self.node.port, "cb1", secret).connect()
            live.close()
            if i == len(secrets) - 1:  # once: failed handshakes get an address throttled
                stale = RawComponent(self.node.port, "cb1", secrets[i - 1]).open_stream()
                stale.handshake(expect_ok=False)
                self.assertStreamError(stale, "not-authorized")
        for i in range(len(secrets)):
            RawComponent(self.node.port, f"other{i}", secrets[i]).connect().close()
        code, out = self.node.admin("callbridge", "del", "other0")
        self.assertEqual(code, 0, out)
        gone = RawComponent(self.node.port, "other0", secrets[0]).open_stream()
        self.assertStreamError(gone, "host-unknown")

    # --- stream errors ------------------------------------------------------

    def assertStreamError(self, component, condition):
        component.read_until(f"<{condition} ")
        self.assertTrue(component.wait_closed(), "connection stayed open after a stream error")

    def test_stream_errors(self):
        self.add_bridges("cb1")
        secret = self.node.secrets()["cb1"]
        wrong = RawComponent(self.node.port, "cb1", "wrong-secret").open_stream()
        wrong.handshake(expect_ok=False)
        self.assertStreamError(wrong, "not-authorized")
        # The seed's scenario 2 (authentication failure) is named in the log and in
        # `status` (Recent errors and warnings), with the bridge and the peer.
        wait_until(lambda: "event=bridge_auth_failed bridge=cb1.example.com peer=127.0.0.1"
                   in self.node.read_log(), what="the auth failure logged")
        code, out, _ = self.node.stanzactl("status")
        self.assertIn("Recent errors and warnings:\n", out)
        self.assertIn("bridge_auth_failed bridge=cb1.example.com", out)
        unknown = RawComponent(self.node.port, "cb9", secret).open_stream()
        self.assertStreamError(unknown, "host-unknown")
        client_ns = RawComponent(self.node.port, "cb1", secret).open_stream("jabber:client")
        self.assertStreamError(client_ns, "invalid-namespace")
        spoof = RawComponent(self.node.port, "cb1", secret).connect()
        spoof.send(f"<message from='cb2.{DOMAIN}' to='cb1.{DOMAIN}'/>")
        self.assertStreamError(spoof, "invalid-from")
        entity = RawComponent(self.node.port, "cb1", secret).connect()
        entity.send(f"<message from='cb1.{DOMAIN}' to='x@{DOMAIN}'>&xxe;</message>")
        self.assertStreamError(entity, "restricted-xml")
        broken = RawComponent(self.node.port, "cb1", secret).connect()
        broken.send(f"<message from='cb1.{DOMAIN}' to='x@{DOMAIN}'><body></message>")
        self.assertStreamError(broken, "not-well-formed")
        huge = RawComponent(self.node.port, "cb1", secret).connect()
        try:
            huge.send(f"<message from='cb1.{DOMAIN}' to='x@{DOMAIN}'><body>"
                      + "x" * (300 * 1024) + "</body></message>")
        except OSError:
            pass  # the server may close before reading it all
        self.assertStreamError(huge, "policy-violation")

    def test_an_idle_bridge_is_closed_with_connection_timeout(self):
        idle_timeout_s = 1
        self.node.stop()
        self.node.extra_flags.append(f"--idle_timeout_s={idle_timeout_s}")
        self.node.start(seed=False)
        self.node.wait_serving()
        self.add_bridges("cb1", "cb2")
        idle = self.bridge("cb1").open_stream()
        handshake_sent = time.monotonic()  # the server's last activity is later than this
        idle.handshake()
        busy = self.bridge("cb2").connect()
        # cb2 sends whitespace keepalives; cb1 sends nothing after its handshake.
        deadline = time.monotonic() + idle_timeout_s + 10
        closed = False
        while not closed and time.monotonic() < deadline:
            busy.send(" ")
            closed = idle.wait_closed(timeout=0.2)
        self.assertTrue(closed, "the idle bridge was not closed")
        self.assertGreaterEqual(time.monotonic() - handshake_sent, idle_timeout_s)  # never early
        self.assertIn(b"<stream:error><connection-timeout xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>",
                      idle.received)
        self.assertTrue(idle.received.endswith(b"</stream:stream>"), idle.received[-200:])
        # The bridge that kept talking, connected as long, is still served.
        busy.send(f"<iq type='get' from='cb2.{DOMAIN}' to='{DOMAIN}' id='alive'>"
                  "<ping xmlns='urn:xmpp:ping'/></iq>")
        busy.read_until(f"<iq from='{DOMAIN}' to='cb2.{DOMAIN}' type='result' id='alive'/>")

    def test_malformed_and_stalled_connections_do_not_affect_others(self):
        self.add_bridges("cb1", "cb2")
        stalled = socket.create_connection(("127.0.0.1", self.node.port))
        stalled.sendall(b"<stream:stream xmlns='jabber:component:accept' xmlns:str")
        garbage = socket.create_connection(("127.0.0.1", self.node.port))
        garbage.sendall(bytes(random.Random(7).getrandbits(8) for _ in range(4096)))
        silent = socket.create_connection(("127.0.0.1", self.node.port))
        try:
            cb1 = self.bridge("cb1").connect()
            cb2 = self.bridge("cb2").connect()
            for i in range(200):
                cb1.send(f"<message from='cb1.{DOMAIN}' to='cb2.{DOMAIN}' id='n{i}'/>")
            cb2.read_until("id='n199'")
            for i in range(200):
                self.assertIn(f"id='n{i}'".encode(), cb2.received)
        finally:
            for s in (stalled, garbage, silent):
                s.close()

    def test_deleting_a_bridge_disconnects_it(self):
        self.add_bridges("cb1", "cb2")
        cb1 = self.bridge("cb1").connect()
        cb2 = self.bridge("cb2").connect()
        code, _, err = self.node.stanzactl("callbridge", "del", "cb2")
        self.assertEqual(code, 0, err)
        self.assertStreamError(cb2, "not-authorized")
        cb1.send(f"<message from='cb1.{DOMAIN}' to='cb2.{DOMAIN}' id='gone'/>")
        cb1.read_until("id='gone'><error type='cancel'><service-unavailable")

    def test_thousand_bridges_each_exchange_a_message(self):
        count = 1000
        names = [f"b{i}" for i in range(count)]
        for name in names:
            code, out = self.node.admin("callbridge", "add", name)
            self.assertEqual(code, 0, out)
        secrets = self.node.secrets()
        bridges = []
        for name in names:
            component = RawComponent(self.node.port, name, secrets[name])
            self.components.append(component)
            component.open_stream().handshake(expect_ok=False)
            bridges.append(component)
        for component in bridges:
            component.read_until("<handshake/>")
        # Each bridge sends one message to the next one around the ring.
        for i, component in enumerate(bridges):
            target = names[(i + 1) % count]
            component.send(f"<message from='{names[i]}.{DOMAIN}' to='{target}.{DOMAIN}' "
                           f"id='ring-{i}'><body>{i}</body></message>")
        for i, component in enumerate(bridges):
            component.read_until(f"id='ring-{(i - 1) % count}'")
        code, out, _ = self.node.stanzactl("status", json=True)
        status = json.loads(out)
        self.assertEqual(status["callbridges_connected"], count)
        self.assertGreaterEqual(status["stanzas_routed"], count)


class HelpTest(unittest.TestCase):
    """stanzad --help as an operator reads it (issue 16: it printed 'Flags from
    <build path>/cmd/stanzad.cc')."""

    def test_help_groups_every_flag_under_an_operator_heading(self):
        import subprocess
        from stanzad_harness import STANZAD
        result = subprocess.run([STANZAD, "--help"], capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 0, result.stderr)
        out = result.stdout
        headings = re.findall(r"^(\S[^\n]*):$", out, re.MULTILINE)
        self.assertEqual(headings[:6], [
            "State and first start", "Listening (TLS with the certificate of 'stanzactl certs')",
            "Clients", "Cluster", "Limits", "Logging, metrics and threads"])
        self.assertNotIn("Other flags", out)  # every flag is in a group that means something
        # No build path: neither Abseil's "Flags from" nor a source file name.
        self.assertNotIn("Flags from", out)
        self.assertNotRegex(out, r"[\w/.-]+\.cc\b")
        self.assertNotIn(os.path.abspath(os.path.join(os.path.dirname(__file__), "../..")), out)
        # Every flag the daemon defines is listed once, with its text and default.
        source = os.path.join(os.path.dirname(__file__), "../../server/daemon_options.cc")
        with open(source) as f:
            defined = re.findall(r"^ABSL_FLAG\([^,]+,\s*(\w+),", f.read(), re.MULTILINE)
        self.assertGreater(len(defined), 20)
        for name in defined:
            entry = re.findall(rf"^  --{name}=\S+\n((?:      .*\n)+)", out, re.MULTILINE)
            self.assertEqual(len(entry), 1, f"--{name} in --help:\n{out}")
            self.assertRegex(entry[0], r"\w+ \w+")  # its help text
            self.assertIn("      Default: ", entry[0])
        listed = re.findall(r"^  --(\w+)=", out, re.MULTILINE)
        self.assertEqual(sorted(listed), sorted(defined))


class DurabilityTest(unittest.TestCase):
    def test_a_state_dir_others_can_read_is_tightened(self):
        import shutil
        import stat
        import tempfile
        state_dir = tempfile.mkdtemp(prefix="stanzad-it-")
        os.chmod(state_dir, 0o755)
        node = StanzadProcess(state_dir=state_dir)
        try:
            node.start()
            self.assertEqual(stat.S_IMODE(os.stat(state_dir).st_mode), 0o700)
            wait_until(lambda: "event=state_dir_tightened" in node.read_log(),
                       what="the tightening logged")
            key = os.path.join(state_dir, "sasl_salt_key")
            self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
        finally:
            node.cleanup()
            shutil.rmtree(state_dir, ignore_errors=True)

    def test_restart_keeps_the_configuration(self):
        node = StanzadProcess().start()
        try:
            node.wait_serving()
            for name in ("cb1", "cb2", "cb3"):
                self.assertEqual(node.admin("callbridge", "add", name)[0], 0)
            before = node.secrets()
            self.assertEqual(node.stop(), 0)
            node.start(seed=False)
            node.wait_serving()
            self.assertEqual(node.secrets(), before)
            RawComponent(node.port, "cb2", before["cb2"]).connect().close()
        finally:
            node.cleanup()

    def test_sigkill_during_a_burst_of_adds_never_tears_the_state(self):
        node = StanzadProcess()
        try:
            acknowledged = set()
            rng = random.Random(11)
            for round_number in range(5):
                node.start(seed=(round_number == 0))
                stop = threading.Event()

                def add_many():
                    i = 0
                    while not stop.is_set():
                        name = f"r{round_number}x{i}"
                        try:
                            code, _ = node.admin("callbridge", "add", name)
                        except OSError:
                            return
                        if code == 0:
                            acknowledged.add(name)
                        i += 1
                adder = threading.Thread(target=add_many)
                adder.start()
                time.sleep(0.05 + rng.random() * 0.3)
                node.stop(signal.SIGKILL)
                stop.set()
                adder.join(10)
            node.start(seed=False)
            listed = set(node.secrets())
            missing = acknowledged - listed
            self.assertFalse(missing, f"acknowledged but lost after SIGKILL: {sorted(missing)}")
            self.assertGreater(len(acknowledged), 0)
        finally:
            node.cleanup()



def open_files_soft_limit(pid):
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise RuntimeError("no Max open files")


class OpenFilesLimitTest(unittest.TestCase):
    """stanzad raises its soft open files limit to what --connections_max needs, and says
    so at error level when the hard limit is too low (and serves all the same)."""

    def start_with_soft_limit(self, soft_limit, flags):
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft_limit, hard))  # stanzad inherits it
        try:
            return StanzadProcess(extra_flags=flags).start()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    def test_the_soft_limit_is_raised_for_connections_max(self):
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard != resource.RLIM_INFINITY and hard < 4000:
            self.skipTest(f"the hard open files limit ({hard}) is below 4,000")
        # Plain descriptors: one per connection of --connections_max.
        node = self.start_with_soft_limit(
            512, ["--connections_max=3000", "--direct_descriptors=false"])
        try:
            node.wait_serving()
            self.assertGreaterEqual(open_files_soft_limit(node.process.pid), 3000)
            self.assertNotIn("open_files_limit_too_low", node.read_log())
        finally:
            node.cleanup()
        # Direct descriptors (the default): each of the 2 shards' tables (1,500 and a
        # spare of 64) must fit under the limit, but the node asks for one per connection
        # all the same, for a kernel that falls back to plain descriptors.
        node = self.start_with_soft_limit(512, ["--connections_max=3000"])
        try:
            node.wait_serving()
            self.assertGreaterEqual(open_files_soft_limit(node.process.pid), 3000)
            self.assertNotIn("open_files_limit_too_low", node.read_log())
        finally:
            node.cleanup()

    def test_a_hard_limit_below_connections_max_is_an_error_that_says_how_to_raise_it(self):
        for flags, needed in ((["--direct_descriptors=false"], r"needed=1\d{5}"),
                              ([], r"needed=50064 ")):  # one of 2 shards' share, and 64
            with self.subTest(flags=flags):
                self.check_hard_limit_too_low(flags, needed)

    def check_hard_limit_too_low(self, flags, needed):
        node = StanzadProcess(open_files_max=600,
                              extra_flags=["--connections_max=100000"] + flags).start()
        try:
            node.wait_serving()
            log = wait_until(lambda: (lambda text: text if "open_files_limit_too_low" in text
                                      else None)(node.read_log()), what="the error logged")
            line = next(l for l in log.splitlines() if "open_files_limit_too_low" in l)
            self.assertIn(" error ", f" {line} ")
            self.assertIn("limit=600", line)
            self.assertRegex(line, needed)
            self.assertIn("LimitNOFILE=", line)
            # It serves all the same, within the limit it has.
            self.assertEqual(node.admin("callbridge", "add", "cb")[0], 0)
            bridge = RawComponent(node.port, "cb", node.secrets()["cb"])
            bridge.open_stream().handshake()
            bridge.close()
        finally:
            node.cleanup()

if __name__ == "__main__":
    unittest.main()
