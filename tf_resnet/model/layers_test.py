"""Tests of the layers against hand computations and reference formulas."""

import math

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_resnet.model import layers


def _function(module, **kwargs):
  return tf.function(lambda x: module(x, **kwargs))


class HeNormalTest(tf.test.TestCase):

  def test_standard_deviation_is_sqrt_two_over_fan_in(self):
    conv = layers.Conv2D(256, 256, 3)
    fan_in = 3 * 3 * 256
    values = conv.kernel.numpy()
    # 590k samples: the sample std is within 0.5% of the true one.
    self.assertAllClose(values.std(), math.sqrt(2.0 / fan_in), rtol=0.005)
    self.assertAllClose(values.mean(), 0.0, atol=0.005 * values.std())

  def test_linear_uses_its_fan_in(self):
    linear = layers.Linear(2048, 1000)
    self.assertAllClose(linear.kernel.numpy().std(), math.sqrt(2.0 / 2048),
                        rtol=0.01)
    self.assertAllEqual(linear.bias.numpy(), np.zeros(1000))


class Conv2DTest(tf.test.TestCase, parameterized.TestCase):

  def _ones_conv(self, kernel_size, stride, padding="SAME"):
    conv = layers.Conv2D(1, 1, kernel_size, stride=stride, padding=padding)
    conv.kernel.assign(tf.ones_like(conv.kernel))
    return conv

  def test_stride_two_pads_symmetrically_like_caffe(self):
    # 3x3/2 over a 4x4 image of ones with one pixel of zeros on every side:
    # output (0, 0) covers rows and columns -1..1 (4 ones), output (1, 1)
    # covers 1..3 (9 ones). TensorFlow's SAME would cover 0..2 (9 ones) first.
    conv = self._ones_conv(3, 2)
    outputs = conv(tf.ones([1, 4, 4, 1]))
    self.assertAllEqual(outputs[0, :, :, 0], [[4.0, 6.0], [6.0, 9.0]])

  def test_stride_one_same_keeps_size_and_pads_one(self):
    conv = self._ones_conv(3, 1)
    outputs = conv(tf.ones([1, 3, 3, 1]))
    self.assertAllEqual(outputs[0, :, :, 0],
                        [[4.0, 6.0, 4.0], [6.0, 9.0, 6.0], [4.0, 6.0, 4.0]])

  def test_valid_has_no_padding(self):
    conv = self._ones_conv(3, 1, padding="VALID")
    self.assertAllEqual(conv(tf.ones([1, 5, 4, 1])).shape, [1, 3, 2, 1])

  @parameterized.parameters(
      (224, 7, 2, 112),  # The ImageNet stem.
      (56, 3, 2, 28),
      (56, 1, 2, 28),  # A strided 1x1 (projection or bottleneck).
      (32, 3, 1, 32),
      (7, 3, 2, 4),  # Odd sizes round up, as in Caffe.
  )
  def test_output_size(self, size, kernel, stride, expected):
    conv = layers.Conv2D(2, 3, kernel, stride=stride)
    self.assertEqual(conv(tf.zeros([1, size, size, 2])).shape[1], expected)

  def test_matches_direct_convolution(self):
    conv = layers.Conv2D(3, 4, 3, stride=2, use_bias=True)
    conv.bias.assign([1.0, 2.0, 3.0, 4.0])
    images = tf.random.normal([2, 9, 9, 3])
    padded = np.pad(images.numpy(), [(0, 0), (1, 1), (1, 1), (0, 0)])
    kernel = conv.kernel.numpy()
    expected = np.zeros([2, 5, 5, 4])
    for i in range(5):
      for j in range(5):
        patch = padded[:, 2 * i:2 * i + 3, 2 * j:2 * j + 3, :]
        expected[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, kernel)
    expected += conv.bias.numpy()
    self.assertAllClose(conv(images), expected, atol=1e-5)

  def test_eager_equals_function(self):
    conv = layers.Conv2D(3, 5, 7, stride=2)
    images = tf.random.normal([2, 15, 13, 3])
    self.assertAllClose(conv(images), _function(conv)(images), atol=1e-6)

  def test_no_bias_by_default(self):
    conv = layers.Conv2D(3, 5, 3, name="conv")
    self.assertIsNone(conv.bias)
    self.assertEqual([v.name for v in conv.trainable_variables],
                     ["conv/kernel:0"])

  def test_bad_arguments_name_the_argument(self):
    with self.assertRaisesRegex(ValueError, "`kernel_size` must be a positive"):
      layers.Conv2D(3, 5, 0)
    with self.assertRaisesRegex(ValueError, "`padding` must be one of"):
      layers.Conv2D(3, 5, 3, padding="same")


