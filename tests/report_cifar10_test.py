"""reproduction/report_cifar10.sh: checks every run before it writes."""

import os
import subprocess
import tempfile

from absl.testing import absltest

_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
_SCRIPT = os.path.join(_ROOT, "reproduction", "report_cifar10.sh")


class ReportTest(absltest.TestCase):

  def test_a_run_without_its_log_stops_it_before_anything_is_written(self):
    out = tempfile.mkdtemp()
    dest = os.path.join(tempfile.mkdtemp(), "16k")
    # resnet20 is complete; plain20 has a config but never wrote metrics.
    for net, files in (("resnet20", ("config.json", "metrics.jsonl")),
                       ("plain20", ("config.json",))):
      os.makedirs(os.path.join(out, net))
      for name in files:
        with open(os.path.join(out, net, name), "w") as f:
          f.write("{}\n")
    result = subprocess.run(
        ["bash", _SCRIPT, out, "resnet20", "plain20"], capture_output=True,
        text=True, env={**os.environ, "DEST": dest, "PYTHON": "false"},
        check=False)
    self.assertEqual(result.returncode, 2, result.stderr)
    self.assertIn(f"{out}/plain20 has no metrics.jsonl", result.stderr)
    self.assertFalse(os.path.exists(dest))  # Not even the folder.

  def test_usage(self):
    result = subprocess.run(["bash", _SCRIPT], capture_output=True, text=True,
                            check=False)
    self.assertEqual(result.returncode, 2)
    self.assertIn("usage:", result.stderr)


if __name__ == "__main__":
  absltest.main()
