"""Test harness: real stanzad processes on loopback, driven like an operator.

StanzadProcess starts the daemon on a fresh state dir with free ports and
stops it by PID; Admin speaks the admin socket protocol directly (fast, for
bulk setup) and stanzactl() runs the real CLI; RawComponent is a minimal
XEP-0114 component over a plain socket that records every byte it receives.
Everything binds 127.0.0.1 and every wait is bounded.
"""
import base64
import fcntl
import hashlib
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time

BIN_DIR = os.environ.get("STANZAD_BIN_DIR", os.path.join(os.path.dirname(__file__),
                                                          "../../build/cmd"))
STANZAD = os.path.join(BIN_DIR, "stanzad")
STANZACTL = os.path.join(BIN_DIR, "stanzactl")
DOMAIN = "example.com"
# How much slower than a Release build the daemon under test runs (set by scripts/test.sh
# for the sanitizer build). Bounds on waiting for an event are multiplied by it; windows in
# which something must NOT happen, and the daemon's own timers, are not.
SLOWDOWN = float(os.environ.get("STANZAD_TEST_SLOWDOWN", "1"))


def patient(seconds):
    """A bound on waiting for something that should happen, scaled by SLOWDOWN."""
    return seconds * SLOWDOWN


# Ports handed to daemons under test. They lie below the kernel's ephemeral range
# (32768-60999 by default), so no outgoing connection of a test running beside this
# one takes a port between our check and the daemon's bind; a counter shared through
# a locked file gives tests run side by side (ctest -j) different ports.
PORT_RANGE = (20000, 32700)
PORT_COUNTER = os.path.join(tempfile.gettempdir(), "stanzad-test-ports")


def _bindable(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("0.0.0.0", port))  # conflicts with a listener on any 127.0.0.x
            return True
        except OSError:
            return False


def free_port():
    low, high = PORT_RANGE
    span = high - low
    with open(PORT_COUNTER, "a+") as counter:
        fcntl.flock(counter, fcntl.LOCK_EX)
        counter.seek(0)
        text = counter.read().strip()
        offset = int(text) % span if text.isdigit() else os.getpid() % span
        for _ in range(span):
            port = low + offset
            offset = (offset + 1) % span
            if _bindable(port):
                break
        else:
            raise RuntimeError(f"no free port in {low}-{high}")
        counter.seek(0)
        counter.truncate()
        counter.write(str(offset))
    return port


