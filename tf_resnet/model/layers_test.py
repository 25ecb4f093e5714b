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

  def test_bfloat16_pointwise_is_the_same_convolution(self):
    # bfloat16 1x1 stride-1 convolutions run as a matrix product: outputs
    # and both gradients must be the convolution's, at any batch and size.
    conv = layers.Conv2D(8, 6, 1, use_bias=True)
    conv.bias.assign(tf.range(6, dtype=tf.float32) / 10)
    images = tf.cast(tf.random.normal([3, 5, 7, 8], seed=5), tf.bfloat16)
    weights = tf.cast(tf.random.normal([3, 5, 7, 6], seed=6), tf.float32)

    def loss_and_grads(fn, x):
      with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.cast(fn(x), tf.float32) * weights)
      return tape.gradient(loss, [x, conv.kernel])

    def reference(x):  # float32 arithmetic on the same bfloat16 values
      kernel = tf.cast(tf.cast(conv.kernel, tf.bfloat16), tf.float32)
      return tf.nn.conv2d(tf.cast(x, tf.float32), kernel, 1, "VALID") + conv.bias

    dynamic = tf.function(conv, input_signature=[
        tf.TensorSpec([None, None, None, 8], tf.bfloat16)])
    for fn in (conv, dynamic):
      outputs = fn(images)
      self.assertEqual(outputs.dtype, tf.bfloat16)
      self.assertAllClose(tf.cast(outputs, tf.float32), reference(images),
                          rtol=1e-2, atol=1e-2)
    got = loss_and_grads(conv, images)
    expected = loss_and_grads(reference, images)
    self.assertAllClose(tf.cast(got[0], tf.float32), expected[0],
                        rtol=1e-2, atol=2e-2)
    self.assertAllClose(got[1], expected[1], rtol=1e-2, atol=5e-2)
    self.assertEqual(dynamic(images[:1, :2]).shape, [1, 2, 7, 6])

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


def _reference_max_pool(image: np.ndarray, window: int, stride: int,
                        pad: int, ceil_mode: bool) -> np.ndarray:
  """Max pooling of one [H, W] map, written after Caffe's PoolingLayer.

  Output size `round((n + 2 pad - k) / s) + 1` with ceil (Caffe) or floor
  (PyTorch's default); with padding, a last window starting in the padding
  is dropped (Caffe's Reshape); each window is clipped to the image
  (Forward_cpu), so padding never contributes a value.
  """
  def outputs(n):
    rounding = math.ceil if ceil_mode else math.floor
    count = int(rounding((n + 2 * pad - window) / stride)) + 1
    if pad and (count - 1) * stride >= n + pad:
      count -= 1
    return count

  height, width = image.shape
  result = np.empty((outputs(height), outputs(width)), image.dtype)
  for i in range(result.shape[0]):
    for j in range(result.shape[1]):
      top, left = i * stride - pad, j * stride - pad
      rows = slice(max(top, 0), min(top + window, height))
      cols = slice(max(left, 0), min(left + window, width))
      result[i, j] = image[rows, cols].max()
  return result


