"""The networks' building blocks as small `tf.Module`s.

Variables are created eagerly in the constructors from known shapes, so a
network can be counted, checkpointed and restored before it sees an image.
Every layer reports its call (a weight layer also its multiply-adds) to
`hooks.record`, for the analyses in `tf_resnet.analysis`.

(Over 350 lines, deliberately: five small layers whose every departure from
TensorFlow's defaults, each the paper's or Caffe's choice, is explained where
it is made; split, the reasons would be read apart from each other.)
"""

import math
from typing import Optional

import tensorflow as tf

from tf_resnet.model import hooks

_PADDINGS = ("SAME", "VALID")


def he_normal(shape: tuple[int, ...], fan_in: int,
              seed: Optional[int] = None) -> tf.Tensor:
  """He et al. (2015b) initial weights: N(0, 2 / fan_in).

  "Delving Deep into Rectifiers", which the ResNet paper cites for its
  initialisation, derives a zero-mean Gaussian with variance 2/n for layers
  followed by ReLU, with n either the fan-in (forward signal, its Eq. 10) or
  the fan-out (backward signal, Eq. 14), and shows either keeps deep nets
  trainable. We use the fan-in form: it is the default of Caffe's "msra"
  filler, the framework the paper trained in, and it keeps the forward
  responses' variance constant, which is what the plain/residual comparison
  (Fig. 7) looks at. The Gaussian is not truncated.

  Args:
    shape: shape of the weight tensor.
    fan_in: inputs feeding each output unit (kernel height x width x input
      channels for a convolution).
    seed: an optional op-level seed.

  Returns:
    A float32 tensor of initial weights.
  """
  return tf.random.normal(shape, stddev=math.sqrt(2.0 / fan_in), seed=seed)


def _num_replicas() -> int:
  return tf.distribute.get_strategy().num_replicas_in_sync


def _check_positive(**values: int) -> None:
  for name, value in values.items():
    if not isinstance(value, int) or value < 1:
      raise ValueError(f"`{name}` must be a positive integer, not {value!r}")


