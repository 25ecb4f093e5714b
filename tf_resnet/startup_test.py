"""The binaries' start-up: TensorFlow's C++ logs silenced unless asked for."""

import os
from unittest import mock

from absl.testing import absltest

from tf_resnet import startup
from tf_resnet.testing import processes


class QuietTest(absltest.TestCase):

  def test_silences_unless_the_user_asked(self):
    with mock.patch.dict(os.environ, clear=True):
      self.assertTrue(startup.quiet_tensorflow_logs(["train", "--depth=20"]))
      self.assertEqual(os.environ["TF_CPP_MIN_LOG_LEVEL"], "3")
    for argv in (["t", "--verbosity=1"], ["t", "-v", "1"], ["t", "-v=0"],
                 ["t", "--verbosity", "0"]):
      with mock.patch.dict(os.environ, clear=True):
        self.assertFalse(startup.quiet_tensorflow_logs(argv), argv)
        self.assertNotIn("TF_CPP_MIN_LOG_LEVEL", os.environ)
    with mock.patch.dict(os.environ, {"TF_CPP_MIN_LOG_LEVEL": "0"},
                         clear=True):
      self.assertFalse(startup.quiet_tensorflow_logs(["t"]))
      self.assertEqual(os.environ["TF_CPP_MIN_LOG_LEVEL"], "0")

  def test_onednn_on_x86_64_unless_the_user_chose(self):
    with mock.patch.dict(os.environ, clear=True):
      self.assertTrue(startup.use_onednn("x86_64"))
      self.assertEqual(os.environ["TF_ENABLE_ONEDNN_OPTS"], "1")
    with mock.patch.dict(os.environ, clear=True):
      self.assertFalse(startup.use_onednn("aarch64"))
      self.assertNotIn("TF_ENABLE_ONEDNN_OPTS", os.environ)
    with mock.patch.dict(os.environ, {"TF_ENABLE_ONEDNN_OPTS": "0"},
                         clear=True):
      self.assertFalse(startup.use_onednn("x86_64"))
      self.assertEqual(os.environ["TF_ENABLE_ONEDNN_OPTS"], "0")

  def test_prepare_does_both(self):
    with mock.patch.dict(os.environ, clear=True), \
         mock.patch("platform.machine", return_value="x86_64"):
      startup.prepare_tensorflow(["train"])
      self.assertEqual(os.environ["TF_CPP_MIN_LOG_LEVEL"], "3")
      self.assertEqual(os.environ["TF_ENABLE_ONEDNN_OPTS"], "1")

  def test_a_binary_prints_no_tensorflow_errors_on_a_cpu_machine(self):
    env = {k: v for k, v in processes.env().items()
           if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = processes.run("tf_resnet.summary", "--depth=18",
                          "--format=json", env=env)
    self.assertEqual(quiet.returncode, 0, quiet.stderr)
    self.assertNotRegex(quiet.stderr, r"(?m)^E0000|cuInit")
    loud = processes.run("tf_resnet.summary", "--depth=18", "--format=json",
                         "--verbosity=0", env=env)
    self.assertEqual(loud.returncode, 0, loud.stderr)
    if "cuInit" not in loud.stderr:
      self.skipTest("this TensorFlow logs no cuInit error here: nothing to "
                    "silence")


if __name__ == "__main__":
  absltest.main()
