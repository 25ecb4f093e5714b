"""The profile summary says which kernels ran, checked on real traces."""

import os
import tempfile

from tf_resnet import startup

startup.use_onednn()  # As the benchmarks do; before TensorFlow loads.

# pylint: disable=g-import-not-at-top,g-bad-import-order
from absl.testing import absltest
import tensorflow as tf

import profiles
from tf_resnet.testing import cpu
# pylint: enable=g-import-not-at-top,g-bad-import-order


def _trace_conv_step(dtype: tf.DType, logdir: str) -> None:
  """Profiles a 3x3 convolution's forward and backward pass in `dtype`."""
  images = tf.cast(tf.random.normal([4, 16, 16, 8], seed=1), dtype)
  kernel = tf.Variable(tf.random.normal([3, 3, 8, 8], seed=2))

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      outputs = tf.nn.conv2d(images, tf.cast(kernel, dtype), 1, "SAME")
      loss = tf.reduce_sum(tf.cast(outputs, tf.float32))
    return tape.gradient(loss, kernel)

  step()  # Traced and compiled outside the profile.
  tf.profiler.experimental.start(logdir)
  step().numpy()
  tf.profiler.experimental.stop()


class OneDnnShareTest(absltest.TestCase):

  def test_counts_only_the_named_kind(self):
    by_type = {"_MklNativeConv2D": 30.0, "Conv2DBackpropInput": 10.0,
               "_MklNativeConv2DBackpropFilter": 60.0, "_MklNativeRelu": 99.0,
               "FusedBatchNormV3": 5.0}
    self.assertEqual(profiles.onednn_share(by_type), 0.9)
    self.assertEqual(profiles.onednn_share(by_type, "FusedBatchNorm"), 0.0)
    self.assertEqual(profiles.onednn_share({}), 0.0)

  @absltest.skipUnless(
      os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1"
      and tf.sysconfig.get_build_info().get("is_mkl_enabled", True)
      and os.path.exists("/proc/cpuinfo"), "needs oneDNN on x86 Linux")
  def test_a_traced_step_names_the_kernels_that_ran(self):
    # float32 convolutions reach oneDNN everywhere it is on; bfloat16 ones
    # only where TensorFlow's rule (AVX-512 or AVX-NE-CONVERT) allows.
    for dtype, expected in ((tf.float32, 1.0),
                            (tf.bfloat16,
                             1.0 if cpu.has_onednn_bfloat16() else 0.0)):
      logdir = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
      _trace_conv_step(dtype, logdir)
      by_type, by_part = profiles.profile_summary(logdir)
      self.assertEqual(profiles.onednn_share(by_type), expected,
                       (dtype, by_type))
      self.assertIn("convolution backward", by_part)


if __name__ == "__main__":
  absltest.main()
