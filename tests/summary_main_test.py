"""The summary binary as a user runs it: flags in, table or JSON out, clear errors."""

import json
import os
import subprocess
import sys

from absl.testing import absltest


def _summary(*args: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, "-m", "tf_resnet.summary", *args],
                        capture_output=True, text=True, env=env, timeout=300,
                        check=False)


class SummaryMainTest(absltest.TestCase):

  def test_json_is_one_line_with_numbers(self):
    result = _summary("--depth=34", "--format=json")
    self.assertEqual(result.returncode, 0, result.stderr)
    lines = result.stdout.strip().splitlines()
    self.assertLen(lines, 1)
    record = json.loads(lines[0])
    self.assertEqual(record["params"], 21_797_672)
    self.assertEqual(record["multiply_adds"], 3_663_761_408)
    self.assertEqual(record["paper_multiply_adds"], 3.6e9)

  def test_cifar_table(self):
    result = _summary("--dataset=cifar10", "--depth=110")
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertIn("ResNet-110 (A), cifar family, 32x32 input", result.stdout)
    self.assertIn("[3x3, 64; 3x3, 64] x 18", result.stdout)
    self.assertIn("1,727,962", result.stdout)
    self.assertIn("paper: 1.70M (ok)", result.stdout)

  def test_unknown_imagenet_depth_lists_the_valid_ones(self):
    result = _summary("--depth=42")
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("no ImageNet network has depth 42; valid depths are 18, "
                  "34, 50, 101, 152", result.stderr)
    self.assertEqual(result.stdout, "")

  def test_cifar_depth_must_be_6n_plus_2(self):
    result = _summary("--dataset=cifar10", "--depth=21")
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("CIFAR-10 networks have depth 6n+2", result.stderr)

  def test_plain_with_a_shortcut_is_refused(self):
    result = _summary("--model=plain", "--shortcut=B")
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("plain networks have no shortcuts", result.stderr)


if __name__ == "__main__":
  absltest.main()
