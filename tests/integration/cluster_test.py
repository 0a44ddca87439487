"""Integration tests of a stanzad cluster: three real processes on 127.0.0.1,
127.0.0.2 and 127.0.0.3, formed and driven with stanzactl as the seed's operator
does (cluster enable, initialize, join, status, remove), killed with SIGKILL.

Run: STANZAD_BIN_DIR=build/cmd /usr/bin/python3 tests/integration/cluster_test.py -v
"""
import base64
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import sys
import time
import unittest
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(__file__))
from stanzad_harness import (DOMAIN, STANZACTL, RawComponent, StanzadProcess, TlsClient,  # noqa: E402
                             wait_until)


def ok(node, *args, stdin=None):
    code, out, err = node.stanzactl(*args, stdin=stdin)
    assert code == 0, f"stanzactl {' '.join(args)} on {node.ip}: exit {code}: {out}{err}"
    return out


def metric(node, name, **labels):
    """The sum of the samples of `name` with these labels in node's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port}/metrics",
                                timeout=10) as response:
        body = response.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def fresh_metrics(node):
    """Returns once `node` has published a metrics snapshot built after this call.

    The control thread publishes one every 100 ms, so a value read right after
    something happened may predate it. The uptime moving twice proves that the
    second new snapshot was built after the call began."""
    for _ in range(2):
        before = metric(node, "stanzad_uptime_seconds")
        wait_until(lambda: metric(node, "stanzad_uptime_seconds") > before,
                   what=f"a fresh snapshot of {node.ip}'s metrics")


def settled(test, node):
    """Waits until `node` holds no stanza for another node (each acknowledged,
    or expired, or refused), on a fresh snapshot; asserts none was refused."""
    fresh_metrics(node)
    wait_until(lambda: metric(node, "stanzad_cluster_forward_waiting", unit="stanzas") == 0,
               timeout=20, what=f"{node.ip} holding nothing for other nodes")
    test.assertEqual(metric(node, "stanzad_cluster_relayed_total", direction="failed"), 0)


def marker(sender, receiver, timeout=10.0):
    """Sends a message sender -> receiver and reads until it arrives: whatever the
    nodes had already passed on along the same path arrived before it."""
    name = f"marker{time.monotonic_ns()}"
    sender.send(f"<message from='{sender.address}' to='{receiver.address}' id='{name}'/>")
    receiver.read_until(f"id='{name}'", timeout=timeout)
    return name


def status(node):
    code, out, err = node.stanzactl("cluster", "status", json=True)
    assert code == 0, out + err
    return json.loads(out)


class ClusterTest(unittest.TestCase):
    def setUp(self):
        self.nodes = []

    def tearDown(self):
        for node in self.nodes:
            node.cleanup()

    def start(self, ip, **kwargs):
        node = StanzadProcess(ip=ip, threads=1, **kwargs)
        self.nodes.append(node)  # cleaned up even if it does not come up
        node.start()
        node.wait_serving()
        return node

    def address(self, node):
        return f"{node.ip}:{node.cluster_port}"

    def form(self, count=3, extra_flags=()):
        nodes = [self.start(f"127.0.0.{i + 1}", extra_flags=list(extra_flags))
                 for i in range(count)]
        for node in nodes:
            self.assertIn("Cluster enabled", ok(node, "cluster", "enable"))
        out = ok(nodes[0], "cluster", "initialize")
        self.assertIn("only member and leader", out)
        self.assertRegex(out, r"stanzactl cluster join \S+ --token=\S+")
        for node in nodes[1:]:
            self.assertIn("Joined the cluster",
                          ok(node, "cluster", "join", self.address(nodes[0]),
                             f"--token={nodes[0].join_token()}"))
        return nodes

    def leader_of(self, node):
        return status(node)["leader"]

    def test_imports_go_through_the_cluster_in_chunks_and_stop_at_the_bad_line(self):
        a, b, c = self.form()
        ok(a, "callbridge", "add-secret", "cb2500", stdin="the-old-secret\n")
        work = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, work, True)
        bridges = os.path.join(work, "bridges.txt")
        with open(bridges, "w") as f:
            f.write("# name secret\n")
            for i in range(40_000):
                f.write(f"cb{i} secret-{i:08d}\n")
        # From a follower: cb2500 has another secret, so the import stops at its line
        # (2,502: the comment is line 1) with every line before it imported.
        follower = b if self.leader_of(b) != self.address(b) else c
        code, out, err = follower.stanzactl("callbridge", "import", bridges)
        self.assertEqual(code, 1, out + err)
        # (Refused by the follower's own copy, or by the cluster if that was behind.)
        self.assertRegex(err, r"bridges.txt:2502: call ?bridge cb2500 already has a different secret")
        self.assertIn("Stopped after importing 2500 call bridges", out)
        for node in (a, b, c):
            wait_until(lambda: len(node.secrets()) == 2501, what=f"{node.ip} has 2,501 bridges")
        # With --force the rest is imported in chunks, each one Raft entry.
        out = ok(follower, "callbridge", "import", bridges, "--force")
        self.assertIn("Imported 40000 call bridges", out)
        self.assertIn("37499 added, 1 replaced, 2500 unchanged", out)
        exports = []
        for node in (a, b, c):
            wait_until(lambda: len(node.secrets()) == 40_000, what=f"{node.ip} has 40,000 bridges")
            exports.append(ok(node, "callbridge", "export"))
        self.assertEqual(exports[0], exports[1])
        self.assertEqual(exports[0], exports[2])
        self.assertEqual(len(exports[0].splitlines()), 40_000)
        self.assertIn("cb2500 secret-00002500\n", exports[0])
        # Users: lines of passwords hashed by stanzactl, replicated to every node.
        users = os.path.join(work, "users.txt")
        with open(users, "w") as f:
            f.write("".join(f"user{i} password number {i}\n" for i in range(50)))
        self.assertIn("50 added", ok(c, "user", "import", users))
        for node in (a, b):
            wait_until(lambda: json.loads(ok(node, "--json", "user", "list"))["total"] == 50,
                       what=f"{node.ip} has the users")

    def test_initialize_carries_a_large_configuration_in_batches(self):
        """A node with many bridges and users becomes a cluster's first member: its
        configuration goes in as batches, one after another (Raft refuses more than 16 MiB
        uncommitted at once), and a node that joins gets all of it."""
        a = self.start("127.0.0.1")
        work = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, work, True)
        bridges = os.path.join(work, "bridges.txt")
        with open(bridges, "w") as f:
            f.write("".join(f"cb{i} secret-{i:08d}\n" for i in range(12_000)))
        ok(a, "callbridge", "import", bridges)
        users = os.path.join(work, "users.xml")

        def b64(n):
            return base64.b64encode(os.urandom(n)).decode()
        with open(users, "w") as f:
            f.write(f"<server-data xmlns='urn:xmpp:pie:0'><host jid='{DOMAIN}'>")
            for i in range(3_000):
                f.write(f"<user name='user{i}'><scram-credentials xmlns='urn:xmpp:pie:0#scram' "
                        f"mechanism='SCRAM-SHA-256'><iter-count>4096</iter-count>"
                        f"<salt>{b64(16)}</salt><server-key>{b64(32)}</server-key>"
                        f"<stored-key>{b64(32)}</stored-key></scram-credentials></user>")
            f.write("</host></server-data>")
        ok(a, "user", "import", users)
        ok(a, "cluster", "enable")
        self.assertIn("12000 call bridges are now the cluster's", ok(a, "cluster", "initialize"))
        b = self.start("127.0.0.2")
        ok(b, "cluster", "enable")
        self.assertIn("Joined the cluster",
                      ok(b, "cluster", "join", self.address(a), f"--token={a.join_token()}"))
        wait_until(lambda: len(b.secrets()) == 12_000, timeout=30, what="b has every bridge")
        self.assertEqual(b.secrets(), a.secrets())
        wait_until(lambda: json.loads(ok(b, "--json", "user", "list"))["total"] == 3_000,
                   timeout=30, what="b has every user")

    def test_initialize_refuses_a_configuration_the_cluster_would_refuse_and_keeps_it(self):
        """A config the node took (written before today's checks, or by hand) that the
        cluster's rules refuse: initialize says which bridge and why, and the node keeps
        every bridge and user it had."""
        node = StanzadProcess(ip="127.0.0.1", threads=1)
        self.nodes.append(node)
        domain = ("d" * 60 + ".") * 3 + "example.com"  # 194 bytes
        with open(os.path.join(node.state_dir, "config"), "w") as f:
            f.write(f"stanzad-config 1\ndomain {domain}\nlisten 127.0.0.1\nenabled 1\n"
                    f"callbridge ok1 secret-number-1\n"
                    f"callbridge {'b' * 63} secret-number-2\n")
        os.chmod(os.path.join(node.state_dir, "config"), 0o600)
        node.start(seed=False)
        node.wait_serving()
        ok(node, "cluster", "enable")
        code, out, err = node.stanzactl("cluster", "initialize")
        self.assertEqual(code, 1, out + err)
        self.assertIn("this node's configuration cannot become the cluster's", err)
        self.assertIn("longer than 253 bytes", err)
        self.assertEqual(set(node.secrets()), {"ok1", "b" * 63})

    def test_three_nodes_share_one_configuration(self):
        a, b, c = self.form()
        ok(c, "callbridge", "add", "cb1")
        ok(b, "xmpp", "callbridge", "add-secret", "cb2", stdin="kvgP1SRzWVabhiPVAb1\n")
        lists = [ok(node, "callbridge", "list") for node in (a, b, c)]
        self.assertEqual(lists[0], lists[1])
        self.assertEqual(lists[0], lists[2])
        self.assertIn("Callbridge : cb2\nDomain     : example.com\nSecret     : kvgP1SRzWVabhiPVAb1",
                      lists[0])
        # The seed's layout, the same leader everywhere, every link up.
        text = ok(a, "cluster", "status")
        self.assertRegex(text, r"^State: (LEADER|FOLLOWER)\nList of peers\n")
        self.assertEqual(text.count("(Leader)"), 1)
        for label in ("Last state change:", "Key file           :", "Certificate file   :",
                      "Trust bundle       :"):
            self.assertIn(label, text)
        leaders = {self.leader_of(node) for node in (a, b, c)}
        self.assertEqual(leaders, {self.address(a)})
        wait_until(lambda: all(m["connected"] for m in status(b)["members"]),
                   what="every link up")
        # The last contact with each peer: the leader's heartbeats keep it fresh.
        from_b = {m["address"]: m for m in status(b)["members"]}
        self.assertIsNone(from_b[self.address(b)]["last_contact_ms_ago"])
        self.assertLess(from_b[self.address(a)]["last_contact_ms_ago"], 2000)
        self.assertRegex(ok(b, "cluster", "status"),
                         re.escape(self.address(a)) + r"  id=\d+  connected  leader  "
                         r"last contact \d+ ms ago  data links [01]/1\n")
        # Same secret again: a no-op. Another secret: refused, unless --force.
        ok(c, "callbridge", "add-secret", "cb2", stdin="kvgP1SRzWVabhiPVAb1\n")
        code, out, err = c.stanzactl("callbridge", "add-secret", "cb2", stdin="different-secret\n")
        out += err
        self.assertEqual(code, 1)
        self.assertIn("--force", out)
        ok(c, "callbridge", "add-secret", "cb2", "--force", stdin="different-secret\n")
        wait_until(lambda: "different-secret" in ok(a, "callbridge", "list"),
                   what="the forced secret on the leader")
        # A bridge authenticates on any node with the cluster's secret.
        secret = re.search(r"Callbridge : cb1\nDomain     : \S+\nSecret     : (\S+)",
                           ok(a, "callbridge", "list")).group(1)
        for node in (a, b, c):
            bridge = RawComponent(node.port, "cb1", secret, ip=node.ip)
            bridge.open_stream().handshake()
            bridge.close()
        self.assertIn("3 members", ok(b, "status"))

    def test_every_thread_links_to_every_member_on_the_data_port(self):
        """Each shard keeps an authenticated link to every other member's data port
        (cluster/data/data_links.h): 'cluster status' counts them, a node that dies is
        counted down, and back up once it returns."""
        a, b, c = self.form(extra_flags=("--threads=2",))

        def data_links(node):
            return {m["address"]: (m["data_links_up"], m["data_links_total"])
                    for m in status(node)["members"] if not m["self"]}

        for node in (a, b, c):
            wait_until(lambda node=node: set(data_links(node).values()) == {(2, 2)},
                       what=f"{node.ip}'s data links up")
        self.assertRegex(ok(a, "cluster", "status"),
                         re.escape(self.address(b)) + r"  id=\d+  connected .*data links 2/2\n")
        self.assertNotIn("data_link_refused", a.read_log())
        # The partition drill cuts them both ways, by the member's address (on loopback
        # every link comes from 127.0.0.1, whatever node dialled it).
        ok(a, "cluster", "isolate", b.ip)
        wait_until(lambda: data_links(a)[self.address(b)] == (0, 2) and
                   data_links(b)[self.address(a)] == (0, 2), timeout=15,
                   what="a and b's data links cut by the drill")
        self.assertEqual(data_links(a)[self.address(c)], (2, 2))
        ok(a, "cluster", "isolate", "off")
        wait_until(lambda: data_links(a)[self.address(b)] == (2, 2) and
                   data_links(b)[self.address(a)] == (2, 2), timeout=15,
                   what="a and b's data links back after the drill")
        c.stop()
        wait_until(lambda: data_links(a)[self.address(c)] == (0, 2), timeout=15,
                   what="a's links to the stopped node counted down")
        self.assertEqual(data_links(a)[self.address(b)], (2, 2))
        c.start(seed=False)
        c.wait_serving()
        for node in (a, b, c):
            wait_until(lambda node=node: set(data_links(node).values()) == {(2, 2)},
                       timeout=15, what=f"{node.ip}'s data links up again")

    def test_leader_killed_a_new_one_takes_over(self):
        # What must happen, not how fast: the time is bench/cluster_failover.py's
        # (docs/benchmarks.md, "Cluster failover").
        a, b, c = self.form()
        ok(a, "callbridge", "add", "before")  # committed (on a majority) when this returns
        a.stop(signal.SIGKILL)
        wait_until(lambda: self.leader_of(b) not in ("", self.address(a))
                   and self.leader_of(b) == self.leader_of(c), timeout=10,
                   what="both survivors naming one new leader")
        # Nothing committed is lost: the new leader has it and both survivors apply it.
        for node in (b, c):
            wait_until(lambda node=node: "Callbridge : before" in ok(node, "callbridge", "list"),
                       what=f"the change committed before the kill on {node.ip}")
        # The failover shows in /metrics as a histogram (time without a known leader).
        wait_until(lambda: metric(b, "stanzad_cluster_failover_seconds_count") >= 1,
                   what="the failover in the histogram")
        self.assertGreater(metric(b, "stanzad_cluster_failover_seconds_sum"), 0)
        self.assertEqual(metric(b, "stanzad_cluster_failover_seconds_bucket", le="+Inf"),
                         metric(b, "stanzad_cluster_failover_seconds_count"))
        ok(c, "callbridge", "add", "after")
        # The old leader comes back as a follower and catches up.
        a.start(seed=False)
        a.wait_serving()
        wait_until(lambda: "Callbridge : after" in ok(a, "callbridge", "list"),
                   what="the restarted node catching up")
        self.assertIn(status(a)["state"], ("FOLLOWER",))
        log = b.read_log() + c.read_log()
        self.assertIn("event=cluster_state_change", log)
        self.assertIn("to=LEADER", log)

    def test_a_restarted_node_logs_only_real_membership_changes(self):
        # Issue 16: the old leader, restarted, logged cluster_member_added for each of
        # the three members it already had (its log replayed).
        a, b, c = self.form()
        ok(a, "callbridge", "add", "before")
        members = {m["id"]: m["address"] for m in status(a)["members"]}
        self.assertEqual(len(members), 3)
        self.assertEqual(a.read_log().count("event=cluster_member_added"), 3)  # as they joined
        a.stop()
        logged_before_restart = len(a.read_log())
        a.start(seed=False)
        a.wait_serving()
        ok(b, "callbridge", "add", "after")  # committed after the restart: a applies it,
        wait_until(lambda: "Callbridge : after" in ok(a, "callbridge", "list"),  # and all before
                   what="the restarted node applying what came after its restart")
        since_restart = a.read_log()[logged_before_restart:]
        self.assertIn("event=cluster_state_loaded", since_restart)
        self.assertIn("members=3", since_restart)
        self.assertNotIn("event=cluster_member_added", since_restart)
        self.assertNotIn("event=cluster_member_removed", since_restart)
        # A real join after the restart is still announced, on the restarted node too.
        d = self.start("127.0.0.4")
        ok(d, "cluster", "enable")
        ok(d, "cluster", "join", self.address(b), f"--token={b.join_token()}")
        wait_until(lambda: f"event=cluster_member_added id="
                   in a.read_log()[logged_before_restart:], what="the join in a's log")
        added = re.findall(r"event=cluster_member_added id=(\d+) address=(\S+)",
                           a.read_log()[logged_before_restart:])
        self.assertEqual([address for _, address in added], [self.address(d)])
        self.assertNotIn(int(added[0][0]), members)

    def test_a_disabled_node_is_unreachable_until_enabled_and_then_catches_up(self):
        a, b, c = self.form()
        wait_until(lambda: all(m["connected"] for n in (a, b) for m in status(n)["members"]),
                   what="every link up")
        out = ok(c, "cluster", "disable")
        self.assertIn("Cluster disabled", out)
        self.assertIn("still a member", out)
        # Its cluster port is closed...
        self.assertFalse(status(c)["listening"])
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection((c.ip, c.cluster_port), timeout=5).close()
        # ...and the others see it unreachable, in the status an operator reads.
        for node in (a, b):
            wait_until(lambda node=node: re.search(
                re.escape(self.address(c)) + r"  id=\d+  unreachable", ok(node, "cluster", "status")),
                what=f"{node.ip} seeing node 3 unreachable")
        # The other two still commit changes; node 3 has missed one.
        ok(a, "callbridge", "add", "while-disabled")
        wait_until(lambda: "Callbridge : while-disabled" in ok(b, "callbridge", "list"),
                   what="the change on node 2")
        # Enabled again: the port opens, the others see it, and it catches up.
        self.assertIn("Cluster enabled", ok(c, "cluster", "enable"))
        self.assertTrue(status(c)["listening"])
        socket.create_connection((c.ip, c.cluster_port), timeout=5).close()
        for node in (a, b):
            wait_until(lambda node=node: next(m for m in status(node)["members"]
                                             if m["address"] == self.address(c))["connected"],
                       what=f"{node.ip} seeing node 3 again")
        wait_until(lambda: "Callbridge : while-disabled" in ok(c, "callbridge", "list"),
                   what="node 3 catching up")
        self.assertEqual(ok(c, "callbridge", "list"), ok(a, "callbridge", "list"))

    def test_reset_node_rejoins_without_a_duplicate_entry(self):
        a, b, c = self.form()
        # The seed's scenario 3: reset a node that is still a member.
        code, out, err = c.stanzactl("reset")
        out += err
        self.assertEqual(code, 1)
        self.assertIn("remove it first", out)
        ok(c, "reset", "--force")
        ok(c, "domain", DOMAIN)
        ok(c, "listen", c.ip)
        ok(c, "enable")
        ok(c, "cluster", "enable")
        ok(c, "cluster", "join", self.address(b), f"--token={b.join_token()}")
        for node in (a, b, c):
            wait_until(lambda: len(status(node)["members"]) == 3, what="three members")
            addresses = [m["address"] for m in status(node)["members"]]
            self.assertEqual(len(addresses), len(set(addresses)), addresses)
        text = ok(a, "cluster", "status")
        self.assertEqual(text.count(self.address(c)), 2)  # in the list and in Peers:
        # The seed's scenario 3 is named in the leader's log when it happens.
        logs = a.read_log() + b.read_log()
        self.assertIn(f"event=cluster_member_replaced", logs)
        self.assertIn(f"address={self.address(c)}", logs)

    def test_remove_and_two_node_warning(self):
        a, b, c = self.form()
        ok(a, "cluster", "remove", self.address(c))
        wait_until(lambda: len(status(a)["members"]) == 2, what="two members")
        self.assertIn("tolerates no failure", ok(b, "cluster", "status"))
        code, out, err = a.stanzactl("cluster", "remove", "127.0.0.9:1")
        out += err
        self.assertEqual(code, 1)
        self.assertIn("no member", out)

    def secrets(self, node):
        return dict(re.findall(r"Callbridge : (\S+)\nDomain     : \S+\nSecret     : (\S+)",
                               ok(node, "callbridge", "list")))

    def bridge(self, node, name, secret):
        component = RawComponent(node.port, name, secret, ip=node.ip)
        component.open_stream().handshake()
        return component

    def form_with_bridges(self, sender, receiver, extra_flags=()):
        """A cluster and two bridges, each given as (node index, name), connected
        once the sender's stanzas reach the receiver. Returns the nodes and them."""
        nodes = self.form(extra_flags=extra_flags)
        for _, name in (sender, receiver):
            ok(nodes[0], "callbridge", "add", name)
        secrets = self.secrets(nodes[0])
        bridges = [self.bridge(nodes[i], name, secrets[name]) for i, name in (sender, receiver)]
        wait_until(lambda: self._reaches(*bridges), what=f"{sender[1]} reaching {receiver[1]}")
        # Probes sent before the route had spread came back as errors: read and
        # forget them, so that a test sees only what follows.
        for bridge in bridges:
            bridge.read_for(0.3)
            bridge.received = b""
        return nodes, bridges

    def test_stanzas_cross_nodes_and_follow_a_bridge_that_moves(self):
        a, b, c = self.form()
        for name in ("cb1", "cb2", "cb3"):
            ok(a, "callbridge", "add", name)
        secrets = self.secrets(a)
        cb1 = self.bridge(a, "cb1", secrets["cb1"])
        cb2 = self.bridge(b, "cb2", secrets["cb2"])
        cb3 = self.bridge(c, "cb3", secrets["cb3"])
        body = "Grüße — 会议已开始 😀 &amp; &lt;ok&gt;"

        def deliver(sender, receiver, i):
            sender.send(f"<message from='{sender.address}' to='{receiver.address}' id='m{i}'>"
                        f"<body>{body}</body></message>")
            receiver.read_until(f"id='m{i}'><body>{body}</body></message>")

        # Routes reach every node shortly after the handshakes: each sender's node must
        # know the receiver's route before the first stanza (one sent earlier is answered
        # with an error by the sender's node, as it should be).
        for sender, receiver in ((cb1, cb2), (cb2, cb3), (cb3, cb1), (cb1, cb3)):
            wait_until(lambda: self._reaches(sender, receiver),
                       what=f"{sender.address} reaching {receiver.address} on another node")
        deliver(cb2, cb3, 1)
        deliver(cb3, cb1, 2)
        cb1.send(f"<iq type='get' from='cb1.{DOMAIN}' to='cb3.{DOMAIN}' id='q1'>"
                 "<query xmlns='jabber:iq:version'/></iq>")
        cb3.read_until("id='q1'")
        cb3.send(f"<iq type='result' from='cb3.{DOMAIN}' to='cb1.{DOMAIN}' id='q1'/>")
        cb1.read_until("<iq type='result' from='cb3.{}' to='cb1.{}' id='q1'/>".format(DOMAIN, DOMAIN))
        # 500 in a burst across nodes: none lost, in order.
        for i in range(500):
            cb1.send(f"<message from='cb1.{DOMAIN}' to='cb2.{DOMAIN}' id='burst{i}'/>")
        cb2.read_until("id='burst499'/>", timeout=20)
        ids = re.findall(rb"id='burst(\d+)'", cb2.received)
        self.assertEqual([int(i) for i in ids], list(range(500)))
        # The metrics say so: one leader, the relay's counters, every member linked.
        self.assertEqual(sum(metric(n, "stanzad_cluster_leader") for n in (a, b, c)), 1)
        # (the control thread's counters are published every 100 ms)
        wait_until(lambda: metric(a, "stanzad_cluster_relayed_total", direction="out") >= 500,
                   what="relayed counter")
        self.assertGreaterEqual(metric(b, "stanzad_stanzas_from_peers_total"), 500)
        self.assertEqual(metric(b, "stanzad_cluster_members", state="connected"), 3)
        self.assertGreater(metric(b, "stanzad_raft_term"), 0)
        # The leader by id and address, as labels (a 64-bit id as a value would be rounded).
        leader = next(m for m in status(b)["members"] if m["leader"])
        self.assertEqual(metric(b, "stanzad_cluster_leader_node", id=leader["id"],
                                address=leader["address"]), 1)
        # An unknown bridge: the error comes back across nodes too.
        cb2.send(f"<message from='cb2.{DOMAIN}' to='nobody.{DOMAIN}' id='lost'/>")
        cb2.read_until("service-unavailable")
        # Node 3 dies; its bridge reconnects to node 1 and is reachable again.
        c.stop(signal.SIGKILL)
        cb3.close()
        cb3 = self.bridge(a, "cb3", secrets["cb3"])
        wait_until(lambda: self._reaches(cb2, cb3), timeout=10,
                   what="cb3 reachable through its new node")
        for component in (cb1, cb2, cb3):
            component.close()

    def test_a_stanza_for_a_dead_node_waits_for_its_bridge_to_come_back(self):
        (a, b, c), (cb1, cb3) = self.form_with_bridges((0, "cb1"), (2, "cb3"))
        secrets = self.secrets(a)
        c.stop(signal.SIGKILL)
        cb3.close()
        settled(self, a)
        # Once node 1 has seen its link to node 3 close. (A stanza written to the link in
        # the moment between the death and that is one node 3 may have delivered: node 1
        # would wait for an answer that never comes and bounce it after the hold and the
        # abort wait — the documented window of a dying node, docs/cluster.md.)
        wait_until(lambda: not any(m["connected"] for m in status(a)["members"]
                                   if m["address"] == self.address(c)),
                   what="node 1 seeing its link to the dead node 3 close")
        # Node 1 still routes cb3 to the dead node 3: the stanza is kept, not lost...
        cb1.send(f"<message from='cb1.{DOMAIN}' to='cb3.{DOMAIN}' id='kept'>"
                 "<body>while you were away</body></message>")
        wait_until(lambda: metric(a, "stanzad_cluster_forward_waiting", unit="stanzas") >= 1,
                   what="node 1 keeping the stanza for the dead node")
        # ...and delivered once cb3 is back, on node 2.
        cb3 = self.bridge(b, "cb3", secrets["cb3"])
        cb3.read_until("id='kept'><body>while you were away</body>", timeout=10)
        wait_until(lambda: metric(a, "stanzad_cluster_relayed_total", direction="resent") >= 1,
                   what="the resend counted")
        # Acknowledged, and no error for it: one sent before the acknowledgement would
        # have reached cb1 before a marker sent after it.
        settled(self, a)
        self.assertEqual(metric(a, "stanzad_cluster_relayed_total", direction="expired"), 0)
        marker(cb3, cb1)
        self.assertNotIn(b"type='error'", cb1.received)
        for component in (cb1, cb3):
            component.close()

    def send_100_from_node2_to_node3(self, extra_flags=()):
        """A cluster, cb2 on node 2 and cb3 on node 3, 100 messages cb2 -> cb3.
        Returns the nodes and the ids cb3 got, in order, once node 2 holds none of
        them (each acknowledged)."""
        nodes, (cb2, cb3) = self.form_with_bridges((1, "cb2"), (2, "cb3"), extra_flags)
        for i in range(100):
            cb2.send(f"<message from='cb2.{DOMAIN}' to='cb3.{DOMAIN}' id='r{i}'/>")
        cb3.read_until("id='r99'/>")
        settled(self, nodes[1])
        ids = [int(i) for i in re.findall(rb"id='r(\d+)'", cb3.received)]
        for component in (cb2, cb3):
            component.close()
        return nodes, ids

    def test_direct_routing_skips_the_leader(self):
        (leader, origin, _), ids = self.send_100_from_node2_to_node3(["--routing=direct"])
        self.assertEqual(ids, list(range(100)))
        self.assertGreaterEqual(
            metric(origin, "stanzad_cluster_relayed_total", direction="out"), 100)
        # Straight from node 2 to node 3: the leader (node 1) relayed nothing, in a
        # snapshot taken after node 2 had every acknowledgement.
        fresh_metrics(leader)
        self.assertEqual(metric(leader, "stanzad_cluster_relayed_total", direction="in"), 0)

    def test_leader_routing_goes_through_the_leader(self):
        # --routing=leader is the default
        (leader, _, _), ids = self.send_100_from_node2_to_node3()
        self.assertEqual(ids, list(range(100)))
        wait_until(
            lambda: metric(leader, "stanzad_cluster_relayed_total", direction="in") >= 100,
            what="the leader relaying them")

    def test_leader_killed_during_a_stream_nothing_lost_nothing_twice(self):
        # Leader routing: every stanza from node 2 to node 3 goes through the leader
        # (node 1). SIGKILL it mid-stream: node 2 keeps each stanza until node 3 has
        # delivered it and sends what the dead leader never passed on to the new
        # one; node 3 drops what it already had. Every stanza accepted by a
        # surviving node arrives exactly once.
        (a, b, c), (cb2, cb3) = self.form_with_bridges((1, "cb2"), (2, "cb3"))
        self.assertEqual(self.leader_of(b), self.address(a))
        count = 1500
        for i in range(count):
            cb2.send(f"<message from='cb2.{DOMAIN}' to='cb3.{DOMAIN}' id='s{i}'/>")
            if i == 500:
                a.stop(signal.SIGKILL)
            time.sleep(0.001)
        cb3.read_until(f"id='s{count - 1}'/>", timeout=20)
        # Drained: node 2 holds nothing more (so sends nothing again), and a marker
        # sent after that arrives after anything sent twice would have.
        settled(self, b)
        marker(cb2, cb3)
        ids = [int(i) for i in re.findall(rb"id='s(\d+)'", cb3.received)]
        self.assertEqual(sorted(ids), list(range(count)))  # none lost, none twice
        self.assertEqual(metric(b, "stanzad_cluster_relayed_total", direction="expired"), 0)
        marker(cb3, cb2)  # after any error reply for one of them
        self.assertNotIn(b"type='error'", cb2.received)
        self.assertNotIn(self.leader_of(b), ("", self.address(a)))
        for component in (cb2, cb3):
            component.close()

    def test_minority_side_of_a_partition_refuses_changes_and_bounces_stanzas(self):
        (a, b, c), (cb3, cb1) = self.form_with_bridges(
            (2, "cb3"), (0, "cb1"), ["--no_leader_hold_ms=1000", "--forward_hold_ms=2000"])
        # Node 3 is cut off from the other two (a drill on its cluster links).
        out = ok(c, "cluster", "isolate", a.ip, b.ip)
        self.assertIn("cut", out)
        self.assertIn("cut by a drill", ok(c, "cluster", "status"))
        wait_until(lambda: self.leader_of(c) == "", timeout=10, what="node 3 without a leader")
        # The minority refuses configuration changes, saying why...
        code, out, err = c.stanzactl("callbridge", "add", "minority")
        self.assertNotEqual(code, 0)
        self.assertRegex(out + err, r"(?i)leader|quorum")
        # ...while the majority keeps a leader and commits them.
        ok(a, "callbridge", "add", "majority")
        self.assertIn(self.leader_of(b), (self.address(a), self.address(b)))
        # A stanza from the minority side waits for a leader, then comes back as an
        # error: not lost. One towards the minority comes back after the hold too.
        cb3.send(f"<message from='cb3.{DOMAIN}' to='cb1.{DOMAIN}' id='cut1'/>")
        cb3.read_until("id='cut1'", timeout=10)
        self.assertRegex(cb3.received.decode(), r"type='error'[^>]*id='cut1'|id='cut1'[^>]*type='error'")
        self.assertIn(b"service-unavailable", cb3.received)
        cb1.send(f"<message from='cb1.{DOMAIN}' to='cb3.{DOMAIN}' id='cut2'/>")
        cb1.read_until("id='cut2'", timeout=10)
        self.assertIn(b"service-unavailable", cb1.received)
        self.assertNotIn(b"cut2", cb3.received)
        # The partition heals: node 3 follows again, has the majority's change, and
        # the bridges reach each other.
        self.assertIn("restored", ok(c, "cluster", "isolate", "off"))
        wait_until(lambda: "Callbridge : majority" in ok(c, "callbridge", "list"), timeout=15,
                   what="node 3 catching up")
        self.assertNotIn("Callbridge : minority", ok(a, "callbridge", "list"))
        wait_until(lambda: self._reaches(cb3, cb1), timeout=10, what="cb3 reaching cb1 again")
        wait_until(lambda: self._reaches(cb1, cb3), timeout=10, what="cb1 reaching cb3 again")
        code, out, err = c.stanzactl("cluster", "isolate", "not-an-ip")
        self.assertEqual(code, 2)
        self.assertIn("not an IP address", out + err)
        for component in (cb1, cb3):
            component.close()

    def test_a_cut_link_between_followers_delays_nothing_and_errs_nothing(self):
        # Nodes 2 and 3 lose their link to each other, both still reach the leader:
        # stanzas go through the leader as always, and node 3's acknowledgements
        # to node 2 go back through it too — none lost, none twice, no false error.
        (a, b, c), (cb2, cb3) = self.form_with_bridges(
            (1, "cb2"), (2, "cb3"), ["--forward_hold_ms=2000"])
        ok(b, "cluster", "isolate", c.ip)
        wait_until(lambda: not next(m for m in status(b)["members"]
                                    if m["address"] == self.address(c))["connected"],
                   what="node 2's link to node 3 cut")
        for i in range(50):
            cb2.send(f"<message from='cb2.{DOMAIN}' to='cb3.{DOMAIN}' id='c{i}'/>")
        cb3.read_until("id='c49'/>")
        # Node 3's acknowledgements reach node 2 through the leader: node 2 holds
        # none of them any more, and none waited out --forward_hold_ms (which would
        # have answered cb2 with an error).
        settled(self, b)
        self.assertEqual(metric(b, "stanzad_cluster_relayed_total", direction="expired"), 0)
        marker(cb3, cb2)  # after any error reply sent before the acknowledgements
        ids = [int(i) for i in re.findall(rb"id='c(\d+)'", cb3.received)]
        self.assertEqual(sorted(ids), list(range(50)))
        self.assertNotIn(b"type='error'", cb2.received)
        for component in (cb2, cb3):
            component.close()

    def _bare_only(self, sender, receiver, other):
        """A message to receiver's bare JID reaches receiver and not `other` (a
        resource of the same account, connected): a message to other's full JID,
        sent after it along the same path, arrives before the check."""
        name = f"only{time.monotonic_ns()}"
        sender.send(f"<message from='{sender.address}' to='{receiver.address.split('/')[0]}' "
                    f"id='{name}'/>")
        try:
            receiver.read_until(name, timeout=0.5)
        except TimeoutError:
            return False
        marker(sender, other)
        return name.encode() not in other.received

    def _reaches(self, sender, receiver):
        marker = f"probe{time.monotonic_ns()}"
        sender.send(f"<message from='{sender.address}' to='{receiver.address}' id='{marker}'/>")
        try:
            receiver.read_until(marker, timeout=0.5)
            return True
        except TimeoutError:
            return False

    def test_clients_reach_bridges_and_clients_on_other_nodes(self):
        a, b, c = self.form()
        ok(a, "callbridge", "add", "cb1")
        ok(a, "user", "add", "juliet", stdin="pencil\n")
        ok(a, "user", "add", "romeo", stdin="pencil\n")
        work = tempfile.mkdtemp(prefix="stanzad-certs-")
        try:
            subprocess.run([os.path.abspath(STANZACTL), "pki", "selfsigned", "lab", "CN:example.com",
                            "subjectAltName:example.com"], cwd=work, check=True,
                           capture_output=True, timeout=60)
            for node in (a, b, c):  # each node has its own certificate files
                ok(node, "certs", os.path.join(work, "lab.key"), os.path.join(work, "lab.crt"))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        for node in (b, c):  # the users are the cluster's
            wait_until(lambda node=node: "romeo@example.com" in ok(node, "user", "list"),
                       what=f"users replicated to {node.ip}")
        cb1 = self.bridge(a, "cb1", self.secrets(a)["cb1"])
        juliet = TlsClient(b.c2s_port, "juliet", "pencil", "balcony", ip=b.ip)
        romeo = TlsClient(c.c2s_port, "romeo", "pencil", "garden", ip=c.ip)
        # A client's message reaches a bridge on another node, `from` its full JID.
        wait_until(lambda: self._reaches(juliet, cb1), what="juliet reaching cb1")
        self.assertIn(b"from='juliet@example.com/balcony'", cb1.received)
        # The bridge answers her full JID from its node.
        wait_until(lambda: self._reaches(cb1, juliet), what="cb1 reaching juliet")
        # Clients on two nodes, by full JID, both ways.
        wait_until(lambda: self._reaches(juliet, romeo), what="juliet reaching romeo")
        wait_until(lambda: self._reaches(romeo, juliet), what="romeo reaching juliet")
        self.assertIn(b"from='juliet@example.com/balcony'", romeo.received)
        # Bare JIDs (RFC 6121 §8.5.2.1.1): a message goes to every available resource
        # with a non-negative priority, on whichever nodes they are. Romeo has sent
        # no presence yet: nobody to deliver to, the bridge gets an error.
        cb1.send(f"<message from='cb1.{DOMAIN}' to='romeo@example.com' id='bare0'/>")
        cb1.read_until("id='bare0'")
        self.assertIn(b"service-unavailable", cb1.received)
        romeo.send("<presence/>")
        juliet.send("<presence><priority>1</priority></presence>")
        juliet2 = TlsClient(c.c2s_port, "juliet", "pencil", "hall", ip=c.ip)  # on romeo's node
        juliet2.send("<presence/>")

        def bare_reaches(targets):
            marker = f"bare{time.monotonic_ns()}"
            cb1.send(f"<message from='cb1.{DOMAIN}' to='{targets[0].address.split('/')[0]}' "
                     f"id='{marker}'/>")
            try:
                for target in targets:
                    target.read_until(marker, timeout=0.5)
            except TimeoutError:
                return False
            return True
        wait_until(lambda: bare_reaches([romeo]), what="cb1 reaching romeo's bare JID")
        wait_until(lambda: bare_reaches([juliet, juliet2]),
                   what="cb1's message to juliet's bare JID at both her resources")
        # Exactly one copy each, from one message.
        cb1.send(f"<message from='cb1.{DOMAIN}' to='juliet@example.com' id='once'/>")
        juliet.read_until("id='once'")
        juliet2.read_until("id='once'")
        for target in (juliet, juliet2):
            target.read_for(0.3)
            self.assertEqual(target.received.count(b"id='once'"), 1)
        # Her presence on one node reaches her resource on the other.
        juliet.send("<presence><show>away</show><priority>1</priority></presence>")
        juliet2.read_until("<show>away</show>")
        self.assertRegex(juliet2.received.decode(),
                         r"<presence [^>]*from='juliet@example.com/balcony'[^>]*><show>away")
        # Her hall resource goes unavailable: only the balcony gets the next one.
        juliet2.send("<presence type='unavailable'/>")
        wait_until(lambda: self._bare_only(cb1, juliet, juliet2), what="only the balcony")
        # Not one lucky poll: for the next second, every one goes to the balcony only.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            self.assertTrue(self._bare_only(cb1, juliet, juliet2), "a copy reached the hall")
        juliet2.close()
        # When romeo leaves, his full JID is gone from the cluster: juliet gets an error.
        romeo.send("</stream:stream>")
        self.assertTrue(romeo.wait_closed(), "romeo's stream was not closed")
        self.assertTrue(romeo.received.endswith(b"</stream:stream>"), romeo.received[-200:])
        romeo.close()

        def bounced():
            marker = f"gone{time.monotonic_ns()}"
            juliet.send(f"<iq to='romeo@example.com/garden' type='get' id='{marker}'>"
                        "<ping xmlns='urn:xmpp:ping'/></iq>")
            try:
                juliet.read_until(f"id='{marker}'", timeout=1)
            except TimeoutError:
                return False
            return b"type='error' id='" + marker.encode() in juliet.received
        wait_until(bounced, timeout=15, what="an error for romeo's stale full JID")
        for client in (juliet, cb1):
            client.close()

    def test_mutual_tls_on_the_cluster_port(self):
        import tempfile
        a, b, c = [self.start(f"127.0.0.{i + 1}") for i in range(3)]
        work = tempfile.mkdtemp(prefix="stanzad-cluster-tls-")
        stanzactl = os.path.abspath(os.path.join(os.environ.get("STANZAD_BIN_DIR", "build/cmd"),
                                                 "stanzactl"))
        import subprocess
        for i, node in enumerate((a, b, c)):
            subprocess.run([stanzactl, "pki", "selfsigned", f"n{i}", "CN:example.com",
                            "subjectAltName:example.com"], cwd=work, check=True,
                           capture_output=True, timeout=60)
        # The bundle trusts a and b only; c is a stranger.
        with open(os.path.join(work, "bundle.pem"), "w") as bundle:
            for i in (0, 1):
                with open(os.path.join(work, f"n{i}.crt")) as cert:
                    bundle.write(cert.read())
        for i, node in enumerate((a, b)):
            ok(node, "certs", os.path.join(work, f"n{i}.key"), os.path.join(work, f"n{i}.crt"))
            out = ok(node, "cluster", "trust", os.path.join(work, "bundle.pem"))
            self.assertIn("mutual TLS", out)
            ok(node, "cluster", "enable")
        ok(a, "cluster", "initialize")
        # A node without certificates is told the cause, not "closed by the peer".
        ok(c, "cluster", "enable")
        code, out, err = c.stanzactl("cluster", "join", self.address(a),
                                     f"--token={a.join_token()}")
        self.assertEqual(code, 1, out + err)
        self.assertIn("use TLS", out + err)
        ok(c, "certs", os.path.join(work, "n2.key"), os.path.join(work, "n2.crt"))
        ok(c, "cluster", "trust", os.path.join(work, "bundle.pem"))
        ok(b, "cluster", "join", self.address(a), f"--token={a.join_token()}")
        self.assertEqual(status(b)["tls"], True)
        self.assertIn("Cluster links      : authenticated with the cluster key, over mutual TLS",
                      ok(a, "cluster", "status"))
        ok(b, "callbridge", "add", "cb1")
        wait_until(lambda: "cb1" in ok(a, "callbridge", "list"), what="replicated over TLS")
        # The data links too: mutual TLS beneath the handshake, with the same certificates.
        for node in (a, b):
            wait_until(lambda node=node: all(
                m["data_links_total"] > 0 and m["data_links_up"] == m["data_links_total"]
                for m in status(node)["members"] if not m["self"]), what="data links over TLS")
        code, out, err = c.stanzactl("cluster", "join", self.address(a),
                                     f"--token={a.join_token()}")
        self.assertNotEqual(code, 0)
        wait_until(lambda: "event=cluster_link_refused" in a.read_log(),
                   what="the refusal logged on the member")
        self.assertRegex(a.read_log(), r"cluster_link_refused .*not (issued by a )?trusted")
        self.assertEqual(len(status(a)["members"]), 2)

    def test_a_client_port_tls_session_does_not_resume_on_the_cluster_port(self):
        # The attack: take a TLS 1.2 session on the client port (anyone may), then offer
        # its id to the cluster port, which wants a member's certificate. wolfSSL's
        # session cache is one per process; a resumed session shows no certificate.
        a = self.start("127.0.0.1")
        work = tempfile.mkdtemp(prefix="stanzad-cluster-resume-")
        self.addCleanup(shutil.rmtree, work, True)
        subprocess.run([os.path.abspath(STANZACTL), "pki", "selfsigned", "n0", "CN:example.com",
                        "subjectAltName:example.com"], cwd=work, check=True,
                       capture_output=True, timeout=60)
        ok(a, "certs", os.path.join(work, "n0.key"), os.path.join(work, "n0.crt"))
        ok(a, "cluster", "trust", os.path.join(work, "n0.crt"))
        ok(a, "cluster", "enable")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.options |= ssl.OP_NO_TICKET  # resumption by session id, from the cache

        def starttls(session=None):
            sock = socket.create_connection(("127.0.0.1", a.c2s_port), timeout=10)
            sock.sendall((TlsClient.HEADER % DOMAIN +
                          "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>").encode())
            received = b""
            while b"<proceed" not in received:
                chunk = sock.recv(4096)
                self.assertTrue(chunk, received)
                received += chunk
            tls = context.wrap_socket(sock, server_hostname=DOMAIN, session=session)
            return tls

        first = starttls()
        session = first.session
        first.close()
        # The session is resumable where it was made (so the attack below is real)...
        again = starttls(session)
        self.assertTrue(again.session_reused)
        again.close()
        # ...and not on the cluster port: a full handshake, which wants a certificate.
        raw = socket.create_connection(("127.0.0.1", a.cluster_port), timeout=10)
        with self.assertRaises((ssl.SSLError, ConnectionError)):
            tls = context.wrap_socket(raw, server_hostname=DOMAIN, session=session)
            self.fail(f"a TLS session on the cluster port without a certificate "
                      f"(resumed: {tls.session_reused})")
        raw.close()
        # Refused by the full handshake's certificate check, not by anything earlier.
        wait_until(lambda: "the peer presented no certificate" in a.read_log(),
                   what="the refusal for want of a certificate, logged")

    def test_a_wildcard_listen_address_needs_a_cluster_address(self):
        a = self.start("127.0.0.1")
        ok(a, "listen", "0.0.0.0")
        code, out, err = a.stanzactl("cluster", "enable")
        out += err
        self.assertEqual(code, 1)
        self.assertIn("0.0.0.0", out)
        self.assertIn("--cluster_address=", out)
        self.assertFalse(status(a)["listening"])
        a.stop()
        a.extra_flags.append("--cluster_address=127.0.0.1")
        a.start(seed=False)
        self.assertIn(f"127.0.0.1:{a.cluster_port}", ok(a, "cluster", "enable"))
        out = ok(a, "cluster", "initialize")
        self.assertIn(f"stanzactl cluster join 127.0.0.1:{a.cluster_port} --token=", out)

    def test_errors_name_cause_and_fix(self):
        a = self.start("127.0.0.1")
        code, out, err = a.stanzactl("cluster", "initialize")
        out += err
        self.assertEqual(code, 1)
        self.assertIn("cluster enable", out)
        ok(a, "cluster", "enable")
        code, out, err = a.stanzactl("cluster", "join", "127.0.0.2:1")
        out += err
        self.assertEqual(code, 2)
        self.assertIn("stanzactl cluster token", out)
        code, out, err = a.stanzactl("cluster", "join", "127.0.0.2:1",
                                     "--token=0123456789abcdef.0123456789abcdef0123456789abcdef")
        out += err
        self.assertEqual(code, 1)
        self.assertTrue("cannot reach" in out or "lost the link" in out, out)
        code, out, err = a.stanzactl("cluster", "frobnicate")
        out += err
        self.assertEqual(code, 2)
        self.assertIn("usage", out)
        s = status(a)
        self.assertFalse(s["member"])
        self.assertTrue(s["listening"])


if __name__ == "__main__":
    unittest.main()
