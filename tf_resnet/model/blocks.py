"""The parts ResNets are stacked from: shortcuts, blocks, stages, the stem and the head.

Every convolution is followed by batch normalization, then ReLU; the residual
addition comes before the block's last ReLU. No dropout. Shortcut options
(section 3.3):

* `A`: identity; where the dimensions grow, stride-2 subsampling and extra
  zero channels. No parameters.
* `B`: a 1x1 projection (with batch normalization) only where the dimensions
  grow, identity elsewhere.
* `C`: a projection on every block.

`shortcut=None` gives a plain block (no shortcut): the paper's plain nets.
"""

from typing import Callable, Optional, Sequence

import tensorflow as tf

from tf_resnet.model import hooks
from tf_resnet.model import layers

SHORTCUTS = ("A", "B", "C")


class IdentityShortcut(tf.Module):
  """Option A: the input itself, subsampled and zero-padded where needed."""

  def __init__(self, in_channels: int, out_channels: int, stride: int,
               name: Optional[str] = None):
    super().__init__(name=name)
    if out_channels < in_channels:
      raise ValueError(
          f"an identity shortcut cannot reduce channels ({in_channels} to "
          f"{out_channels}); use a projection (option B or C)")
    self.extra_channels = out_channels - in_channels
    self.stride = stride

  @tf.Module.with_name_scope
  def __call__(self, inputs: tf.Tensor, *, is_training: bool) -> tf.Tensor:
    del is_training  # No state.
    outputs = inputs
    if self.stride > 1:
      # A 3x3 convolution with padding 1 and stride s samples its centres at
      # 0, s, 2s, ...: the subsampled identity takes the same positions, here
      # as a 1x1 average pool with stride s (the mean of one value is that
      # value, exactly, in every precision). It equals `inputs[:, ::s, ::s]`
      # but runs in oneDNN's pooling kernels, forward and backward, where
      # TensorFlow's strided slice and its gradient are single loops several
      # times slower (benchmarks/train_throughput.py --profile_dir).
      outputs = tf.nn.avg_pool2d(outputs, ksize=1, strides=self.stride,
                                 padding="VALID")
    if self.extra_channels:
      outputs = tf.pad(outputs, [[0, 0], [0, 0], [0, 0],
                                 [0, self.extra_channels]])
    return outputs


class ProjectionShortcut(tf.Module):
  """Options B and C: a strided 1x1 convolution and batch normalization."""

  def __init__(self, in_channels: int, out_channels: int, stride: int,
               bn_options: dict, name: Optional[str] = None):
    super().__init__(name=name)
    with self.name_scope:
      self.conv = layers.Conv2D(in_channels, out_channels, 1, stride=stride,
                                name="conv")
      self.bn = layers.BatchNorm(out_channels, name="bn", **bn_options)

  @tf.Module.with_name_scope
  def __call__(self, inputs: tf.Tensor, *, is_training: bool) -> tf.Tensor:
    return self.bn(self.conv(inputs), is_training=is_training)


def _make_shortcut(option: Optional[str], in_channels: int, out_channels: int,
                   stride: int, bn_options: dict) -> Optional[tf.Module]:
  if option is None:
    return None
  grows = stride > 1 or out_channels != in_channels
  if option == "C" or (option == "B" and grows):
    return ProjectionShortcut(in_channels, out_channels, stride, bn_options,
                              name="shortcut")
  return IdentityShortcut(in_channels, out_channels, stride, name="shortcut")


class _Block(tf.Module):
  """A stack of conv-BN(-ReLU) layers with an optional shortcut around it."""

  def __init__(self, convs: Sequence[tuple[int, int, int, int]],
               shortcut: Optional[str], zero_init_last_bn: bool,
               bn_options: dict, name: Optional[str]):
    super().__init__(name=name)
    self.in_channels = convs[0][0]
    self.out_channels = convs[-1][1]
    stride = max(s for _, _, _, s in convs)
    with self.name_scope:
      self.convs = []
      self.bns = []
      for i, (cin, cout, kernel, s) in enumerate(convs):
        self.convs.append(layers.Conv2D(cin, cout, kernel, stride=s,
                                        name=f"conv_{i}"))
        last = i == len(convs) - 1
        self.bns.append(layers.BatchNorm(
            cout, name=f"bn_{i}",
            scale_init=0.0 if (last and zero_init_last_bn) else 1.0,
            **bn_options))
      self.shortcut = _make_shortcut(shortcut, self.in_channels,
                                     self.out_channels, stride, bn_options)

  @tf.Module.with_name_scope
  def __call__(self, inputs: tf.Tensor, *, is_training: bool) -> tf.Tensor:
    outputs = inputs
    for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
      outputs = bn(conv(outputs), is_training=is_training)
      if i < len(self.convs) - 1:
        outputs = tf.nn.relu(outputs)
    if self.shortcut is not None:
      outputs += self.shortcut(inputs, is_training=is_training)
    return tf.nn.relu(outputs)