def wait_until(predicate, timeout=10.0, interval=0.02, what="condition"):
    timeout = patient(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


class StanzadProcess:
    def __init__(self, state_dir=None, threads=2, extra_flags=(), ip="127.0.0.1",
                 open_files_max=None, user=None):
        self.own_dir = state_dir is None
        self.state_dir = state_dir or tempfile.mkdtemp(prefix="stanzad-it-")
        self.ip = ip  # listen address (127.0.0.N for a node of a cluster on loopback)
        self.port = free_port()
        self.c2s_port = free_port()
        self.metrics_port = free_port()
        self.cluster_port = free_port()
        self.cluster_data_port = free_port()
        self.threads = threads
        self.extra_flags = list(extra_flags)
        self.open_files_max = open_files_max  # RLIMIT_NOFILE of the daemon; None: inherited
        # The user the daemon runs as (as stanzad.service runs it as 'stanzad'); None: ours.
        # Needs root; the state dir is handed to that user.
        self.user = user
        if user is not None:
            import pwd
            entry = pwd.getpwnam(user)
            os.chown(self.state_dir, entry.pw_uid, entry.pw_gid)
        self.process = None
        self.log_path = os.path.join(self.state_dir, "stanzad.log")

    def start(self, seed=True):
        flags = [STANZAD, f"--state_dir={self.state_dir}", f"--component_port={self.port}",
                 f"--c2s_port={self.c2s_port}", f"--threads={self.threads}", f"--metrics_addr=127.0.0.1:{self.metrics_port}",
                 f"--cluster_port={self.cluster_port}",
                 f"--cluster_data_port={self.cluster_data_port}"] + self.extra_flags
        if seed:
            flags += [f"--domain={DOMAIN}", f"--listen={self.ip}"]
        self.log = open(self.log_path, "ab")
        limit = self.open_files_max

        def limit_open_files():  # in the child, before exec
            resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
        as_user = {} if self.user is None else {"user": self.user, "group": self.user_group(),
                                                 "extra_groups": []}
        self.process = subprocess.Popen(flags, stdout=self.log, stderr=subprocess.STDOUT,
                                        preexec_fn=limit_open_files if limit else None, **as_user)
        # A crashed daemon leaves its socket file behind: wait until one answers.
        def admin_answers():
            if self.process.poll() is not None:
                return True
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(os.path.join(self.state_dir, "stanzad.sock"))
                    return True
            except OSError:
                return False
        wait_until(admin_answers, what="admin socket")
        if self.process.poll() is not None:
            raise RuntimeError(f"stanzad exited early: {self.read_log()}")
        return self

    def user_group(self):
        """The name of the primary group of the user the daemon runs as."""
        import grp
        import pwd
        return grp.getgrgid(pwd.getpwnam(self.user).pw_gid).gr_name

    def wait_serving(self):
        def accepting():
            try:
                with socket.create_connection((self.ip, self.port), timeout=0.5):
                    return True
            except OSError:
                return False
        wait_until(accepting, what=f"stanzad accepting on port {self.port}")

    def stop(self, sig=signal.SIGTERM):
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.process:
            self.log.close()
        return self.process.returncode if self.process else None

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def cleanup(self):
        self.stop(signal.SIGKILL)
        if self.own_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def stanzactl(self, *args, stdin=None, json=False):
        command = [STANZACTL, f"--state_dir={self.state_dir}"] + (["--json"] if json else [])
        result = subprocess.run(command + list(args), input=stdin, capture_output=True,
                                text=True, timeout=30)
        return result.returncode, result.stdout, result.stderr

    def admin(self, *args):
        """Sends a command over the admin socket directly; returns (exit code, output)."""
        request = b"stanzactl 1\njson 0\n"
        for arg in args:
            data = arg.encode()
            request += b"arg %d\n%s\n" % (len(data), data)
        request += b"end\n"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(os.path.join(self.state_dir, "stanzad.sock"))
            s.sendall(request)
            response = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                response += chunk
        header, _, body = response.partition(b"\n")
        return int(header.split()[1]), body.decode()

    def join_token(self, ttl_s=None):
        """A single-use join token made on this node (a cluster member)."""
        args = ["cluster", "token"] + ([f"--ttl={ttl_s}"] if ttl_s else [])
        code, out = self.admin(*args)
        match = re.search(r"--token=(\S+)", out)
        assert code == 0 and match, out
        return match.group(1)

    def join(self, member, via_address=None):
        """Joins this node to `member`'s cluster (with a token made there); (code, output)."""
        address = via_address or f"{member.ip}:{member.cluster_port}"
        return self.admin("cluster", "join", address, f"--token={member.join_token()}")

    def secrets(self):
        code, out = self.admin("callbridge", "list")
        assert code == 0, out
        return dict(re.findall(r"Callbridge : (\S+)\nDomain     : \S+\nSecret     : (\S+)", out))


class RawComponent:
    """A bare XEP-0114 component: sends what it is told, records what it gets."""

    def __init__(self, port, name, secret=None, domain=DOMAIN, ip="127.0.0.1", tls=False,
                 source=None):
        """`source`: the local IP to connect from (any of 127.0.0.0/8 on loopback)."""
        self.address = f"{name}.{domain}"
        self.secret = secret
        self.sock = socket.create_connection((ip, port), timeout=10,
                                             source_address=(source, 0) if source else None)
        if tls:  # stanzad --component_tls: TLS from the first byte (lab certificates: no check)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            self.sock = context.wrap_socket(self.sock, server_hostname=domain)
        self.received = b""
        self.stream_id = None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def read_until(self, needle, timeout=10.0):
        if isinstance(needle, str):
            needle = needle.encode()
        deadline = time.monotonic() + patient(timeout)
        while needle not in self.received:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{self.address}: no {needle!r} in {self.received[-500:]!r}")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise ConnectionError(f"{self.address}: closed; got {self.received[-500:]!r}")
            self.received += chunk
        return self.received

    def read_for(self, seconds):
        """Records whatever arrives within `seconds` (e.g. to see that nothing more does)."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            self.received += chunk
        return self.received

    def wait_closed(self, timeout=10.0):
        deadline = time.monotonic() + patient(timeout)
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return True
            if not chunk:
                return True
            self.received += chunk
        return False

    def open_stream(self, namespace="jabber:component:accept", to=None):
        self.send("<?xml version='1.0'?><stream:stream xmlns='%s' "
                  "xmlns:stream='http://etherx.jabber.org/streams' to='%s'>"
                  % (namespace, to or self.address))
        self.read_until(">")
        match = re.search(rb"id='([^']+)'", self.received)
        if match:
            self.stream_id = match.group(1).decode()
        return self

    def handshake(self, secret=None, expect_ok=True):
        digest = hashlib.sha1((self.stream_id + (secret or self.secret)).encode()).hexdigest()
        self.send(f"<handshake>{digest}</handshake>")
        if expect_ok:
            self.read_until("<handshake/>")
        return self

    def connect(self):
        return self.open_stream().handshake()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class TlsClient(RawComponent):
    """A bare XMPP client: STARTTLS (no certificate check: lab certificates),
    SASL PLAIN, bind; then sends what it is told and records what it gets."""

    HEADER = ("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
              "to='%s' version='1.0'>")

    def __init__(self, port, user, password, resource, domain=DOMAIN, ip="127.0.0.1"):
        self.address = f"{user}@{domain}/{resource}"
        self.secret = None
        self.stream_id = None
        self.received = b""
        self.sock = socket.create_connection((ip, port), timeout=10)
        self.send(self.HEADER % domain + "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.read_until("<proceed")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.sock = context.wrap_socket(self.sock, server_hostname=domain)
        self.received = b""
        self.send(self.HEADER % domain)
        self.read_until("</stream:features>")
        plain = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
        self.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{plain}</auth>")
        self.read_until("<success")
        self.received = b""
        self.send(self.HEADER % domain)
        self.read_until("</stream:features>")
        self.send("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                  f"<resource>{resource}</resource></bind></iq>")
        self.read_until("</iq>")
        self.received = b""
