"""`stanzactl pki` makes keys, requests and lab certificates locally; `stanzactl
certs` checks them in the daemon and says what is wrong, naming cause and fix.

Run: STANZAD_BIN_DIR=build/cmd /usr/bin/python3 tests/integration/certs_test.py -v
"""
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from stanzad_harness import STANZACTL, RawComponent, StanzadProcess, wait_until  # noqa: E402


class NodeWithWorkDir(unittest.TestCase):
    """A node, and a scratch directory stanzactl runs in (pki writes there)."""
    FLAGS = ()

    def setUp(self):
        self.node = StanzadProcess(extra_flags=list(self.FLAGS)).start()
        self.work = tempfile.mkdtemp(prefix="stanzad-pki-")

    def tearDown(self):
        self.node.cleanup()
        shutil.rmtree(self.work, ignore_errors=True)

    def ctl(self, *args):
        result = subprocess.run([os.path.abspath(STANZACTL), f"--state_dir={self.node.state_dir}", *args],
                                cwd=self.work, capture_output=True, text=True, timeout=60)
        return result.returncode, result.stdout + result.stderr


class CertsTest(NodeWithWorkDir):
    def setUp(self):
        super().setUp()
        self.node.wait_serving()

    def test_csr_is_what_a_ca_expects(self):
        code, out = self.ctl("pki", "csr", "xmpp", "CN:xmpp.example.com",
                             "subjectAltName:example.com,cb1.example.com")
        self.assertEqual(code, 0, out)
        key = os.path.join(self.work, "xmpp.key")
        self.assertEqual(stat.S_IMODE(os.stat(key).st_mode), 0o600)
        if shutil.which("openssl"):
            text = subprocess.run(["openssl", "req", "-in", os.path.join(self.work, "xmpp.csr"),
                                   "-noout", "-text", "-verify"], capture_output=True, text=True,
                                  timeout=30)
            self.assertEqual(text.returncode, 0, text.stderr)
            self.assertIn("DNS:cb1.example.com", text.stdout)
        # Never overwritten.
        code, out = self.ctl("pki", "csr", "xmpp", "CN:x")
        self.assertEqual(code, 1)
        self.assertIn("exists", out)
        code, out = self.ctl("pki", "list")
        self.assertIn("xmpp.csr", out)

    def test_certs_accepts_a_matching_certificate_and_refuses_the_rest(self):
        self.assertEqual(self.ctl("pki", "selfsigned", "lab", "CN:example.com",
                                  "subjectAltName:example.com,*.example.com")[0], 0)
        self.assertEqual(self.ctl("pki", "selfsigned", "other", "CN:other.org")[0], 0)
        code, out = self.ctl("certs", "other.key", "lab.crt")
        self.assertEqual(code, 1)
        self.assertIn("does not match", out)
        code, out = self.ctl("certs", "other.key", "other.crt")
        self.assertEqual(code, 1)
        self.assertIn("not example.com", out)
        code, out = self.ctl("certs", "missing.key", "lab.crt")
        self.assertEqual(code, 1)
        self.assertIn("missing.key", out)
        code, out = self.ctl("certs", "lab.key", "lab.crt")
        self.assertEqual(code, 0, out)
        self.assertIn("Certificate accepted for example.com", out)
        code, out = self.ctl("certs")
        self.assertIn(f"Certificate file   : {self.work}/lab.crt", out)
        code, out = self.ctl("cluster", "status")
        self.assertIn(f"Key file           : {self.work}/lab.key", out)
        # Kept across a restart.
        self.node.stop()
        self.node.start(seed=False)
        self.node.wait_serving()
        self.assertIn("lab.crt", self.ctl("certs")[1])



