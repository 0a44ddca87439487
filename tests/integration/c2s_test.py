"""Integration tests of stanzad's client ports (RFC 6120 c2s, XEP-0368 direct TLS):
real processes, real TLS on 127.0.0.1, slixmpp (Debian's python3-slixmpp) as the
third-party client, and RawClient, a small asyncio client for what must be seen
byte for byte on the wire (stream errors, SASL failures, broken handshakes, load).

Every node gets a lab certificate made once with `stanzactl pki selfsigned`, and the
clients verify it (the certificate is their only trust anchor), so a test also fails
if the node serves the wrong certificate.

Run: STANZAD_BIN_DIR=build/cmd /usr/bin/python3 tests/integration/c2s_test.py -v
"""
import asyncio
import base64
import functools
import hashlib
import hmac
import logging
import os
import random
import re
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import unittest

logging.getLogger("slixmpp").setLevel(logging.ERROR)  # not its notes on optional modules
import slixmpp  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from stanzad_harness import (DOMAIN, STANZACTL, RawComponent, StanzadProcess,  # noqa: E402
                             free_port, patient)

PASSWORD = "pencil ünd Grüße"  # spaces and non-ASCII: SASLprep and PLAIN both see them
WAIT_S = patient(10.0)  # bound on any single expected event
STREAM_NS = "http://etherx.jabber.org/streams"
STREAM_HEADER = (f"<?xml version='1.0'?><stream:stream to='{DOMAIN}' xmlns='jabber:client' "
                 f"xmlns:stream='{STREAM_NS}' version='1.0'>")
TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL_NS = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND_NS = "urn:ietf:params:xml:ns:xmpp-bind"
STREAMS_ERROR_NS = "urn:ietf:params:xml:ns:xmpp-streams"
STANZAS_ERROR_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
SASL_NOT_AUTHORIZED = f"<failure xmlns='{SASL_NS}'><not-authorized/></failure>"

# The lab certificate of every node, made by setUpModule.
CERTIFICATE = {"dir": None, "key": None, "crt": None}


