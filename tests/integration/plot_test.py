"""bench/plot.py draws its charts (gnuplot) from stanza-bench JSON lines."""
import json
import os
import subprocess
import sys
import tempfile
import unittest

PLOT = os.path.join(os.path.dirname(__file__), "../../bench/plot.py")


class PlotTest(unittest.TestCase):
    def test_throughput_and_latency_charts(self):
        with tempfile.TemporaryDirectory() as work:
            results = os.path.join(work, "results.jsonl")
            with open(results, "w") as f:
                for label, rate in (("stanzad", 1.5e6), ("tcp-relay", 2.0e6), ("prosody", 7e3)):
                    for bridges in (20, 200):
                        f.write(json.dumps({"mode": "throughput", "label": label,
                                            "bridges": bridges, "stanzas_per_s": rate}) + "\n")
                for label in ("stanzad", "tcp-relay"):
                    f.write(json.dumps({"mode": "latency", "label": label, "bridges": 20,
                                        "rate": 500000, "p50_us": 300, "p99_us": 2000,
                                        "p999_us": 9000}) + "\n")
                f.write("stanza-bench: 20 bridges ready; running\n")  # non-JSON lines are skipped
            out = os.path.join(work, "img")
            subprocess.run([sys.executable, PLOT, f"--out_dir={out}", results], check=True,
                           timeout=120)
            for name in ("throughput.png", "latency.png"):
                with open(os.path.join(out, name), "rb") as png:
                    self.assertEqual(png.read(8), b"\x89PNG\r\n\x1a\n", name)


if __name__ == "__main__":
    unittest.main()