class BasicBlock(_Block):
  """Two 3x3 convolutions (Fig. 5 left); the first one carries the stride."""

  expansion = 1

  def __init__(self, in_channels: int, width: int, *, stride: int,
               shortcut: Optional[str], stride_on_3x3: bool = False,
               zero_init_last_bn: bool = False,
               bn_options: Optional[dict] = None,
               name: Optional[str] = None):
    del stride_on_3x3  # Basic blocks only have 3x3 convolutions.
    super().__init__([(in_channels, width, 3, stride), (width, width, 3, 1)],
                     shortcut, zero_init_last_bn, bn_options or {}, name)
    self.width = width

  def describe(self) -> str:
    return f"3x3, {self.width}; 3x3, {self.width}"


class Bottleneck(_Block):
  """1x1 reduce, 3x3, 1x1 expand by 4 (Fig. 5 right).

  The stride sits on the first 1x1 convolution, as in the paper's released
  models; `stride_on_3x3` moves it to the 3x3 (the later "v1.5" variant, not
  in the paper).
  """

  expansion = 4

  def __init__(self, in_channels: int, width: int, *, stride: int,
               shortcut: Optional[str], stride_on_3x3: bool = False,
               zero_init_last_bn: bool = False,
               bn_options: Optional[dict] = None,
               name: Optional[str] = None):
    first, middle = (1, stride) if stride_on_3x3 else (stride, 1)
    super().__init__([(in_channels, width, 1, first), (width, width, 3, middle),
                      (width, width * 4, 1, 1)],
                     shortcut, zero_init_last_bn, bn_options or {}, name)
    self.width = width

  def describe(self) -> str:
    return f"1x1, {self.width}; 3x3, {self.width}; 1x1, {self.width * 4}"


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class Stage(tf.Module):
  """Blocks of one width; the first may change resolution and channels."""

  def __init__(self, block: Callable[..., _Block], in_channels: int,
               width: int, num_blocks: int, *, stride: int,
               name: Optional[str] = None, **block_options):
    super().__init__(name=name)
    with self.name_scope:
      self.blocks = []
      for i in range(num_blocks):
        self.blocks.append(block(in_channels, width,
                                 stride=stride if i == 0 else 1,
                                 name=f"block_{i}", **block_options))
        in_channels = self.blocks[-1].out_channels
    self.out_channels = in_channels

  def describe(self) -> str:
    return f"[{self.blocks[0].describe()}] x {len(self.blocks)}"

  @tf.Module.with_name_scope
  def __call__(self, inputs: tf.Tensor, *, is_training: bool) -> tf.Tensor:
    outputs = inputs
    for block in self.blocks:
      outputs = block(outputs, is_training=is_training)
    hooks.record(self, "stage", outputs)
    return outputs


class Stem(tf.Module):
  """The first convolution (and, for ImageNet, the max pool)."""

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
               stride: int, max_pool: bool, bn_options: dict,
               max_pool_padding: str = "ceil", name: Optional[str] = None):
    super().__init__(name=name)
    with self.name_scope:
      self.conv = layers.Conv2D(in_channels, out_channels, kernel_size,
                                stride=stride, name="conv")
      self.bn = layers.BatchNorm(out_channels, name="bn", **bn_options)
      self.pool = (layers.MaxPool(3, 2, padding=max_pool_padding,
                                  name="max_pool") if max_pool else None)
    self.out_channels = out_channels

  def describe(self) -> list[str]:
    """One line per layer, in the paper's Table 1 notation."""
    c = self.conv
    lines = [f"{c.kernel_size}x{c.kernel_size}, {c.out_channels}"
             + (f", stride {c.stride}" if c.stride > 1 else "")]
    if self.pool is not None:
      lines.append(f"{self.pool.window}x{self.pool.window} max pool, "
                   f"stride {self.pool.stride}")
    return lines

  @tf.Module.with_name_scope
  def __call__(self, inputs: tf.Tensor, *, is_training: bool) -> tf.Tensor:
    outputs = tf.nn.relu(self.bn(self.conv(inputs), is_training=is_training))
    hooks.record(self, "stem_conv", outputs)
    if self.pool is not None:
      outputs = self.pool(outputs)
    return outputs


class Head(tf.Module):
  """Global average pooling and the fully-connected classifier.

  Because the classifier is linear, the logits of an image larger than the
  training crop equal the average over positions of the classifier applied to
  each position's features: this is the paper's fully-convolutional testing.
  """

  def __init__(self, in_features: int, num_classes: int,
               name: Optional[str] = None):
    super().__init__(name=name)
    with self.name_scope:
      self.pool = layers.GlobalAveragePool(name="average_pool")
      self.fc = layers.Linear(in_features, num_classes, name="fc")

  def describe(self) -> str:
    return f"average pool, {self.fc.out_features}-d fc, softmax"

  @tf.Module.with_name_scope
  def __call__(self, features: tf.Tensor) -> tf.Tensor:
    return self.fc(self.pool(features))