def setUpModule():
    work = tempfile.mkdtemp(prefix="stanzad-c2s-pki-")
    result = subprocess.run([os.path.abspath(STANZACTL), "pki", "selfsigned", "xmpp",
                             f"CN:{DOMAIN}", f"subjectAltName:{DOMAIN}", "days:30"],
                            cwd=work, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise RuntimeError(f"stanzactl pki selfsigned failed: {result.stdout}{result.stderr}")
    CERTIFICATE.update(dir=work, key=os.path.join(work, "xmpp.key"),
                       crt=os.path.join(work, "xmpp.crt"))
    # 1,000 clients and the daemon's side of them share this machine's limits.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def tearDownModule():
    if CERTIFICATE["dir"]:
        shutil.rmtree(CERTIFICATE["dir"], ignore_errors=True)


@functools.cache
def client_tls_context(tls_version=None):
    """Trusts only the lab certificate, and checks that it names the domain. With
    `tls_version`, offers exactly that version."""
    context = ssl.create_default_context(cafile=CERTIFICATE["crt"])
    context.check_hostname = True
    if tls_version is not None:
        context.minimum_version = tls_version
        context.maximum_version = tls_version
    return context


def client_hello():
    """The first flight of a real TLS client: a ClientHello record."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = client_tls_context().wrap_bio(incoming, outgoing, server_hostname=DOMAIN)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def scram_credentials(password, iterations=4096):
    """`stanzactl user add`'s credentials text (RFC 5803), for adding users in bulk
    over the admin socket. One fixed salt: these test accounts share a password."""
    def secret(mechanism, hash_name, salt):
        salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, iterations)
        client_key = hmac.new(salted, b"Client Key", hash_name).digest()
        server_key = hmac.new(salted, b"Server Key", hash_name).digest()
        stored_key = hashlib.new(hash_name, client_key).digest()
        encode = lambda data: base64.b64encode(data).decode()  # noqa: E731
        return (f"{mechanism}${iterations}:{encode(salt)}$"
                f"{encode(stored_key)}:{encode(server_key)}")
    return (secret("SCRAM-SHA-1", "sha1", b"c2s-test-salt-1!") + " "
            + secret("SCRAM-SHA-256", "sha256", b"c2s-test-salt-256"))


def bounded(timeout_s):
    """Runs an async test under a deadline, so that no test can hang."""
    def decorate(test):
        @functools.wraps(test)
        async def run(self):
            await asyncio.wait_for(test(self), patient(timeout_s))
        return run
    return decorate


def start_tag(stanza):
    """The start tag of a stanza, where the server writes its attributes."""
    return stanza[:stanza.index(b">") + 1]


# --- clients -----------------------------------------------------------------


class RawClient:
    """A bare XMPP client over asyncio: STARTTLS or direct TLS, SASL PLAIN, bind.

    It records every byte it receives; expect() searches only what arrived after the
    previous match, so each expectation sees the next thing the server said.
    """

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer
        self.received = b""
        self.mark = 0  # expect() searches received[mark:]
        self.jid = None
        self.closed = False

    @classmethod
    async def open(cls, port, direct_tls=False):
        tls = {"ssl": client_tls_context(), "server_hostname": DOMAIN} if direct_tls else {}
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, **tls), WAIT_S)
        return cls(reader, writer)

    @classmethod
    async def login(cls, port, user, password=PASSWORD, resource="raw", direct_tls=False):
        """A bound session, or AssertionError naming the step that failed."""
        client = await cls.open(port, direct_tls)
        try:
            await client.secure(direct_tls)
            answer = await client.authenticate(user, password)
            if not answer.startswith(b"<success"):
                raise AssertionError(f"login of {user} failed: {answer!r}")
            await client.open_stream()
            answer = await client.bind(resource)
            if client.jid is None:
                raise AssertionError(f"bind of {user}/{resource} failed: {answer!r}")
        except BaseException:
            client.close()
            raise
        return client

    def send(self, data):
        self.writer.write(data.encode() if isinstance(data, str) else data)

    async def _read(self, timeout):
        """Appends what arrives within `timeout` to received; False once closed."""
        try:
            chunk = await asyncio.wait_for(self.reader.read(65536), timeout)
        except asyncio.TimeoutError:
            return True
        except (ConnectionError, ssl.SSLError):
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.received += chunk
        return True

    async def expect(self, pattern, timeout=WAIT_S):
        """Reads until `pattern` (text, or a compiled bytes regex) arrives; its match."""
        if isinstance(pattern, str):
            pattern = re.compile(re.escape(pattern.encode()))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            match = pattern.search(self.received, self.mark)
            if match:
                self.mark = match.end()
                return match
            remaining = deadline - loop.time()
            if self.closed or remaining <= 0:
                state = "closed" if self.closed else f"nothing more in {timeout}s"
                raise AssertionError(f"expected {pattern.pattern!r}, {state}; after the last "
                                     f"match got {self.received[self.mark:][-800:]!r}")
            await self._read(remaining)

    async def expect_stanza(self, kind, stanza_id, timeout=WAIT_S):
        """The next <kind/> stanza with id `stanza_id`, whole."""
        pattern = re.compile(rb"<%s\b[^>]*\bid='%s'[^>]*?(?:/>|>.*?</%s>)"
                             % (kind.encode(), re.escape(stanza_id.encode()), kind.encode()),
                             re.DOTALL)
        return (await self.expect(pattern, timeout)).group(0)

    async def wait_closed(self, timeout=WAIT_S):
        """True once the server has closed the connection, False if it did not in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.closed and loop.time() < deadline:
            await self._read(deadline - loop.time())
        return self.closed

    async def read_for(self, seconds):
        """Reads whatever arrives within `seconds` (to see that nothing more does)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while not self.closed and loop.time() < deadline:
            await self._read(deadline - loop.time())

    async def open_stream(self):
        """Sends a stream header; the features the server answers with."""
        self.send(STREAM_HEADER)
        await self.expect(re.compile(rb"<stream:stream\b[^>]*>"))
        return (await self.expect(re.compile(rb"<stream:features\s*/>|"
                                              rb"<stream:features>.*?</stream:features>",
                                              re.DOTALL))).group(0)

    async def starttls(self):
        self.send(f"<starttls xmlns='{TLS_NS}'/>")
        await self.expect(f"<proceed xmlns='{TLS_NS}'/>")
        await asyncio.wait_for(
            self.writer.start_tls(client_tls_context(), server_hostname=DOMAIN), WAIT_S)

    async def secure(self, direct_tls=False):
        """Opens the stream and, unless TLS is already up, negotiates STARTTLS; the
        features offered inside TLS (SASL)."""
        features = await self.open_stream()
        if not direct_tls:
            await self.starttls()
            features = await self.open_stream()
        return features

    async def authenticate(self, user, password):
        """SASL PLAIN (RFC 4616); the server's <success/> or <failure/>, whole."""
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        self.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{token}</auth>")
        return (await self.expect(re.compile(
            rb"<success\b[^>]*?(?:/>|>.*?</success>)|<failure\b.*?</failure>",
            re.DOTALL))).group(0)

    async def bind(self, resource, stanza_id="bind"):
        """The server's answer to a bind request, whole; sets jid on success."""
        self.send(f"<iq type='set' id='{stanza_id}'><bind xmlns='{BIND_NS}'>"
                  f"<resource>{resource}</resource></bind></iq>")
        answer = await self.expect_stanza("iq", stanza_id)
        bound = re.search(rb"<jid>([^<]+)</jid>", answer)
        if b"type='result'" in start_tag(answer) and bound:
            self.jid = bound.group(1).decode()
        return answer

    def send_message(self, to, stanza_id, body):
        self.send(f"<message to='{to}' id='{stanza_id}' type='chat'><body>{body}</body>"
                  "</message>")

    def close(self):
        """Drops the connection at once: a TLS close would wait for the server's reply,
        which could outlive the test's event loop."""
        self.writer.transport.abort()


class SlixClient(slixmpp.ClientXMPP):
    """slixmpp as a user runs it, trusting the lab certificate: on session start it
    sends presence (so it is available for messages to the bare JID) and asks for its
    roster, and it queues every message it gets."""

    def __init__(self, jid, password=PASSWORD, mechanism=None, stream_management=False,
                 tls_version=None):
        super().__init__(jid, password, sasl_mech=mechanism)
        self.ssl_context = client_tls_context(tls_version)
        self.register_plugin("xep_0199")  # ping
        self.resumed = asyncio.Event()
        if stream_management:
            self.register_plugin("xep_0198")
            self.add_event_handler("session_resumed", lambda _: self.resumed.set())
        self.messages = asyncio.Queue()
        self.started = asyncio.Event()
        self.auth_failed = asyncio.Event()
        self.failure_conditions = []
        self.roster_answer = None
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("message", self.messages.put_nowait)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("failed_all_auth", lambda _: self.auth_failed.set())

    async def _on_session_start(self, _):
        self.send_presence()
        self.roster_answer = await self.get_roster(timeout=WAIT_S)
        self.started.set()

    def _on_failed_auth(self, failure):
        self.failure_conditions.append(failure["condition"])

    @property
    def mechanism(self):
        return self["feature_mechanisms"].mech.name

    async def login(self, port, direct_tls=False):
        self.connect(("127.0.0.1", port), use_ssl=direct_tls)
        await asyncio.wait_for(self.started.wait(), WAIT_S)
        return self

    async def next_message(self):
        return await asyncio.wait_for(self.messages.get(), WAIT_S)

    async def close(self):
        try:
            await asyncio.wait_for(self.disconnect(wait=1.0), 3)
        except (asyncio.TimeoutError, ConnectionError):
            self.abort()


# --- tests -------------------------------------------------------------------


class C2sTest(unittest.IsolatedAsyncioTestCase):
    """Each test starts its own node (flags differ); setUp/tearDown keep the list of
    what to stop, so a failing test leaves no process or connection behind."""

    def setUp(self):
        self.nodes = []
        self.raw_clients = []
        self.slix_clients = []
        self.components = []

    async def asyncSetUp(self):
        # IsolatedAsyncioTestCase runs its loop in debug mode, which records a traceback
        # for every task and future: ten times slower with a thousand TLS clients.
        asyncio.get_running_loop().set_debug(False)

    async def asyncTearDown(self):
        for client in self.slix_clients:
            await client.close()
        for client in self.raw_clients:
            client.close()

    def tearDown(self):
        for component in self.components:
            component.close()
        for node in self.nodes:
            node.cleanup()

    # --- helpers -------------------------------------------------------------

    def start_node(self, *flags, certificate=True):
        """A node serving example.com with users juliet and romeo (stanzactl user add)."""
        node = StanzadProcess(extra_flags=flags)
        self.nodes.append(node)  # cleaned up even if it fails to come up
        node.start()
        node.wait_serving()
        for user in ("juliet", "romeo"):
            code, out, err = node.stanzactl("user", "add", user, stdin=PASSWORD + "\n")
            self.assertEqual(code, 0, out + err)
        if certificate:
            self.set_certificate(node)
        return node

    def set_certificate(self, node):
        code, out, err = node.stanzactl("certs", CERTIFICATE["key"], CERTIFICATE["crt"])
        self.assertEqual(code, 0, out + err)
        self.assertIn(f"Certificate accepted for {DOMAIN}", out)

    async def raw(self, port, user=None, resource="raw", direct_tls=False):
        """A RawClient, logged in and bound if `user` is given; closed by tearDown."""
        if user is None:
            client = await RawClient.open(port, direct_tls)
        else:
            client = await RawClient.login(port, user, resource=resource, direct_tls=direct_tls)
        self.raw_clients.append(client)
        return client

    async def slix(self, port, jid, password=PASSWORD, mechanism=None, direct_tls=False,
                   stream_management=False, tls_version=None):
        """A logged-in SlixClient; disconnected by tearDown."""
        client = SlixClient(jid, password, mechanism, stream_management, tls_version)
        self.slix_clients.append(client)
        return await client.login(port, direct_tls)

    async def log_line(self, node, pattern, timeout=WAIT_S):
        """The first line of the node's log matching `pattern` (a regex), waiting for it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            match = re.search(f"^.*{pattern}.*$", node.read_log(), re.MULTILINE)
            if match:
                return match.group(0)
            if loop.time() > deadline:
                self.fail(f"no log line matching {pattern!r} in {timeout}s:\n"
                          + node.read_log()[-3000:])
            await asyncio.sleep(0.05)

    async def assertStreamError(self, client, condition):
        await client.expect(f"<stream:error><{condition} xmlns='{STREAMS_ERROR_NS}'")
        self.assertTrue(await client.wait_closed(), "connection stayed open after a stream error")

    async def assertMessageArrives(self, receiver, stanza_id, sender_jid, body):
        stanza = await receiver.expect_stanza("message", stanza_id)
        self.assertIn(f"from='{sender_jid}'".encode(), start_tag(stanza))
        self.assertIn(f"<body>{body}</body>".encode(), stanza)

    # --- stream management (XEP-0198) -------------------------------------------

    @bounded(60)
    async def test_stream_management_acks_and_resumes_after_a_dropped_connection(self):
        node = self.start_node()
        juliet = await self.slix(node.c2s_port, f"juliet@{DOMAIN}/balcony",
                                 stream_management=True)
        romeo = await self.raw(node.c2s_port, "romeo", resource="garden")
        sm = juliet["xep_0198"]
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while not (sm.enabled_in and sm.sm_id):
            self.assertLess(asyncio.get_running_loop().time(), deadline, "SM not enabled")
            await asyncio.sleep(0.05)
        for i in range(10):  # more than the server's ack window (8): it asks for an ack
            romeo.send(f"<message to='juliet@{DOMAIN}/balcony' id='s{i}'>"
                             f"<body>before {i}</body></message>")
        for i in range(10):
            self.assertEqual((await juliet.next_message())["body"], f"before {i}")

        # The TCP connection drops without a stream end; messages sent meanwhile wait.
        juliet.transport.abort()
        await self.log_line(node, "client_detached client=juliet@example.com/balcony")
        romeo.send(f"<message to='juliet@{DOMAIN}/balcony' id='away'>"
                         "<body>while away</body></message>")
        juliet.connect(("127.0.0.1", node.c2s_port))
        await asyncio.wait_for(juliet.resumed.wait(), WAIT_S)
        await self.log_line(node, "client_resumed client=juliet@example.com/balcony")
        self.assertEqual((await juliet.next_message())["body"], "while away")
        self.assertNotIn(b"type='error'", romeo.received)  # nothing bounced to romeo
        # The resumed session routes as before.
        romeo.send(f"<message to='juliet@{DOMAIN}/balcony' id='after'>"
                         "<body>after</body></message>")
        self.assertEqual((await juliet.next_message())["body"], "after")

    @bounded(60)
    async def test_unacknowledged_stanzas_return_to_their_sender_when_resumption_expires(self):
        node = self.start_node("--resume_timeout_s=1")
        romeo = await self.raw(node.c2s_port, "romeo", resource="garden")
        juliet = await self.raw(node.c2s_port, "juliet", resource="balcony")
        juliet.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        await juliet.expect("<enabled xmlns='urn:xmpp:sm:3' id=")
        romeo.send(f"<message to='juliet@{DOMAIN}/balcony' id='lost'><body>x</body>"
                         "</message>")
        await juliet.expect("id='lost'")
        juliet.writer.transport.abort()  # gone, without acknowledging it
        await self.log_line(node, "client_resume_expired client=juliet@example.com/balcony")
        stanza = await romeo.expect_stanza("message", "lost")
        self.assertIn(b"type='error'", start_tag(stanza))
        self.assertIn(b"<recipient-unavailable", stanza)

    # --- 1, 2: slixmpp ---------------------------------------------------------

    @bounded(60)
    async def test_slixmpp_logs_in_with_scram_sha_256_and_talks(self):
        node = self.start_node()
        juliet, romeo = await asyncio.gather(
            self.slix(node.c2s_port, f"juliet@{DOMAIN}/balcony"),
            self.slix(node.c2s_port, f"romeo@{DOMAIN}/garden"))
        for client in (juliet, romeo):
            self.assertEqual(client.mechanism, "SCRAM-SHA-256")  # the best one offered
            self.assertIsInstance(client.socket, (ssl.SSLSocket, ssl.SSLObject))
            self.assertEqual(client.roster_answer["type"], "result")
            self.assertEqual(len(client.roster_answer["roster"]["items"]), 0)
        self.assertEqual(juliet.boundjid.full, f"juliet@{DOMAIN}/balcony")

        body = "Grüße 会议 😀 <b>&amp;</b> 'quoted'"
        juliet.send_message(mto=f"romeo@{DOMAIN}/garden", mbody=body, mtype="chat")
        message = await romeo.next_message()
        self.assertEqual((message["from"].full, message["to"].full, message["body"]),
                         (f"juliet@{DOMAIN}/balcony", f"romeo@{DOMAIN}/garden", body))

        romeo.send_message(mto=f"juliet@{DOMAIN}", mbody="to the bare JID", mtype="chat")
        message = await juliet.next_message()
        self.assertEqual((message["from"].full, message["body"]),
                         (f"romeo@{DOMAIN}/garden", "to the bare JID"))

        # XEP-0199 to the server. Not slixmpp's ping(), which takes an error answer
        # from one's own server for a pong: the answer must be a result, from the
        # server, to juliet, with the ping's id.
        ping = juliet.make_iq_get(ito=DOMAIN)
        ping["id"] = "ping-1"
        ping.enable("ping")
        pong = await ping.send(timeout=WAIT_S)
        self.assertEqual((pong["type"], pong["id"], pong["from"].full, pong["to"].full),
                         ("result", "ping-1", DOMAIN, f"juliet@{DOMAIN}/balcony"))

    @bounded(60)
    async def test_slixmpp_over_tls_1_2_and_over_tls_1_3(self):
        # Whichever wolfSSL stanzad is linked with (its own or the system's): both
        # versions interoperate with Python's OpenSSL, on STARTTLS and direct TLS.
        tls_port = free_port()
        node = self.start_node(f"--c2s_tls_port={tls_port}")
        for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                              (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
            with self.subTest(version=name):
                tag = name.replace(".", "")
                starttls, direct = await asyncio.gather(
                    self.slix(node.c2s_port, f"juliet@{DOMAIN}/{tag}", tls_version=version),
                    self.slix(tls_port, f"romeo@{DOMAIN}/{tag}", direct_tls=True,
                              tls_version=version))
                for client in (starttls, direct):
                    self.assertEqual(client.socket.version(), name)
                starttls.send_message(mto=f"romeo@{DOMAIN}/{tag}", mbody=name, mtype="chat")
                message = await direct.next_message()
                self.assertEqual((message["from"].full, message["body"]),
                                 (f"juliet@{DOMAIN}/{tag}", name))

    @bounded(60)
    async def test_slixmpp_logs_in_with_scram_sha_1_and_with_plain(self):
        node = self.start_node()
        juliet, romeo = await asyncio.gather(
            self.slix(node.c2s_port, f"juliet@{DOMAIN}/sha1", mechanism="SCRAM-SHA-1"),
            self.slix(node.c2s_port, f"romeo@{DOMAIN}/plain", mechanism="PLAIN"))
        self.assertEqual((juliet.mechanism, romeo.mechanism), ("SCRAM-SHA-1", "PLAIN"))
        juliet.send_message(mto=f"romeo@{DOMAIN}/plain", mbody="sha1 to plain", mtype="chat")
        message = await romeo.next_message()
        self.assertEqual((message["from"].full, message["body"]),
                         (f"juliet@{DOMAIN}/sha1", "sha1 to plain"))

    @bounded(120)
    async def test_users_exported_by_ejabberd_and_prosody_log_in_with_their_old_passwords(self):
        """stanzactl user import with the files the real servers wrote (their host renamed
        to this node's domain: SCRAM keys do not depend on it), then slixmpp logs in."""
        node = self.start_node()
        testdata = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "unit",
                                "testdata", "xep0227")
        work = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, work, True)

        def imported(relative, host, *flags):
            with open(os.path.join(testdata, relative), encoding="utf-8") as f:
                text = f.read().replace(f"jid='{host}'", f"jid='{DOMAIN}'")
            path = os.path.join(work, os.path.basename(relative))
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            code, out, err = node.stanzactl("user", "import", path, *flags)
            self.assertEqual(code, 0, out + err)
            return out

        # ejabberd's SCRAM-SHA-256 store: keys kept as they are (twice base64 in the file).
        self.assertIn("3 added", imported(
            "ejabberd-23.01/20261207-022157_scram-sha256_example.xml", "scram-sha256.example"))
        carol = await self.slix(node.c2s_port, f"carol@{DOMAIN}/e", password="Pässwörd<&>\"'",
                                mechanism="SCRAM-SHA-256")
        # Prosody's SCRAM-SHA-1 store, replacing bob's ejabberd keys.
        self.assertIn("1 replaced", imported("prosody-0.12.3/bob@hashed.example.xml",
                                             "hashed.example", "--force"))
        bob = await self.slix(node.c2s_port, f"bob@{DOMAIN}/p",
                              password="correct horse battery staple", mechanism="SCRAM-SHA-1")
        # ejabberd's plain store: stanzactl hashes the passwords.
        self.assertIn("3 replaced", imported("ejabberd-23.01/20261207-022157_plain_example.xml",
                                             "plain.example", "--force"))
        alice = await self.slix(node.c2s_port, f"alice@{DOMAIN}/x", password="pencil")
        self.assertEqual((carol.mechanism, bob.mechanism), ("SCRAM-SHA-256", "SCRAM-SHA-1"))
        carol.send_message(mto=f"alice@{DOMAIN}/x", mbody="imported", mtype="chat")
        self.assertEqual((await alice.next_message())["body"], "imported")

    # --- 2b: RFC 6121 §8.5.1, an account that does not exist ---------------------

    @bounded(60)
    async def test_slixmpp_to_an_account_that_does_not_exist(self):
        """IQ requests and messages get service-unavailable; presence (and errors, IQ
        results) get nothing, which a later ping to the server proves: it is answered
        on the same stream, after anything the earlier stanzas could have caused."""
        node = self.start_node()
        juliet = await self.slix(node.c2s_port, f"juliet@{DOMAIN}/balcony")
        received = []  # every stanza juliet gets from here on, in order
        juliet.add_filter("in", lambda stanza: received.append(stanza) or stanza)
        message_errors = asyncio.Queue()
        juliet.add_event_handler("message_error", message_errors.put_nowait)

        async def ping_error(to):
            with self.assertRaises(slixmpp.exceptions.IqError) as raised:
                await juliet["xep_0199"].send_ping(to, timeout=WAIT_S)
            return raised.exception.iq

        for to in (f"nobody@{DOMAIN}", f"nobody@{DOMAIN}/res"):
            iq = await ping_error(to)
            self.assertEqual((iq["from"].full, iq["error"]["type"], iq["error"]["condition"]),
                             (to, "cancel", "service-unavailable"))
            for kind in ("chat", "normal", "headline", "groupchat"):
                message = juliet.make_message(mto=to, mbody=f"to nobody, {kind}", mtype=kind)
                message["id"] = f"{kind}-{to}"
                message.send()
                error = await asyncio.wait_for(message_errors.get(), WAIT_S)
                self.assertEqual((error["id"], error["from"].full, error["error"]["type"],
                                  error["error"]["condition"]),
                                 (f"{kind}-{to}", to, "cancel", "service-unavailable"))

        # Romeo exists and is not logged in (§8.5.2, §8.5.3): the server answers a ping
        # to his bare JID for him; his full JID and a message are service-unavailable.
        self.assertEqual((await juliet["xep_0199"].send_ping(f"romeo@{DOMAIN}",
                                                             timeout=WAIT_S))["type"], "result")
        iq = await ping_error(f"romeo@{DOMAIN}/garden")
        self.assertEqual(iq["error"]["condition"], "service-unavailable")
        juliet.send_message(mto=f"romeo@{DOMAIN}", mbody="offline", mtype="chat")
        error = await asyncio.wait_for(message_errors.get(), WAIT_S)
        self.assertEqual(error["error"]["condition"], "service-unavailable")

        # Nothing at all comes back for these.
        received.clear()
        for to in (f"nobody@{DOMAIN}", f"nobody@{DOMAIN}/res"):
            juliet.send_presence(pto=to)  # directed presence
            for kind in ("subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe",
                         "unavailable"):
                juliet.send_presence(pto=to, ptype=kind)
            juliet.send_raw(f"<message to='{to}' type='error' id='e1'>"
                            "<error type='cancel'><service-unavailable "
                            f"xmlns='{STANZAS_ERROR_NS}'/></error></message>")
            juliet.send_raw(f"<iq to='{to}' type='result' id='r1'/>")
            juliet.send_raw(f"<iq to='{to}' type='error' id='r2'><error type='cancel'>"
                            f"<service-unavailable xmlns='{STANZAS_ERROR_NS}'/></error></iq>")
        marker = await juliet["xep_0199"].send_ping(DOMAIN, timeout=WAIT_S)
        self.assertEqual((marker["type"], marker["from"].full), ("result", DOMAIN))
        self.assertEqual([str(stanza) for stanza in received], [str(marker)])
        self.assertTrue(message_errors.empty())

    # --- 3: failed logins ------------------------------------------------------

    @bounded(60)
    async def test_wrong_password_and_unknown_user_get_not_authorized_and_are_logged(self):
        node = self.start_node()
        for user, password in (("juliet", "wrong password"), ("nobody", PASSWORD)):
            client = await self.raw(node.c2s_port)
            features = await client.secure()
            self.assertIn(b"<mechanism>PLAIN</mechanism>", features)
            self.assertEqual(await client.authenticate(user, password),
                             SASL_NOT_AUTHORIZED.encode())
            await self.log_line(node, re.escape(f'event=client_auth_failed user="{user}" '
                                                'peer=127.0.0.1 reason=not-authorized'))
            # The right password, on the same stream, is still let in (RFC 6120 §6.4.5).
            if user == "juliet":
                self.assertTrue((await client.authenticate(user, PASSWORD))
                                .startswith(b"<success"))
        # SCRAM fails the same way, seen by a real client.
        slix = SlixClient(f"romeo@{DOMAIN}/x", "wrong password", mechanism="SCRAM-SHA-256")
        self.slix_clients.append(slix)
        with self.assertLogs("slixmpp.features.feature_mechanisms", logging.ERROR) as logs:
            slix.connect(("127.0.0.1", node.c2s_port))
            await asyncio.wait_for(slix.auth_failed.wait(), WAIT_S)
        self.assertIn("No appropriate login method", logs.output[-1])  # it gave up
        self.assertEqual(slix.failure_conditions, ["not-authorized"])
        self.assertFalse(slix.started.is_set())
        await self.log_line(node, re.escape('event=client_auth_failed user="romeo" '
                                            'peer=127.0.0.1 reason=not-authorized'))
        for password in ("wrong password", PASSWORD):
            self.assertNotIn(password, node.read_log())

    # --- 4: call bridges ---------------------------------------------------------

    @bounded(60)
    async def test_client_and_call_bridge_exchange_messages_and_iqs(self):
        node = self.start_node()
        code, out = node.admin("callbridge", "add", "cb1")
        self.assertEqual(code, 0, out)
        bridge = RawComponent(node.port, "cb1", node.secrets()["cb1"])
        self.components.append(bridge)
        bridge.connect()
        juliet = await self.slix(node.c2s_port, f"juliet@{DOMAIN}/balcony")

        juliet.send_message(mto=f"room@cb1.{DOMAIN}", mbody="join me", mtype="chat")
        received = await asyncio.to_thread(bridge.read_until, "join me</body></message>")
        self.assertRegex(received.decode(), f"<message [^>]*from='juliet@{DOMAIN}/balcony'")
        bridge.send(f"<message from='room@cb1.{DOMAIN}/host' to='juliet@{DOMAIN}/balcony' "
                    f"id='w1' type='chat'><body>welcome</body></message>")
        message = await juliet.next_message()
        self.assertEqual((message["from"].full, message["body"]),
                         (f"room@cb1.{DOMAIN}/host", "welcome"))

        # An IQ to the bridge and its answer back.
        query = juliet.make_iq_get(queryxmlns="http://jabber.org/protocol/disco#info",
                                   ito=f"cb1.{DOMAIN}")
        query["id"] = "disco1"
        answer = asyncio.ensure_future(query.send(timeout=WAIT_S))
        received = await asyncio.to_thread(bridge.read_until, "</iq>")
        request = re.search(rb"<iq [^>]*>", received).group(0)  # as slixmpp wrote it,
        self.assertIn(b'id="disco1"', request)  # with the from the server stamped
        self.assertIn(f"from='juliet@{DOMAIN}/balcony'".encode(), request)
        bridge.send(f"<iq type='result' from='cb1.{DOMAIN}' to='juliet@{DOMAIN}/balcony' "
                    f"id='disco1'><query xmlns='http://jabber.org/protocol/disco#info'>"
                    f"<identity category='conference' type='text' name='Bridge'/></query></iq>")
        result = await answer
        self.assertEqual(result["type"], "result")
        self.assertEqual(result["from"].full, f"cb1.{DOMAIN}")

    # --- 5: untrusted input ------------------------------------------------------

    @bounded(60)
    async def test_stanza_in_the_clear_ends_the_stream_with_policy_violation(self):
        node = self.start_node()
        juliet = await self.raw(node.c2s_port, "juliet", resource="balcony")
        clear = await self.raw(node.c2s_port)
        features = await clear.open_stream()
        self.assertEqual(features, f"<stream:features><starttls xmlns='{TLS_NS}'><required/>"
                                   "</starttls></stream:features>".encode())
        clear.send_message(f"juliet@{DOMAIN}/balcony", "clear1", "in the clear")
        await self.assertStreamError(clear, "policy-violation")
        # A password in the clear is not looked at either.
        clear_auth = await self.raw(node.c2s_port)
        await clear_auth.open_stream()
        token = base64.b64encode(f"\0juliet\0{PASSWORD}".encode()).decode()
        clear_auth.send(f"<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{token}</auth>")
        await self.assertStreamError(clear_auth, "policy-violation")
        self.assertNotIn(b"<success", clear_auth.received)
        await juliet.read_for(0.3)
        self.assertNotIn(b"in the clear", juliet.received)

    @bounded(60)
    async def test_broken_tls_handshakes_do_not_disturb_logged_in_clients(self):
        preauth_timeout_s = 2
        node = self.start_node(f"--preauth_timeout_ms={preauth_timeout_s * 1000}")
        juliet = await self.raw(node.c2s_port, "juliet", resource="balcony")
        romeo = await self.raw(node.c2s_port, "romeo", resource="garden")

        async def after_proceed():
            client = await self.raw(node.c2s_port)
            await client.open_stream()
            client.send(f"<starttls xmlns='{TLS_NS}'/>")
            await client.expect(f"<proceed xmlns='{TLS_NS}'/>")
            return client
        loop = asyncio.get_running_loop()

        async def seconds_until_closed(client):
            opened_at = loop.time()
            closed = await client.wait_closed(preauth_timeout_s + WAIT_S)
            return loop.time() - opened_at if closed else None
        stalled = await after_proceed()  # sends nothing more
        half = await after_proceed()
        hello = client_hello()
        half.send(hello[:len(hello) // 2])
        stalls = [asyncio.ensure_future(seconds_until_closed(c)) for c in (stalled, half)]
        garbage = await after_proceed()
        garbage.send(b"\x00" + random.Random(7).randbytes(4095))  # 0x00: not a TLS record

        sent = 0

        async def exchange(count):
            nonlocal sent
            for i in range(sent, sent + count):
                juliet.send_message(f"romeo@{DOMAIN}/garden", f"n{i}", f"n{i}")
            sent += count
            await romeo.expect_stanza("message", f"n{sent - 1}")

        await exchange(100)
        self.assertTrue(await garbage.wait_closed(), "garbage instead of a ClientHello kept open")
        await self.log_line(node, r"event=tls_handshake_failed peer=127\.0\.0\.1 reason=")
        await exchange(100)
        # The stalled handshakes end at the pre-authentication deadline, not before.
        for seconds in await asyncio.gather(*stalls):
            self.assertIsNotNone(seconds, "a stalled TLS handshake was never timed out")
            self.assertGreaterEqual(seconds, preauth_timeout_s - 0.5)
        await exchange(100)
        for i in range(sent):  # every message once, in order
            self.assertEqual(romeo.received.count(f"id='n{i}'".encode()), 1)
        order = [int(n) for n in re.findall(rb"id='n(\d+)'", romeo.received)]
        self.assertEqual(order, list(range(sent)))

    # --- 6: certificates -----------------------------------------------------------

    @bounded(60)
    async def test_clients_are_refused_until_a_certificate_is_set_live(self):
        node = self.start_node(certificate=False)
        # The operator sees it in status (issue 16: 'enabled, serving', '(clients, STARTTLS)').
        code, out, err = node.stanzactl("status")
        self.assertEqual(code, 0, out + err)
        self.assertIn(f"127.0.0.1:{node.c2s_port} (clients, STARTTLS: refused, no certificate)",
                      out)
        self.assertRegex(out, r"Clients       : 0 connected; refused until a certificate is set "
                              r"with stanzactl certs KEY CERT \[BUNDLE\] \(this node has no "
                              r"certificate\)\n")
        # The client is told why in XMPP (RFC 6120 §4.9.1.1: our header, then the error).
        refused = await self.raw(node.c2s_port)
        refused.send(STREAM_HEADER)
        self.assertTrue(await refused.wait_closed(), "client accepted without a certificate")
        text = refused.received.decode()
        self.assertRegex(text, r"^<\?xml version='1.0'\?><stream:stream [^>]*from='example.com'")
        self.assertIn(f"<stream:error><internal-server-error xmlns='{STREAMS_ERROR_NS}'/>"
                      f"<text xmlns='{STREAMS_ERROR_NS}'>this server has no TLS certificate yet, "
                      "so it cannot offer STARTTLS", text)
        self.assertTrue(text.endswith("</stream:error></stream:stream>"), text)
        self.assertNotIn("starttls", text)
        await self.log_line(node, r"event=client_refused peer=127\.0\.0\.1 "
                                  r"reason=no_tls_certificate")

        self.set_certificate(node)  # no restart
        code, out, err = node.stanzactl("status")
        self.assertIn(f"127.0.0.1:{node.c2s_port} (clients, STARTTLS)", out)
        self.assertIn("Clients       : 0 connected\n", out)
        juliet = await self.raw(node.c2s_port, "juliet", resource="balcony")
        served = juliet.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        with open(CERTIFICATE["crt"]) as f:
            self.assertEqual(served, ssl.PEM_cert_to_DER_cert(f.read()))
        juliet.send_message(f"juliet@{DOMAIN}/balcony", "self1", "to myself")
        await self.assertMessageArrives(juliet, "self1", f"juliet@{DOMAIN}/balcony", "to myself")

    # --- 7: direct TLS -------------------------------------------------------------

    @bounded(60)
    async def test_direct_tls_port_offers_sasl_at_once(self):
        tls_port = free_port()
        node = self.start_node(f"--c2s_tls_port={tls_port}")
        direct = await self.raw(tls_port, direct_tls=True)
        features = await direct.secure(direct_tls=True)
        self.assertNotIn(b"starttls", features)
        self.assertEqual(re.findall(rb"<mechanism>([^<]+)</mechanism>", features),
                         [b"SCRAM-SHA-256", b"SCRAM-SHA-1", b"PLAIN"])
        self.assertTrue((await direct.authenticate("juliet", PASSWORD)).startswith(b"<success"))
        await direct.open_stream()
        await direct.bind("direct")
        self.assertEqual(direct.jid, f"juliet@{DOMAIN}/direct")

        # A real client over direct TLS, and a STARTTLS one, reach each other.
        romeo = await self.slix(tls_port, f"romeo@{DOMAIN}/garden", direct_tls=True)
        self.assertEqual(romeo.mechanism, "SCRAM-SHA-256")
        starttls = await self.raw(node.c2s_port, "juliet", resource="starttls")
        starttls.send_message(f"romeo@{DOMAIN}/garden", "d1", "over starttls")
        message = await romeo.next_message()
        self.assertEqual((message["from"].full, message["body"]),
                         (f"juliet@{DOMAIN}/starttls", "over starttls"))
        romeo.send_message(mto=f"juliet@{DOMAIN}/direct", mbody="over direct tls",
                           mtype="chat")
        stanza = await direct.expect(re.compile(rb"<message\b.*?</message>", re.DOTALL))
        self.assertIn(f"from='romeo@{DOMAIN}/garden'".encode(), start_tag(stanza.group(0)))
        self.assertIn(b"<body>over direct tls</body>", stanza.group(0))

    # --- 8: resources --------------------------------------------------------------

    @bounded(60)
    async def test_second_session_with_the_same_resource_replaces_the_first(self):
        node = self.start_node("--client_resources_max=2")
        first = await self.raw(node.c2s_port, "juliet", resource="balcony")
        other = await self.raw(node.c2s_port, "juliet", resource="garden")  # now at the cap
        second = await self.raw(node.c2s_port, "juliet", resource="balcony")
        self.assertEqual(second.jid, f"juliet@{DOMAIN}/balcony")
        await self.assertStreamError(first, "conflict")
        romeo = await self.raw(node.c2s_port, "romeo", resource="garden")
        romeo.send_message(f"juliet@{DOMAIN}/balcony", "after1", "to the new session")
        await self.assertMessageArrives(second, "after1", f"romeo@{DOMAIN}/garden",
                                        "to the new session")
        self.assertNotIn(b"after1", first.received)
        romeo.send_message(f"juliet@{DOMAIN}/garden", "after2", "the other one stays")
        await self.assertMessageArrives(other, "after2", f"romeo@{DOMAIN}/garden",
                                        "the other one stays")

    @bounded(60)
    async def test_resources_beyond_the_cap_are_refused_with_resource_constraint(self):
        node = self.start_node("--client_resources_max=2")
        first = await self.raw(node.c2s_port, "juliet", resource="r1")
        await self.raw(node.c2s_port, "juliet", resource="r2")
        third = await self.raw(node.c2s_port)
        await third.secure()
        self.assertTrue((await third.authenticate("juliet", PASSWORD)).startswith(b"<success"))
        await third.open_stream()
        answer = await third.bind("r3")
        self.assertIsNone(third.jid)
        # RFC 6120 §7.6.2.1: an IQ error of type wait.
        self.assertIn(b"type='error'", start_tag(answer))
        self.assertIn(f"<error type='wait'><resource-constraint xmlns='{STANZAS_ERROR_NS}'/>"
                      .encode(), answer)
        await self.log_line(node, re.escape(f"event=client_bind_refused client=juliet@{DOMAIN}"
                                            "/r3 peer=127.0.0.1 reason=too_many_resources"))
        # Another account is not limited by juliet's sessions.
        await self.raw(node.c2s_port, "romeo", resource="r1")
        # Once a session ends its resource is free again.
        first.send("</stream:stream>")
        self.assertTrue(await first.wait_closed())
        # (The unbind reaches the shard that counts juliet's resources a moment later.)
        for _ in range(50):
            fourth = await self.raw_or_none(node.c2s_port, "juliet", "r4")
            if fourth is not None:
                break
            await asyncio.sleep(0.1)
        self.assertIsNotNone(fourth, "the cap still counts a closed session")
        self.assertEqual(fourth.jid, f"juliet@{DOMAIN}/r4")

    async def raw_or_none(self, port, user, resource):
        """A bound RawClient, or None if the bind was refused (the cap still full)."""
        try:
            return await self.raw(port, user, resource=resource)
        except AssertionError as error:
            if "resource-constraint" not in str(error):
                raise
            return None

    # --- 9: load -----------------------------------------------------------------

    @bounded(110)
    async def test_thousand_tls_clients_each_send_one_message_around_a_ring(self):
        count, batch = 1000, 100
        # 100 logins at once from one address: more than --preauth_connections_per_ip_max.
        node = self.start_node("--connections_max=3000", "--preauth_connections_per_ip_max=0")
        credentials = scram_credentials(PASSWORD)
        for i in range(count):
            code, out = node.admin("user", "add", f"u{i}", credentials)
            self.assertEqual(code, 0, out)
        clients = []
        for start in range(0, count, batch):
            clients += await asyncio.gather(*(
                self.raw(node.c2s_port, f"u{i}", resource="ring")
                for i in range(start, min(start + batch, count))))
        self.assertEqual([c.jid for c in clients], [f"u{i}@{DOMAIN}/ring" for i in range(count)])

        for i, client in enumerate(clients):
            client.send_message(f"u{(i + 1) % count}@{DOMAIN}/ring", f"ring-{i}", f"from {i}")
        previous = [(i - 1) % count for i in range(count)]
        await asyncio.gather(*(
            self.assertMessageArrives(client, f"ring-{previous[i]}",
                                      f"u{previous[i]}@{DOMAIN}/ring", f"from {previous[i]}")
            for i, client in enumerate(clients)))
        # Nothing more comes: each message arrived exactly once, and only where sent.
        await asyncio.gather(*(client.read_for(0.5) for client in clients))
        for i, client in enumerate(clients):
            self.assertEqual(re.findall(rb"id='ring-(\d+)'", client.received),
                             [str(previous[i]).encode()], f"client u{i}")
            self.assertFalse(client.closed, f"client u{i} was disconnected")

    # --- 10: account blocking ----------------------------------------------------

    # With --threads=2, SO_REUSEPORT spreads the connections over both shards: every
    # shard counts every failure, so the account is blocked whichever one a login lands on.
    @bounded(60)
    async def test_account_is_blocked_after_repeated_failures(self):
        node = self.start_node("--account_failures_max=3", "--auth_failures_max=1000")
        for _ in range(3):
            client = await self.raw(node.c2s_port)
            await client.secure()
            self.assertEqual(await client.authenticate("juliet", "wrong password"),
                             SASL_NOT_AUTHORIZED.encode())
            client.close()
        # Blocked on every new connection (whichever shard takes it), and the answer does
        # not tell an attacker that this password was the right one.
        for _ in range(12):
            client = await self.raw(node.c2s_port)
            await client.secure()
            self.assertEqual(await client.authenticate("juliet", PASSWORD),
                             SASL_NOT_AUTHORIZED.encode())
            client.close()
        await self.log_line(node, r"event=account_blocked user=juliet "
                                  r"reason=too_many_failed_logins failures=3")
        await self.log_line(node, r'event=client_auth_failed user="juliet" .*'
                                  r'note=account_blocked')
        # Only that account: romeo, from the same address, still logs in.
        await self.raw(node.c2s_port, "romeo", resource="garden")


if __name__ == "__main__":
    unittest.main()