def _pointwise(inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
  """A 1x1 stride-1 convolution as one matrix product over all pixels.

  The same arithmetic as `tf.nn.conv2d`; its gradients are matrix products
  too. Used for bfloat16, where TensorFlow 2.21's oneDNN (3.7) takes 2-3x
  longer over a 1x1 convolution's weight gradient than over the equivalent
  matrix product on AMX (ResNet-50's bottlenecks: 24 against 63 ms for
  1024->2048 channels at 14x14, batch 32; the whole bf16 step +8%; see
  docs/performance.md, "What the bfloat16 profile showed"). Strided 1x1s stay convolutions: subsampling
  first costs more than it saves at 56x56, and in float32 the two forms are
  within noise of each other.
  """
  in_channels, out_channels = kernel.shape[2], kernel.shape[3]
  shape = tf.shape(inputs)
  outputs = tf.matmul(tf.reshape(inputs, [-1, in_channels]),
                      tf.reshape(kernel, [in_channels, out_channels]))
  return tf.reshape(outputs, tf.concat([shape[:3], [out_channels]], 0))


class Conv2D(tf.Module):
  """A 2-D convolution over NHWC images.

  `SAME` padding adds `kernel_size // 2` zeros on every side, as Caffe and the
  paper's released models do. For stride 1 this is TensorFlow's `SAME`; for
  stride 2 TensorFlow's `SAME` would pad less on the top and left, shifting
  the sampling grid by a pixel, so the padding is given explicitly.
  """

  def __init__(self,
               in_channels: int,
               out_channels: int,
               kernel_size: int,
               *,
               stride: int = 1,
               padding: str = "SAME",
               use_bias: bool = False,
               name: Optional[str] = None):
    """Constructs a convolution.

    Args:
      in_channels: channels of the input.
      out_channels: channels of the output.
      kernel_size: height and width of the (square) kernel.
      stride: step between kernel positions, in both directions.
      padding: `SAME` (symmetric `kernel_size // 2`) or `VALID` (none).
      use_bias: whether to add a bias. False where batch normalization
        follows, whose offset makes a bias redundant.
      name: module name.

    Raises:
      ValueError: for a non-positive size or an unknown padding.
    """
    super().__init__(name=name)
    _check_positive(in_channels=in_channels, out_channels=out_channels,
                    kernel_size=kernel_size, stride=stride)
    if padding not in _PADDINGS:
      raise ValueError(f"`padding` must be one of {_PADDINGS}, not {padding!r}")
    self.in_channels = in_channels
    self.out_channels = out_channels
    self.kernel_size = kernel_size
    self.stride = stride
    self.padding = padding
    shape = (kernel_size, kernel_size, in_channels, out_channels)
    with self.name_scope:
      self.kernel = tf.Variable(
          he_normal(shape, fan_in=kernel_size * kernel_size * in_channels),
          name="kernel")
      self.bias = (tf.Variable(tf.zeros([out_channels]), name="bias")
                   if use_bias else None)

  def _pad(self, inputs: tf.Tensor) -> tuple[tf.Tensor, str]:
    """The input as the convolution sees it, and TensorFlow's padding mode."""
    if self.padding == "VALID":
      return inputs, "VALID"
    if self.stride == 1 and self.kernel_size % 2 == 1:
      return inputs, "SAME"  # Symmetric already.
    pad = self.kernel_size // 2
    if pad:
      # tf.pad and VALID rather than an explicit padding list: with explicit
      # paddings TensorFlow's CPU backward pass leaves oneDNN for much slower
      # kernels (measured: 4x on ResNet-50's strided projections).
      inputs = tf.pad(inputs, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    return inputs, "VALID"

  def _as_matmul(self, dtype: tf.DType) -> bool:
    """Whether this call runs as a matrix product (see `_pointwise`)."""
    return (dtype == tf.bfloat16 and self.kernel_size == 1
            and self.stride == 1)

  @tf.Module.with_name_scope
  def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
    # Variables stay float32; under mixed precision the computation follows
    # the inputs' dtype.
    kernel = tf.cast(self.kernel, inputs.dtype)
    if self._as_matmul(inputs.dtype):
      outputs = _pointwise(inputs, kernel)
    else:
      padded, mode = self._pad(inputs)
      outputs = tf.nn.conv2d(padded, kernel, strides=self.stride,
                             padding=mode)
    if self.bias is not None:
      outputs = tf.nn.bias_add(outputs, tf.cast(self.bias, inputs.dtype))
    height, width = outputs.shape[1], outputs.shape[2]
    if height is not None and width is not None:
      hooks.record(self, "conv", outputs,
                  height * width * self.out_channels
                  * self.kernel_size**2 * self.in_channels)
    return outputs


class BatchNorm(tf.Module):
  """Batch normalization (Ioffe and Szegedy, 2015) over the channel axis.

  In training, a batch is normalized with its own mean and (biased) variance,
  and the moving statistics move towards the batch mean and the unbiased
  batch variance; in inference the moving statistics are used. The moving
  statistics are replica-local under `tf.distribute` (read as their mean
  across replicas), as in the paper's per-GPU batch normalization.

  With `cross_replica=True` the batch statistics are those of the global
  batch, summed over the replicas ("synchronized" batch normalization), so
  a step on N replicas equals the same step on one device.
  """

  def __init__(self,
               channels: int,
               *,
               decay: float = 0.9,
               epsilon: float = 1e-5,
               scale_init: float = 1.0,
               cross_replica: bool = False,
               name: Optional[str] = None):
    """Constructs a batch normalization.

    Args:
      channels: number of channels (the last axis).
      decay: how much of the moving statistics each training step keeps.
        0.9 is the value of fb.resnet.torch, which reproduced the paper.
      epsilon: added to the variance, Caffe's default.
      scale_init: initial value of the scale gamma (1; 0 for the optional
        zero-initialised last norm of a residual branch).
      cross_replica: normalize with the global batch's statistics under
        `tf.distribute` instead of each replica's own.
      name: module name.

    Raises:
      ValueError: for a non-positive channel count or a decay outside [0, 1).
    """
    super().__init__(name=name)
    _check_positive(channels=channels)
    if not 0.0 <= decay < 1.0:
      raise ValueError(f"`decay` must be in [0, 1), not {decay}")
    if epsilon <= 0.0:
      raise ValueError(f"`epsilon` must be positive, not {epsilon}")
    self.channels = channels
    self.decay = decay
    self.epsilon = epsilon
    self.cross_replica = cross_replica
    replica_local = dict(trainable=False,
                         synchronization=tf.VariableSynchronization.ON_READ,
                         aggregation=tf.VariableAggregation.MEAN)
    with self.name_scope:
      self.scale = tf.Variable(tf.fill([channels], float(scale_init)),
                               name="scale")
      self.offset = tf.Variable(tf.zeros([channels]), name="offset")
      self.moving_mean = tf.Variable(tf.zeros([channels]), name="moving_mean",
                                     **replica_local)
      self.moving_variance = tf.Variable(tf.ones([channels]),
                                         name="moving_variance",
                                         **replica_local)

  @tf.Module.with_name_scope
  def __call__(self, inputs: tf.Tensor, *, is_training: bool) -> tf.Tensor:
    if is_training:
      if self.cross_replica and _num_replicas() > 1:
        outputs, mean, variance = self._global_batch_norm(inputs)
      else:
        outputs, mean, variance = self._local_batch_norm(inputs)
      momentum = 1.0 - self.decay
      self.moving_mean.assign_sub(momentum * (self.moving_mean - mean))
      self.moving_variance.assign_sub(
          momentum * (self.moving_variance - variance))
    else:
      outputs, _, _, _, _, _ = tf.raw_ops.FusedBatchNormV3(
          x=inputs, scale=self.scale, offset=self.offset,
          mean=self.moving_mean, variance=self.moving_variance,
          epsilon=self.epsilon, data_format="NHWC", is_training=False)
    hooks.record(self, "batch_norm", outputs)
    return outputs

  def _local_batch_norm(self, inputs: tf.Tensor):
    """Normalizes with this replica's batch statistics (the fused kernel).

    Returns:
      The outputs, the batch mean, and the unbiased batch variance (for the
      moving average; the kernel normalizes with the biased one).
    """
    outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
        x=inputs, scale=self.scale, offset=self.offset,
        mean=tf.zeros([0]), variance=tf.zeros([0]),
        epsilon=self.epsilon, data_format="NHWC", is_training=True)
    return outputs, mean, variance

  def _global_batch_norm(self, inputs: tf.Tensor):
    """Normalizes with the statistics of the batch over all replicas.

    Returns:
      The outputs, the global mean, and the global unbiased variance (for the
      moving average).
    """
    x = tf.cast(inputs, tf.float32)
    count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
    sums = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM,
        [tf.reduce_sum(x, axis=(0, 1, 2)),
         tf.reduce_sum(tf.square(x), axis=(0, 1, 2)), count])
    total, squares, n = sums
    mean = total / n
    variance = tf.maximum(squares / n - tf.square(mean), 0.0)
    outputs = tf.nn.batch_normalization(x, mean, variance, self.offset,
                                        self.scale, self.epsilon)
    return (tf.cast(outputs, inputs.dtype), mean,
            variance * n / tf.maximum(n - 1.0, 1.0))