class UnprivilegedDaemonTest(unittest.TestCase):
    """The daemon as its own unprivileged user (stanzad.service runs it as 'stanzad';
    here 'nobody'), with keys made by `stanzactl pki` as root (issue 16: 'Permission
    denied', and nothing said where keys go or who must own them)."""

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("runs the daemon as another user: needs root")
        self.node = StanzadProcess(user="nobody")
        self.addCleanup(self.node.cleanup)
        self.node.start()
        self.node.wait_serving()
        self.group = self.node.user_group()

    def work_dir(self, under):
        work = tempfile.mkdtemp(prefix="stanzad-keys-", dir=under)
        self.addCleanup(shutil.rmtree, work, True)
        os.chmod(work, 0o755)  # the daemon may enter it: only the key's mode is in its way
        return work

    def ctl(self, work, *args):
        result = subprocess.run([os.path.abspath(STANZACTL), f"--state_dir={self.node.state_dir}",
                                 *args], cwd=work, capture_output=True, text=True, timeout=60)
        return result.returncode, result.stdout + result.stderr

    def test_a_key_only_root_may_read_gets_the_exact_chown_and_chmod(self):
        # Outside /tmp (where PrivateTmp would matter): beside the binaries under test.
        work = self.work_dir(os.path.dirname(os.path.abspath(STANZACTL)))
        self.assertEqual(self.ctl(work, "pki", "selfsigned", "lab", "CN:example.com")[0], 0)
        key = os.path.join(work, "lab.key")
        code, out = self.ctl(work, "certs", "lab.key", "lab.crt")
        self.assertEqual(code, 1, out)
        self.assertEqual(out, f"error: stanzad (user nobody) cannot read the private key {key}: "
                              f"Permission denied. fix: chown root:{self.group} {key} && "
                              f"chmod 0640 {key}\n")
        # The fix as printed works.
        subprocess.run(["chown", f"root:{self.group}", key], check=True)
        subprocess.run(["chmod", "0640", key], check=True)
        code, out = self.ctl(work, "certs", "lab.key", "lab.crt")
        self.assertEqual(code, 0, out)
        self.assertIn("Certificate accepted for example.com", out)

    def test_a_key_under_tmp_names_the_units_private_tmp(self):
        work = self.work_dir(tempfile.gettempdir())
        if not work.startswith("/tmp/"):
            self.skipTest("TMPDIR is not under /tmp")
        self.assertEqual(self.ctl(work, "pki", "selfsigned", "lab", "CN:example.com")[0], 0)
        key = os.path.join(work, "lab.key")
        code, out = self.ctl(work, "certs", "lab.key", "lab.crt")
        self.assertEqual(code, 1, out)
        self.assertIn(f"cannot read the private key {key}: Permission denied; keep keys out of "
                      "/tmp: stanzad.service's PrivateTmp=yes gives the daemon a /tmp of its "
                      "own, without this file. fix: install -D -o root -g "
                      f"{self.group} -m 0640 {key} /etc/stanzad/lab.key and give certs that "
                      "path", out)


class ComponentTlsTest(NodeWithWorkDir):
    """--component_tls: bridges connect with TLS from the first byte."""
    FLAGS = ("--component_tls",)

    def setUp(self):
        super().setUp()
        self.bridges = []

    def tearDown(self):
        for bridge in self.bridges:
            bridge.close()
        super().tearDown()

    def bridge(self, name, **kwargs):
        bridge = RawComponent(self.node.port, name, self.node.secrets()[name], **kwargs)
        self.bridges.append(bridge)
        return bridge

    def test_bridges_exchange_stanzas_over_tls_and_plain_ones_are_refused(self):
        self.assertEqual(self.node.admin("callbridge", "add", "cb1")[0], 0)
        self.assertEqual(self.node.admin("callbridge", "add", "cb2")[0], 0)
        self.node.wait_serving()
        # No certificate yet: the TLS port refuses, and says why in the log.
        refused = self.bridge("cb1", tls=False)
        self.assertTrue(refused.wait_closed(timeout=5))
        wait_until(lambda: "bridge_refused" in self.node.read_log(), what="bridge_refused log")
        self.assertIn("reason=no_tls_certificate", self.node.read_log())
        self.assertEqual(self.ctl("pki", "selfsigned", "lab", "CN:example.com",
                                  "subjectAltName:example.com,*.example.com")[0], 0)
        code, out = self.ctl("certs", "lab.key", "lab.crt")
        self.assertEqual(code, 0, out)
        cb1 = self.bridge("cb1", tls=True).connect()
        cb2 = self.bridge("cb2", tls=True).connect()
        cb1.send("<message from='cb1.example.com' to='cb2.example.com' id='t1'><body>x</body>"
                 "</message>")
        cb2.read_until("id='t1'")
        code, out = self.node.admin("status")
        self.assertIn("(call bridges, TLS)", out)
        # A plain XEP-0114 bridge on the TLS port is closed, not served in the clear.
        plain = self.bridge("cb1", tls=False)
        plain.send("<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
                   "xmlns:stream='http://etherx.jabber.org/streams' to='cb1.example.com'>")
        self.assertTrue(plain.wait_closed(timeout=5))
        self.assertNotIn(b"<stream:stream", plain.received)
        wait_until(lambda: "tls_handshake_failed" in self.node.read_log(),
                   what="tls_handshake_failed log")


if __name__ == "__main__":
    unittest.main()
