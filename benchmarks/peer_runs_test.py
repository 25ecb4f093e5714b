"""Child runs: their records, their own peak memory, their failures; medians."""

import json
import os
import subprocess
import sys

from absl.testing import absltest

import peer_runs

# A child that touches `mib` MiB, then prints some noise and its record.
_CHILD = """
import json, sys
block = bytearray(int(sys.argv[1]) * 2**20)
for i in range(0, len(block), 4096):
  block[i] = 1
print("warming up"); print("{not the record")
print(json.dumps({"images_per_sec": float(sys.argv[2])}))
"""


class RunJsonTest(absltest.TestCase):

  def test_record_and_the_childs_own_peak_memory(self):
    # From a small parent, as versus_torch.py is: a child's high-water mark
    # starts at its parent's size (this test process may hold TensorFlow).
    parent = ("import json, sys, peer_runs\n"
              "print(json.dumps(peer_runs.run_json("
              "[sys.executable, '-c', sys.argv[1]] + sys.argv[2:], 'child')))")

    def run(*args):
      out = subprocess.run([sys.executable, "-c", parent, _CHILD, *args],
                           check=True, capture_output=True, text=True,
                           cwd=os.path.dirname(os.path.abspath(__file__)))
      return json.loads(out.stdout)

    record, small = run("8", "1.5")
    self.assertEqual(record, {"images_per_sec": 1.5})
    _, large = run("300", "2")
    # The 292 MiB more that the second child touched, not this process's.
    self.assertBetween(large - small, 280, 320)

  def test_failure_names_the_run_and_shows_its_output(self):
    with self.assertRaisesRegex(RuntimeError,
                                r"(?s)the peer failed \(exit 3\).*no torch"):
      peer_runs.run_json([sys.executable, "-c",
                          "import sys; print('no torch'); sys.exit(3)"],
                         "the peer")
    with self.assertRaisesRegex(RuntimeError, "quiet printed no JSON record"):
      peer_runs.run_json([sys.executable, "-c", "print('hello')"], "quiet")


class SummarizeTest(absltest.TestCase):

  def test_medians_of_per_round_ratios(self):
    def ours(rate, rss):
      return {"network": "ResNet-20 (A)", "batch_size": 128,
              "precision": "mixed_bfloat16", "cpu": "x", "cores": 2,
              "tensorflow": "2.21.0", "images_per_sec": rate,
              "peak_fraction": 0.2, "peak_conv_gflops_per_sec": 2000.0,
              "peak_rss_mib": rss, "peak_rss_mib_at_start": 600,
              "others_cores": 0.0}

    peer = lambda rate: {"framework": "torch", "images_per_sec": rate}
    rounds = [peer_runs.Round(ours(100.0, 900), peer(50.0), 600.0),   # 2.0x
              peer_runs.Round(ours(90.0, 1000), peer(100.0), 500.0),  # 0.9x
              peer_runs.Round(ours(120.0, 800), peer(100.0), 800.0)]  # 1.2x
    summary = peer_runs.summarize(rounds)
    # The median of the ratios (1.2), not the ratio of the medians (1.0).
    self.assertEqual(summary["ours_over_peer"], 1.2)
    self.assertEqual(summary["ours_images_per_sec"], 100.0)
    self.assertEqual(summary["peer_images_per_sec"], 100.0)
    self.assertEqual(summary["rss_ratio"], 1.5)  # 1.5, 2.0, 1.0
    self.assertEqual([r["ratio"] for r in summary["rounds"]], [2.0, 0.9, 1.2])


if __name__ == "__main__":
  absltest.main()
