"""The compute-type check agrees with the CPU's own flags."""

import platform
from unittest import mock

from absl.testing import absltest
import tensorflow as tf

from tf_resnet import hardware
from tf_resnet.testing import cpu


class OneDnnTest(absltest.TestCase):

  def test_float32_is_always_taken(self):
    self.assertIn(hardware.onednn_supports(tf.float32), (True, None))

  @absltest.skipUnless(platform.machine() == "x86_64" and
                       platform.system() == "Linux", "reads /proc/cpuinfo")
  def test_bfloat16_needs_avx512_or_avx_ne_convert(self):
    # TensorFlow's rule (mkl_graph_util's IsBF16SupportedByOneDNNOnThisCPU),
    # checked against the flags the kernel reports for this CPU.
    supported = hardware.onednn_supports(tf.bfloat16)
    if supported is None:
      self.skipTest("this TensorFlow build does not say")
    self.assertEqual(supported, cpu.has_onednn_bfloat16())


class WarningTest(absltest.TestCase):

  def test_float32_never_warns(self):
    with mock.patch.object(hardware, "onednn_supports", return_value=False):
      self.assertIsNone(hardware.slow_compute_warning(tf.float32, "x"))

  def test_warns_when_onednn_refuses_the_type(self):
    with mock.patch.object(hardware, "onednn_supports", return_value=False):
      message = hardware.slow_compute_warning(
          tf.bfloat16, "--precision=mixed_bfloat16")
    self.assertStartsWith(message, "--precision=mixed_bfloat16: ")
    self.assertIn("bfloat16", message)
    self.assertIn("float32 is the fast choice", message)

  def test_silent_when_supported_unknown_or_on_a_gpu(self):
    for supported in (True, None):
      with mock.patch.object(hardware, "onednn_supports",
                             return_value=supported):
        self.assertIsNone(hardware.slow_compute_warning(tf.bfloat16, "x"))
    with mock.patch.object(hardware, "onednn_supports", return_value=False), \
        mock.patch.object(tf.config, "list_physical_devices",
                          return_value=["GPU:0"]):
      self.assertIsNone(hardware.slow_compute_warning(tf.bfloat16, "x"))


if __name__ == "__main__":
  absltest.main()