class PoolTest(tf.test.TestCase, parameterized.TestCase):

  # Odd sizes are where TensorFlow's SAME differs from Caffe: it pads a row
  # and a column on the top/left too, and shifts the grid.
  @parameterized.parameters((112, 112), (113, 113), (7, 8), (9, 5), (4, 4),
                            (3, 6), (2, 3), (2, 2))
  def test_ceil_mode_is_caffes(self, height, width):
    rng = np.random.default_rng(height * 100 + width)
    # Negative values too: a zero-padded pool would be caught.
    image = rng.normal(size=(height, width)).astype(np.float32)
    pool = layers.MaxPool(3, 2)
    expected = _reference_max_pool(image, 3, 2, pad=0, ceil_mode=True)
    x = tf.constant(image[None, :, :, None])
    self.assertAllEqual(pool(x)[0, :, :, 0], expected)
    # Unknown sizes (as in an export's signature) take the same grid.
    dynamic = tf.function(pool, input_signature=[
        tf.TensorSpec([None, None, None, 1], tf.float32)])
    self.assertAllEqual(dynamic(x)[0, :, :, 0], expected)

  def test_too_small_for_one_window_is_an_error_not_a_crash(self):
    # Caffe's ceil mode gives a 1x1 input no 3x3/2 window; oneDNN's max pool
    # would kill the process (SIGFPE) on the empty output.
    pool = layers.MaxPool(3, 2)
    self.assertEqual(pool.min_input_size(), 2)
    with self.assertRaisesRegex(ValueError, "at least 2x2 pixels, not 1x5"):
      pool(tf.zeros([1, 1, 5, 1]))
    dynamic = tf.function(pool, input_signature=[
        tf.TensorSpec([None, None, None, 1], tf.float32)])
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                "at least 2x2 pixels"):
      dynamic(tf.zeros([1, 5, 1, 1]))
    self.assertEqual(dynamic(tf.ones([1, 2, 2, 1])).shape, [1, 1, 1, 1])
    # Padded symmetrically, one pixel is a window (torchvision's grid).
    symmetric = layers.MaxPool(3, 2, padding="symmetric")
    self.assertEqual(symmetric.min_input_size(), 1)
    self.assertAllEqual(symmetric(-tf.ones([1, 1, 1, 1])), [[[[-1.0]]]])

  def test_ceil_mode_sizes(self):
    pool = layers.MaxPool(3, 2)
    for size, expected in ((112, 56), (113, 56), (114, 57), (115, 57),
                           (5, 2), (4, 2), (3, 1)):
      self.assertEqual(pool(tf.zeros([1, size, size, 1])).shape[1], expected)
      self.assertEqual(layers.ceil_mode_output_size(size, 3, 2), expected)

  @parameterized.parameters((112, 112), (113, 113), (7, 8), (9, 5), (2, 3))
  def test_symmetric_is_floor_mode_with_padding_one(self, height, width):
    # torchvision's MaxPool2d(3, 2, padding=1): Caffe's loops, floor mode.
    rng = np.random.default_rng(height * 100 + width)
    image = rng.normal(size=(height, width)).astype(np.float32)
    pool = layers.MaxPool(3, 2, padding="symmetric")
    expected = _reference_max_pool(image, 3, 2, pad=1, ceil_mode=False)
    x = tf.constant(image[None, :, :, None])
    self.assertAllEqual(pool(x)[0, :, :, 0], expected)
    dynamic = tf.function(pool, input_signature=[
        tf.TensorSpec([None, None, None, 1], tf.float32)])
    self.assertAllEqual(dynamic(x)[0, :, :, 0], expected)

  def test_the_two_grids_differ(self):
    # 112x112 gives 56x56 either way, but the windows start at 0 (Caffe) or
    # -1 (padding 1): a converted model needs its source's grid.
    image = tf.reshape(tf.range(16, dtype=tf.float32) * -1.0, [1, 4, 4, 1])
    self.assertAllEqual(layers.MaxPool(3, 2)(image)[0, :, :, 0],
                        [[0.0, -2.0], [-8.0, -10.0]])
    self.assertAllEqual(
        layers.MaxPool(3, 2, padding="symmetric")(image)[0, :, :, 0],
        [[0.0, -1.0], [-4.0, -5.0]])

  @parameterized.parameters(tf.float16, tf.bfloat16)
  def test_reduced_precision(self, dtype):
    image = tf.random.normal([1, 9, 9, 2])
    for padding in layers.POOL_PADDINGS:
      pool = layers.MaxPool(3, 2, padding=padding)
      self.assertAllEqual(pool(tf.cast(image, dtype)),
                          tf.cast(pool(image), dtype))

  def test_gradient_reaches_only_the_maxima(self):
    image = tf.random.normal([1, 7, 7, 1])
    pool = layers.MaxPool(3, 2)
    with tf.GradientTape() as tape:
      tape.watch(image)
      total = tf.reduce_sum(pool(image))
    gradient = tape.gradient(total, image)
    self.assertEqual(float(tf.reduce_sum(gradient)), 9.0)  # 3x3 windows.

  def test_bad_padding(self):
    with self.assertRaisesRegex(ValueError, "`padding` must be one of"):
      layers.MaxPool(3, 2, padding="SAME")

  def test_global_average_pool(self):
    x = tf.random.normal([2, 3, 5, 4])
    self.assertAllClose(layers.GlobalAveragePool()(x),
                        x.numpy().mean(axis=(1, 2)), atol=1e-6)


if __name__ == "__main__":
  tf.test.main()