class Linear(tf.Module):
  """A fully-connected layer `y = x W + b`, He-initialised like the convolutions."""

  def __init__(self, in_features: int, out_features: int,
               name: Optional[str] = None):
    """Constructs a linear layer.

    Args:
      in_features: size of the input's last axis.
      out_features: size of the output's last axis.
      name: module name.
    """
    super().__init__(name=name)
    _check_positive(in_features=in_features, out_features=out_features)
    self.in_features = in_features
    self.out_features = out_features
    with self.name_scope:
      self.kernel = tf.Variable(
          he_normal((in_features, out_features), fan_in=in_features),
          name="kernel")
      self.bias = tf.Variable(tf.zeros([out_features]), name="bias")

  @tf.Module.with_name_scope
  def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
    outputs = (tf.matmul(inputs, tf.cast(self.kernel, inputs.dtype))
               + tf.cast(self.bias, inputs.dtype))
    hooks.record(self, "linear", outputs, self.in_features * self.out_features)
    return outputs


POOL_PADDINGS = ("ceil", "symmetric")


def ceil_mode_output_size(size, window: int, stride: int):
  """Outputs of Caffe's ceil-mode pooling without padding along one axis.

  `ceil((size - window) / stride) + 1`, as Caffe's `PoolingLayer::Reshape`
  computes it. Caffe drops a last window that would start in the padding
  only when the layer is padded; without padding a window starting at or past
  the border needs `window < stride`, never the case here, so there is nothing
  to clip. Works on Python ints and on scalar tensors (unknown sizes).

  Args:
    size: the input's height or width.
    window: the pooling window's side.
    stride: the step between windows.

  Returns:
    The number of windows along the axis.
  """
  return -((window - size) // stride) + 1  # -(-a // b) is ceil(a / b).


class MaxPool(tf.Module):
  """Max pooling over NHWC images, on Caffe's grid or on a symmetric one.

  `padding="ceil"` is Caffe's ceil-mode pooling without padding, which the
  paper's released models use: windows start at 0, s, 2s, ... and there are
  `ceil((n - k) / s) + 1` of them; the last may hang over the bottom/right
  border, where it only sees the pixels inside (the input is padded with -inf
  on the bottom and right only). 3x3/2 turns 112x112 into 56x56. TensorFlow's
  `SAME` agrees with it only for even sizes: for odd ones it also pads the
  top/left and shifts the grid by a pixel.

  `padding="symmetric"` pads `window // 2` of -inf on every side and keeps
  whole windows (floor mode): torchvision's `MaxPool2d(3, 2, padding=1)` and
  Keras's `ZeroPadding2D(1)` + `MaxPooling2D(3, 2)` (zeros equal -inf after a
  ReLU). Converted models use it so that their outputs match the source's.
  """

  def __init__(self, window: int, stride: int, *, padding: str = "ceil",
               name: Optional[str] = None):
    """Constructs a max pool.

    Args:
      window: height and width of the (square) window.
      stride: step between windows, in both directions.
      padding: `ceil` (Caffe's grid; the paper's) or `symmetric`
        (`window // 2` on every side, floor mode; Keras's and torchvision's).
      name: module name.

    Raises:
      ValueError: for a non-positive size or an unknown padding.
    """
    super().__init__(name=name)
    _check_positive(window=window, stride=stride)
    if padding not in POOL_PADDINGS:
      raise ValueError(
          f"`padding` must be one of {POOL_PADDINGS}, not {padding!r}")
    self.window = window
    self.stride = stride
    self.padding = padding

  def _pads(self, size) -> tuple:
    """(before, after) padding along an axis of `size` (an int or a tensor)."""
    if self.padding == "symmetric":
      return self.window // 2, self.window // 2
    outputs = ceil_mode_output_size(size, self.window, self.stride)
    after = (outputs - 1) * self.stride + self.window - size
    if isinstance(after, int):
      return 0, max(after, 0)
    return 0, tf.maximum(after, 0)

  def min_input_size(self) -> int:
    """The smallest height or width that gives at least one window.

    Ceil mode: `ceil((n - k) / s) + 1 >= 1` needs `n > k - s`. Symmetric:
    `n + 2 (k // 2) >= k`.
    """
    if self.padding == "symmetric":
      return max(self.window - 2 * (self.window // 2), 1)
    return max(self.window - self.stride + 1, 1)

  def _check_size(self, inputs: tf.Tensor) -> tf.Tensor:
    """`inputs`, after checking it is large enough for one window.

    A pool with no window to compute must fail with an error that names the
    sizes: oneDNN's max pool, which TensorFlow runs on x86, dies with a
    floating-point exception (SIGFPE, the whole process) on an empty output.
    """
    smallest = self.min_input_size()
    static = [inputs.shape[1], inputs.shape[2]]
    message = (f"{self.window}x{self.window}/{self.stride} max pooling "
               f"({self.padding}) needs inputs of at least {smallest}x"
               f"{smallest} pixels")
    if all(size is not None for size in static):
      if min(static) < smallest:
        raise ValueError(f"{message}, not {static[0]}x{static[1]}")
      return inputs
    check = tf.debugging.assert_greater_equal(
        tf.shape(inputs)[1:3], smallest, message=message)
    with tf.control_dependencies([check]):
      return tf.identity(inputs)

  @tf.Module.with_name_scope
  def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
    inputs = self._check_size(inputs)
    height, width = inputs.shape[1], inputs.shape[2]
    dynamic = tf.shape(inputs)
    top, bottom = self._pads(dynamic[1] if height is None else height)
    left, right = self._pads(dynamic[2] if width is None else width)
    # -inf, so that a padded position never wins a window.
    padded = tf.pad(inputs, [[0, 0], [top, bottom], [left, right], [0, 0]],
                    constant_values=float("-inf"))
    outputs = tf.nn.max_pool2d(padded, self.window, self.stride, "VALID")
    hooks.record(self, "max_pool", outputs)
    return outputs


class GlobalAveragePool(tf.Module):
  """Averages NHWC feature maps over height and width."""

  @tf.Module.with_name_scope
  def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
    outputs = tf.reduce_mean(inputs, axis=(1, 2))
    hooks.record(self, "average_pool", outputs)
    return outputs
