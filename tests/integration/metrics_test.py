"""Integration tests of /metrics and /healthz: a real stanzad, real bridges,
the output read with a real Prometheus text-format parser (Debian's
python3-prometheus-client) and checked to move as traffic flows.

Run: STANZAD_BIN_DIR=build/cmd /usr/bin/python3 tests/integration/metrics_test.py -v
"""
import os
import select
import socket
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(__file__))
from stanzad_harness import DOMAIN, RawComponent, StanzadProcess, wait_until  # noqa: E402

# metrics/http_server.h: kRequestTimeoutMs and kConnectionsMax.
REQUEST_TIMEOUT_S = 2.0
CONNECTIONS_MAX = 64


def fetch(port, path, method="GET"):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read().decode()


class MetricsTest(unittest.TestCase):
    def setUp(self):
        self.node = StanzadProcess().start()
        self.node.wait_serving()
        self.components = []
        wait_until(lambda: self.try_fetch("/healthz") == 200, what="metrics listening")

    def tearDown(self):
        for component in self.components:
            component.close()
        self.node.cleanup()

    def try_fetch(self, path):
        try:
            return fetch(self.node.metrics_port, path)[0]
        except OSError:
            return None

    def scrape(self):
        """{(name, frozenset(labels)): value} summed over nothing; every sample as parsed."""
        status, headers, body = fetch(self.node.metrics_port, "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        samples = {}
        families = {}
        for family in text_string_to_metric_families(body):
            families[family.name] = family.type
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return families, samples

    def total(self, samples, name, **labels):
        """Sum over shards of the samples of `name` with these labels."""
        wanted = set(labels.items())
        return sum(v for (n, l), v in samples.items() if n == name and wanted <= set(l))

    def bridge(self, name):
        secrets = self.node.secrets()
        component = RawComponent(self.node.port, name, secrets[name])
        self.components.append(component)
        return component.open_stream().handshake()

    def test_families_parse_with_types_and_help(self):
        families, samples = self.scrape()
        # The parser strips _total from counter family names.
        expected = {
            "stanzad_build_info": "gauge",
            "stanzad_uptime_seconds": "gauge",
            "stanzad_serving": "gauge",
            "stanzad_bridges_configured": "gauge",
            "stanzad_connections_open": "gauge",
            "stanzad_connections_accepted": "counter",
            "stanzad_handshakes": "counter",
            "stanzad_stanzas_routed": "counter",
            "stanzad_stanzas_bounced": "counter",
            "stanzad_bytes_received": "counter",
            "stanzad_bytes_sent": "counter",
            "stanzad_send_queue_bytes": "gauge",
            "stanzad_send_queue_full": "counter",
            "stanzad_clients_connected": "gauge",
            "stanzad_client_logins": "counter",
            "stanzad_tls_handshakes": "counter",
            "stanzad_stream_resumptions": "counter",
            "stanzad_stanzas_returned_unacked": "counter",
        }
        for name, kind in expected.items():
            self.assertEqual(families.get(name), kind, name)
        self.assertEqual(self.total(samples, "stanzad_serving"), 1)
        self.assertEqual(self.total(samples, "stanzad_build_info", version="0.1.0"), 1)
        # One sample per shard (the harness runs two).
        shards = {dict(l)["shard"] for (n, l) in samples if n == "stanzad_stanzas_routed_total"}
        self.assertEqual(shards, {"0", "1"})

    def test_counters_move_with_traffic(self):
        for name in ("m1", "m2"):
            self.assertEqual(self.node.admin("callbridge", "add", name)[0], 0)
        _, before = self.scrape()
        self.assertEqual(self.total(before, "stanzad_bridges_configured"), 2)
        m1, m2 = self.bridge("m1"), self.bridge("m2")
        count = 50
        for i in range(count):
            m1.send(f"<message from='m1.{DOMAIN}' to='m2.{DOMAIN}' id='x{i}'><body>{i}</body>"
                    "</message>")
        m2.read_until(f"id='x{count - 1}'")
        # An unknown destination is bounced with service-unavailable.
        m1.send(f"<message from='m1.{DOMAIN}' to='nobody.{DOMAIN}' id='lost'/>")
        m1.read_until("service-unavailable")
        # A wrong secret is a failed handshake.
        bad = RawComponent(self.node.port, "m1", "wrong-secret")
        self.components.append(bad)
        bad.open_stream().handshake(expect_ok=False)
        bad.read_until("not-authorized")

        def moved():
            _, after = self.scrape()
            return (self.total(after, "stanzad_stanzas_routed_total")
                    - self.total(before, "stanzad_stanzas_routed_total") >= count
                    and self.total(after, "stanzad_handshakes_total", outcome="failed") == 1
                    and self.total(after, "stanzad_bridges_connected") == 2
                    # Engine counters are refreshed every 100 ms (docs/operating.md).
                    and self.total(after, "stanzad_bytes_sent_total")
                    > self.total(before, "stanzad_bytes_sent_total"))
        wait_until(moved, timeout=10, what="metrics to reflect the traffic")
        _, after = self.scrape()
        self.assertEqual(self.total(after, "stanzad_handshakes_total", outcome="ok"), 2)
        self.assertEqual(
            self.total(after, "stanzad_stanzas_bounced_total", reason="service-unavailable"), 1)
        self.assertGreaterEqual(self.total(after, "stanzad_connections_open", kind="component"), 2)
        self.assertGreater(self.total(after, "stanzad_bytes_received_total"),
                           self.total(before, "stanzad_bytes_received_total"))
        self.assertGreater(self.total(after, "stanzad_bytes_sent_total"),
                           self.total(before, "stanzad_bytes_sent_total"))
        self.assertGreater(self.total(after, "stanzad_last_config_change_timestamp_seconds"),
                           time.time() - 3600)

    def test_healthz_says_why_not_serving(self):
        self.assertEqual(fetch(self.node.metrics_port, "/healthz")[:3:2], (200, "serving\n"))
        self.assertEqual(self.node.admin("disable")[0], 0)
        status, _, body = fetch(self.node.metrics_port, "/healthz")
        self.assertEqual(status, 503)
        self.assertIn("disabled", body)
        _, samples = self.scrape()
        self.assertEqual(self.total(samples, "stanzad_serving"), 0)
        self.assertEqual(self.node.admin("enable")[0], 0)
        wait_until(lambda: fetch(self.node.metrics_port, "/healthz")[0] == 200,
                   what="healthy again after enable")

    def test_bad_requests_get_errors_and_do_not_block(self):
        port = self.node.metrics_port
        self.assertEqual(fetch(port, "/nope")[0], 404)
        self.assertEqual(fetch(port, "/metrics", method="POST")[0], 405)
        self.assertEqual(fetch(port, "/metrics?x=1")[0], 200)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"garbage\r\n\r\n")
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 400"))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /" + b"a" * 10000 + b" HTTP/1.1\r\n\r\n")
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 400"))
        # A client that connects and says nothing is dropped after 2 s; others
        # are served meanwhile.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as stalled:
            connected = time.monotonic()
            start = time.monotonic()
            self.assertEqual(fetch(port, "/healthz")[0], 200)
            self.assertLess(time.monotonic() - start, 1)
            self.assertEqual(stalled.recv(100), b"")  # EOF, with no answer
            self.assertLess(time.monotonic() - connected, REQUEST_TIMEOUT_S + 1.5)

    def test_trickling_client_does_not_delay_healthz(self):
        # The attack that found the bug: one byte every 1.5 s restarted a per-read
        # timeout, and one connection at a time left /healthz unanswered.
        port = self.node.metrics_port
        connected = threading.Event()
        outcome = {}

        def trickle():
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                start = time.monotonic()
                connected.set()
                for byte in b"GET /healthz HTTP/1.1\r\n\r\n":  # bounded: 28 bytes
                    try:
                        s.sendall(bytes([byte]))
                    except OSError:
                        break  # closed by the server between two bytes
                    # The next byte is due in 1.5 s; an EOF before then is the close.
                    if select.select([s], [], [], 1.5)[0]:
                        try:
                            outcome["received"] = s.recv(100)
                        except ConnectionResetError:
                            pass  # closed while a byte was on its way: closed all the same
                        break
                outcome["closed_after_s"] = time.monotonic() - start

        trickler = threading.Thread(target=trickle)
        trickler.start()
        try:
            self.assertTrue(connected.wait(5))
            latencies = []
            while trickler.is_alive():
                start = time.monotonic()
                self.assertEqual(fetch(port, "/healthz")[0], 200)
                latencies.append(time.monotonic() - start)
                trickler.join(0.05)  # pace the probes; returns early once it is done
        finally:
            trickler.join()
        self.assertGreaterEqual(len(latencies), 10)
        self.assertLess(max(latencies), 1.0, latencies)
        self.assertEqual(outcome.get("received", b""), b"")  # closed, never answered
        self.assertIn("closed_after_s", outcome)
        self.assertLess(outcome["closed_after_s"], REQUEST_TIMEOUT_S + 1.5)

    def test_connections_beyond_the_limit_are_closed_at_once(self):
        port = self.node.metrics_port
        held = [socket.create_connection(("127.0.0.1", port), timeout=5)
                for _ in range(CONNECTIONS_MAX)]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
                start = time.monotonic()
                self.assertEqual(extra.recv(100), b"")
                self.assertLess(time.monotonic() - start, REQUEST_TIMEOUT_S / 2)
        finally:
            for s in held:
                s.close()
        # The server sees them go and serves again.
        wait_until(lambda: self.try_fetch("/healthz") == 200, what="healthz after the flood")

    def test_taken_port_is_logged_and_routing_goes_on(self):
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        taken = blocker.getsockname()[1]
        other = StanzadProcess(extra_flags=[f"--metrics_addr=127.0.0.1:{taken}"])
        try:
            other.start()
            other.wait_serving()
            wait_until(lambda: "event=metrics_listen_failed" in other.read_log(),
                       what="metrics_listen_failed logged")
            self.assertIn(f"127.0.0.1:{taken}", other.read_log())
        finally:
            other.cleanup()
            blocker.close()


if __name__ == "__main__":
    unittest.main()
