"""`stanzactl doctor dns` against a real DNS server (dnsmasq on 127.0.0.1) and a
real 3-node cluster: the seed's scenario 1 (bridges cannot find the cluster
because of DNS), each problem named with its fix.

Run: STANZAD_BIN_DIR=build/cmd /usr/bin/python3 tests/integration/dns_doctor_test.py -v
"""
import json
import os
import random
import shutil
import socket
import struct
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from stanzad_harness import STANZACTL, StanzadProcess, free_port, wait_until  # noqa: E402

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"


class Dnsmasq:
    def __init__(self, records):
        self.port = free_port()
        args = [DNSMASQ, "--no-daemon", f"--port={self.port}", "--listen-address=127.0.0.1",
                "--bind-interfaces", "--no-resolv", "--no-hosts", "--local=/example.com/",
                "--pid-file=", "--user=root", "--log-facility=-"] + records
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until(lambda: self.process.poll() is not None or self.answers(),
                       what=f"dnsmasq answering on port {self.port}")
        except TimeoutError:
            self.stop()
            raise
        assert self.process.poll() is None, self.process.stderr.read().decode()

    def answers(self):
        """True once the server answers a query (any answer: it has read its records)."""
        query_id = random.randrange(1 << 16)
        name = b"".join(bytes([len(label)]) + label for label in b"example.com".split(b"."))
        query = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0) + name + b"\0" + \
            struct.pack(">HH", 1, 1)  # A, IN
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.2)
            s.sendto(query, ("127.0.0.1", self.port))
            try:
                reply = s.recv(512)
            except OSError:  # no answer yet, or the port is not open yet (ICMP refused)
                return False
        # The same id, and the QR bit: a response.
        return len(reply) >= 12 and struct.unpack(">H", reply[:2])[0] == query_id \
            and reply[2] & 0x80 != 0

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)
        self.process.stderr.close()


def srv(service, target, port):
    return f"--srv-host={service}.example.com,{target}.example.com,{port},0,0"


class ClusterWithDns(unittest.TestCase):
    """Three nodes on 127.0.0.1-3 with the same component port, in one cluster."""

    def setUp(self):
        if not os.path.exists(DNSMASQ):
            self.skipTest("dnsmasq is not installed (scripts/install-deps.sh installs it)")
        self.component_port = free_port()
        self.c2s_port = free_port()
        self.nodes = []
        for i in range(3):
            node = StanzadProcess(ip=f"127.0.0.{i + 1}", threads=1)
            node.port = self.component_port  # the same ports on every node, as in the seed
            node.c2s_port = self.c2s_port
            self.addCleanup(node.cleanup)  # even if set-up fails below
            node.start()
            node.wait_serving()
            self.nodes.append(node)
            self.assertEqual(node.admin("cluster", "enable")[0], 0)
        self.assertEqual(self.nodes[0].admin("cluster", "initialize")[0], 0)
        for node in self.nodes[1:]:
            code, out = node.join(self.nodes[0])
            self.assertEqual(code, 0, out)
        self.dns = None

    def tearDown(self):
        if self.dns:
            self.dns.stop()



class DnsDoctorTest(ClusterWithDns):
    def doctor(self):
        result = subprocess.run(
            [os.path.abspath(STANZACTL), f"--state_dir={self.nodes[0].state_dir}", "doctor",
             "dns", "example.com", f"--dns_server=127.0.0.1:{self.dns.port}"],
            capture_output=True, text=True, timeout=60)
        return result.returncode, result.stdout + result.stderr

    def test_good_records_pass(self):
        records = []
        for i in range(3):
            records.append(srv("_xmpp-component._tcp", f"xmpp{i + 1}", self.component_port))
            records.append(srv("_xmpp-client._tcp", f"xmpp{i + 1}", self.c2s_port))
            records.append(f"--host-record=xmpp{i + 1}.example.com,127.0.0.{i + 1}")
        self.dns = Dnsmasq(records)
        code, out = self.doctor()
        self.assertEqual(code, 0, out)
        self.assertIn("every cluster member (3) is a target of _xmpp-component._tcp", out)
        # These nodes have no certificate yet: their client port is still the one the
        # records must name, and the doctor says why clients are refused for now.
        self.assertNotIn("does not serve clients yet", out)
        self.assertIn("ok: _xmpp-client._tcp.example.com is set; note: this stanzad refuses "
                      "clients until a certificate is set with stanzactl certs KEY CERT [BUNDLE] "
                      "(this node has no certificate)", out)
        self.assertIn("No problems found", out)

    def test_each_problem_is_named_with_its_fix(self):
        self.dns = Dnsmasq([
            srv("_xmpp-component._tcp", "xmpp1", self.component_port),
            srv("_xmpp-component._tcp", "xmpp2", self.component_port + 1),  # wrong port
            srv("_xmpp-component._tcp", "ghost", self.component_port),  # no A record
            "--host-record=xmpp1.example.com,127.0.0.1",
            "--host-record=xmpp2.example.com,127.0.0.2",
            # 127.0.0.3 is a member but no target; no _xmpp-client records at all
        ])
        code, out = self.doctor()
        self.assertEqual(code, 1, out)
        self.assertIn("ghost.example.com, which has no A or AAAA record", out)
        self.assertIn(f"to port {self.component_port + 1} but this node listens on "
                      f"{self.component_port}", out)
        self.assertIn("cluster member 127.0.0.3 is not a target", out)
        self.assertIn("no SRV records for _xmpp-client._tcp.example.com", out)
        self.assertEqual(out.count("fix:"), 4, out)
        self.assertIn("4 problems found", out)