class BatchNormTest(tf.test.TestCase):

  def _reference(self, x, scale, offset, mean, variance, epsilon):
    return (x - mean) / np.sqrt(variance + epsilon) * scale + offset

  def _bn(self, channels=4, **kwargs):
    bn = layers.BatchNorm(channels, **kwargs)
    bn.scale.assign(tf.random.uniform([channels], 0.5, 1.5))
    bn.offset.assign(tf.random.normal([channels]))
    return bn

  def test_training_normalizes_with_batch_statistics(self):
    bn = self._bn()
    x = tf.random.normal([8, 5, 3, 4], mean=3.0, stddev=2.0).numpy()
    mean = x.mean(axis=(0, 1, 2))
    variance = x.var(axis=(0, 1, 2))  # Biased, as in the BN paper.
    expected = self._reference(x, bn.scale.numpy(), bn.offset.numpy(), mean,
                               variance, 1e-5)
    self.assertAllClose(bn(x, is_training=True), expected, atol=1e-4)

  def test_training_moves_statistics_towards_the_unbiased_batch_ones(self):
    bn = self._bn(decay=0.9)
    bn.moving_mean.assign([1.0, 2.0, 3.0, 4.0])
    bn.moving_variance.assign([2.0, 2.0, 2.0, 2.0])
    x = tf.random.normal([2, 3, 3, 4]).numpy()
    n = x.size // 4
    bn(x, is_training=True)
    mean = x.mean(axis=(0, 1, 2))
    unbiased = x.var(axis=(0, 1, 2)) * n / (n - 1)
    self.assertAllClose(bn.moving_mean, 0.9 * np.arange(1, 5) + 0.1 * mean,
                        atol=1e-5)
    self.assertAllClose(bn.moving_variance, 0.9 * 2.0 + 0.1 * unbiased,
                        atol=1e-5)

  def test_inference_uses_moving_statistics_and_changes_nothing(self):
    bn = self._bn(epsilon=1e-3)
    bn.moving_mean.assign([0.5, -1.0, 0.0, 2.0])
    bn.moving_variance.assign([1.0, 4.0, 0.25, 9.0])
    x = tf.random.normal([3, 2, 2, 4]).numpy()
    expected = self._reference(x, bn.scale.numpy(), bn.offset.numpy(),
                               bn.moving_mean.numpy(),
                               bn.moving_variance.numpy(), 1e-3)
    self.assertAllClose(bn(x, is_training=False), expected, atol=1e-5)
    self.assertAllClose(bn.moving_mean, [0.5, -1.0, 0.0, 2.0])

  def test_eager_equals_function(self):
    bn = self._bn()
    x = tf.random.normal([4, 3, 3, 4])
    for is_training in (True, False):
      self.assertAllClose(bn(x, is_training=is_training),
                          _function(bn, is_training=is_training)(x), atol=1e-5)

  def test_only_scale_and_offset_are_trainable(self):
    bn = layers.BatchNorm(3, name="bn")
    self.assertEqual(sorted(v.name for v in bn.trainable_variables),
                     ["bn/offset:0", "bn/scale:0"])
    self.assertLen(bn.variables, 4)
    self.assertEqual(bn.moving_mean.synchronization,
                     tf.VariableSynchronization.ON_READ)

  def test_bad_decay(self):
    with self.assertRaisesRegex(ValueError, r"`decay` must be in \[0, 1\)"):
      layers.BatchNorm(3, decay=1.0)


class LinearTest(tf.test.TestCase):

  def test_is_an_affine_map(self):
    linear = layers.Linear(5, 3)
    linear.bias.assign([1.0, -1.0, 0.5])
    x = tf.random.normal([4, 5])
    self.assertAllClose(linear(x), x.numpy() @ linear.kernel.numpy()
                        + [1.0, -1.0, 0.5], atol=1e-5)
    self.assertAllClose(linear(x), _function(linear)(x), atol=1e-6)


class PoolTest(tf.test.TestCase):

  def test_max_pool_is_caffe_ceil_mode(self):
    # 3x3/2 over 4x4: windows start at 0 and 2; the second hangs over the
    # bottom/right edge, as Caffe's ceil-mode pooling does.
    pool = layers.MaxPool(3, 2)
    image = tf.reshape(tf.range(16, dtype=tf.float32) * -1.0, [1, 4, 4, 1])
    self.assertAllEqual(pool(image)[0, :, :, 0], [[0.0, -2.0], [-8.0, -10.0]])
    self.assertEqual(pool(tf.zeros([1, 112, 112, 1])).shape[1], 56)

  def test_global_average_pool(self):
    x = tf.random.normal([2, 3, 5, 4])
    self.assertAllClose(layers.GlobalAveragePool()(x),
                        x.numpy().mean(axis=(1, 2)), atol=1e-6)


if __name__ == "__main__":
  tf.test.main()
