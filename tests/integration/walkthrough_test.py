"""scripts/walkthrough.sh walks docs/operating.md through on three loopback nodes
and writes the transcript kept as docs/walkthrough.md. This runs it from a fresh
state and checks that it completes, that what the guide promises shows in the
output, and that the checked-in transcript runs the same commands (regenerate it
with `scripts/walkthrough.sh docs/walkthrough.md` when this says it drifted).

Run: STANZAD_BIN_DIR=build/cmd /usr/bin/python3 tests/integration/walkthrough_test.py -v
"""
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from stanzad_harness import BIN_DIR, free_port  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
SCRIPT = os.path.join(ROOT, "scripts/walkthrough.sh")
CHECKED_IN = os.path.join(ROOT, "docs/walkthrough.md")


def commands(transcript):
    """The commands a transcript ran, with what differs between runs (ports,
    tokens) made the same."""
    lines = [line for line in transcript.splitlines()
             if re.match(r"^(node\d\$ |stanzad )", line)]
    return [re.sub(r"--token=\S+", "--token=TOKEN", re.sub(r"\b\d{5}\b", "PORT", line))
            for line in lines]


class WalkthroughTest(unittest.TestCase):
    def test_the_guide_walks_through_as_written(self):
        out_dir = tempfile.mkdtemp(prefix="stanzad-walk-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", out_dir], check=False))
        output = os.path.join(out_dir, "walkthrough.md")
        env = dict(os.environ, STANZAD_BUILD_DIR=os.path.abspath(os.path.join(BIN_DIR, "..")),
                   WALK_COMPONENT_PORT=str(free_port()), WALK_C2S_PORT=str(free_port()),
                   WALK_CLUSTER_PORT=str(free_port()), WALK_DATA_PORT=str(free_port()),
                   WALK_METRICS_PORT=str(free_port()))
        started = time.monotonic()
        result = subprocess.run([SCRIPT, output], env=env, capture_output=True, text=True,
                                timeout=120)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertLess(time.monotonic() - started, 60)
        with open(output) as f:
            text = f.read()
        # What the guide says each step does.
        self.assertEqual(text.count("Joined the cluster through 127.0.0.1:"), 2)
        self.assertEqual(text.count("State: LEADER"), 1)
        self.assertEqual(text.count("State: FOLLOWER"), 2)
        self.assertEqual(len(re.findall(r"  id=\d+  connected", text)), 6)  # every link up
        self.assertEqual(text.count("Certificate accepted for example.com"), 3)
        self.assertIn("(clients, STARTTLS: refused, no certificate)", text)
        self.assertRegex(text, r"Listening on  : 127\.0\.0\.2:\d+ \(call bridges\), "
                               r"127\.0\.0\.2:\d+ \(clients, STARTTLS\), "
                               r"127\.0\.0\.2:\d+ \(cluster data links\)\n")
        self.assertRegex(text, r"node2\$ stanzactl xmpp callbridge list\n\*\*\*\n"
                               r"Callbridge : cb1\n.*\n.*\n\*\*\*\nCallbridge : cb2\n")
        self.assertNotIn("/tmp/stanzad-walkthrough-", text)  # scratch paths shown as $WORK
        # The checked-in transcript is this script's output, not an older one's.
        with open(CHECKED_IN) as f:
            self.assertEqual(commands(f.read()), commands(text))


if __name__ == "__main__":
    unittest.main()