class DnsServerTroubleTest(unittest.TestCase):
    """The DNS server itself is the problem (issue 16: a --dns_server pointing at
    nothing was reported as missing records, with 'fix: add one record per node')."""

    def setUp(self):
        self.node = StanzadProcess()
        self.addCleanup(self.node.cleanup)
        self.node.start()

    def doctor(self, server, domain="example.com"):
        result = subprocess.run(
            [os.path.abspath(STANZACTL), f"--state_dir={self.node.state_dir}", "doctor", "dns",
             domain, f"--dns_server={server}"], capture_output=True, text=True, timeout=60)
        return result.returncode, result.stdout + result.stderr

    def assert_not_blamed_on_records(self, out):
        self.assertNotIn("no SRV records", out)
        self.assertNotIn("add one record per node", out)
        self.assertIn("1 problem found", out)

    def test_nothing_listening_is_connection_refused(self):
        port = free_port()  # bindable now: nothing listens there
        code, out = self.doctor(f"127.0.0.1:{port}")
        self.assertEqual(code, 1, out)
        self.assertIn(f"problem: cannot reach the DNS server 127.0.0.1:{port}: connection refused",
                      out)
        self.assertIn("fix: point --dns_server=IP[:PORT] at a DNS server that serves example.com",
                      out)
        self.assert_not_blamed_on_records(out)

    def test_a_server_that_never_answers_times_out(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
            silent.bind(("127.0.0.1", 0))  # open, never read: queries go unanswered
            server = f"127.0.0.1:{silent.getsockname()[1]}"
            code, out = self.doctor(server)
        self.assertEqual(code, 1, out)
        self.assertIn(f"problem: cannot reach the DNS server {server}: no answer (timed out", out)
        self.assert_not_blamed_on_records(out)

    def test_a_server_that_refuses_the_query_is_named(self):
        if not os.path.exists(DNSMASQ):
            self.skipTest("dnsmasq is not installed (scripts/install-deps.sh installs it)")
        dns = Dnsmasq([])  # serves example.com only, no upstream: refuses other names
        self.addCleanup(dns.stop)
        code, out = self.doctor(f"127.0.0.1:{dns.port}", domain="example.org")
        self.assertEqual(code, 1, out)
        self.assertIn(f"the DNS server 127.0.0.1:{dns.port} could not look up "
                      "_xmpp-component._tcp.example.org (", out)
        self.assertNotIn("add one record per node", out)


class SrvFailoverTest(ClusterWithDns):
    """stanza-bench finds the nodes through SRV and fails over when one dies."""

    def test_bridges_follow_srv_to_another_node(self):
        bench = os.path.join(os.path.dirname(os.path.abspath(STANZACTL)), "../bench/stanza-bench")
        if not os.path.exists(bench):
            self.skipTest("stanza-bench is not built")
        records = []
        for i in range(3):
            records.append(srv("_xmpp-component._tcp", f"xmpp{i + 1}", self.component_port))
            records.append(f"--host-record=xmpp{i + 1}.example.com,127.0.0.{i + 1}")
        self.dns = Dnsmasq(records)
        for i in range(30):
            self.assertEqual(self.nodes[0].admin("callbridge", "add", f"b{i}")[0], 0)
        secrets = os.path.join(self.nodes[0].state_dir, "secrets.json")
        code, out, err = self.nodes[0].stanzactl("callbridge", "list", json=True)
        with open(secrets, "w") as f:
            f.write(out)
        process = subprocess.Popen(
            [bench, "--mode=latency", "--rate=5000", "--bridges=30", "--srv=example.com",
             f"--dns_server=127.0.0.1:{self.dns.port}", f"--secrets_json={secrets}",
             "--duration_s=5", "--warmup_s=1",
             # stanza-bench kills node 3 itself, 2 s into its measuring window (it is our
             # child, not reaped until cleanup: the PID cannot be another process's).
             f"--kill_pid={self.nodes[2].process.pid}", "--kill_at_s=2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=10)
        self.assertEqual(process.returncode, 0, err)
        self.assertIsNotNone(self.nodes[2].process.poll(), "node 3 was not killed")
        result = json.loads(out.strip().splitlines()[-1])
        # A failure says what the cluster saw: every node's cluster and relay events.
        result["node_events"] = {
            node.ip: [line for line in node.read_log().splitlines()
                      if "event=cluster_" in line or "event=relay" in line][-40:]
            for node in self.nodes}
        # What happened, not how fast (the downtime is docs/benchmarks.md's, "Bridge
        # failover"): node 3's bridges found another node through SRV and all are back.
        self.assertGreater(result["bridges_failed_over"], 0, result)
        self.assertEqual(result["bridges_still_down"], 0, result)
        self.assertEqual(result["bridges_down_at_end"], [], result)
        # The time each bridge was without a server, by name: those of the dead node.
        self.assertEqual(len(result["down_ms_by_bridge"]), result["bridges_failed_over"], result)
        self.assertTrue(all(ms > 0 for ms in result["down_ms_by_bridge"].values()), result)
        # Traffic flowed again after the kill; nothing twice, nothing lost between bridges
        # that kept their node (what the dying node held is lost: docs/cluster.md).
        self.assertIsNotNone(result["kill_to_flow_ms"], result)
        self.assertEqual(result["duplicated"], 0, result)
        self.assertEqual(result["lost_on_steady_paths"], 0, result)


if __name__ == "__main__":
    unittest.main()
