"""Residual and plain networks of He et al. (2015), as `tf.Module`s.

One parametric `ResNet` covers every network of the paper: the ImageNet
family of Table 1 (18 and 34 layers with basic blocks, 50/101/152 with
bottlenecks), the CIFAR-10 family of section 4.2 (6n+2 layers), and the plain
twins of both (the same stacks with `shortcut=None`). The named constructors
at the bottom are thin definitions over it.

Every convolution is followed by batch normalization, then ReLU; the residual
addition comes before the block's last ReLU. No dropout. Shortcut options
(section 3.3):

* `A`: identity; where the dimensions grow, stride-2 subsampling and extra
  zero channels. No parameters.
* `B`: a 1x1 projection (with batch normalization) only where the dimensions
  grow, identity elsewhere.
* `C`: a projection on every block.
"""

import functools
from typing import Callable, Optional, Sequence

import tensorflow as tf

from tf_resnet.model import hooks
from tf_resnet.model import layers

SHORTCUTS = ("A", "B", "C")

# Table 1 of the paper: (block, blocks per stage) for each ImageNet depth.
IMAGENET_STAGES = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
IMAGENET_WIDTHS = (64, 128, 256, 512)
CIFAR_WIDTHS = (16, 32, 64)


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
      # 0, s, 2s, ...: the subsampled identity takes the same positions.
      outputs = outputs[:, ::self.stride, ::self.stride, :]
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


class ResNet(tf.Module):
  """A residual (or, with `shortcut=None`, plain) network.

  Call it as `logits = net(images, is_training=...)` on float NHWC images.
  """

  def __init__(self,
               *,
               block: str,
               blocks_per_stage: Sequence[int],
               widths: Sequence[int],
               stem: str,
               num_classes: int,
               shortcut: Optional[str],
               stride_on_3x3: bool = False,
               zero_init_last_bn: bool = False,
               bn_decay: float = 0.9,
               bn_epsilon: float = 1e-5,
               sync_batch_norm: bool = False,
               in_channels: int = 3,
               max_pool_padding: str = "ceil",
               name: Optional[str] = None):
    """Constructs a network.

    Args:
      block: `basic` (two 3x3 convolutions) or `bottleneck` (1x1, 3x3, 1x1).
      blocks_per_stage: number of blocks in each stage.
      widths: each stage's width (a bottleneck's output is 4x wider).
      stem: `imagenet` (7x7/2 convolution and 3x3/2 max pool) or `cifar`
        (3x3 convolution).
      num_classes: outputs of the classifier.
      shortcut: `A`, `B` or `C` (see the module docstring), or None for a
        plain network.
      stride_on_3x3: for bottlenecks, put the stride on the 3x3 convolution
        instead of the first 1x1 (not the paper's choice).
      zero_init_last_bn: start each residual branch's last batch-norm scale at
        zero (not the paper's choice).
      bn_decay: decay of the batch-norm moving statistics.
      bn_epsilon: batch normalization's variance epsilon.
      sync_batch_norm: under `tf.distribute`, normalize with the global
        batch's statistics (not the paper's per-GPU statistics).
      in_channels: channels of the input images.
      max_pool_padding: the ImageNet stem's max-pool grid: `ceil` (Caffe's
        ceil mode, the paper's released models) or `symmetric` (padding 1 on
        every side, floor mode: Keras's and torchvision's models, which
        converted weights need to reproduce their outputs).
      name: module name.

    Raises:
      ValueError: for an unknown block, stem or shortcut, or stage lists of
        different lengths.
    """
    super().__init__(name=name)
    if block not in BLOCKS:
      raise ValueError(f"`block` must be one of {sorted(BLOCKS)}, not {block!r}")
    if stem not in ("imagenet", "cifar"):
      raise ValueError(f"`stem` must be 'imagenet' or 'cifar', not {stem!r}")
    if shortcut is not None and shortcut not in SHORTCUTS:
      raise ValueError(
          f"`shortcut` must be one of {SHORTCUTS} or None, not {shortcut!r}")
    if len(blocks_per_stage) != len(widths) or not widths:
      raise ValueError(
          f"`blocks_per_stage` ({len(blocks_per_stage)} entries) and `widths` "
          f"({len(widths)} entries) must have the same, non-zero length")
    if zero_init_last_bn and shortcut is None:
      raise ValueError("`zero_init_last_bn` needs shortcuts: a plain network "
                       "with a zero scale would output constants")
    self.block = block
    self.shortcut = shortcut
    self.num_classes = num_classes
    bn_options = dict(decay=bn_decay, epsilon=bn_epsilon,
                      cross_replica=sync_batch_norm)
    block_fn = functools.partial(BLOCKS[block], shortcut=shortcut,
                                 stride_on_3x3=stride_on_3x3,
                                 zero_init_last_bn=zero_init_last_bn,
                                 bn_options=bn_options)
    with self.name_scope:
      if stem == "imagenet":
        self.stem = Stem(in_channels, widths[0], 7, 2, True, bn_options,
                         max_pool_padding=max_pool_padding, name="stem")
      else:
        self.stem = Stem(in_channels, widths[0], 3, 1, False, bn_options,
                         name="stem")
      channels = self.stem.out_channels
      self.stages = []
      for i, (width, count) in enumerate(zip(widths, blocks_per_stage)):
        self.stages.append(Stage(block_fn, channels, width, count,
                                 stride=1 if i == 0 else 2,
                                 name=f"stage_{i + 1}"))
        channels = self.stages[-1].out_channels
      self.head = Head(channels, num_classes, name="head")

  @property
  def depth(self) -> int:
    """Weight layers on the longest path: convolutions and the classifier."""
    return 1 + sum(len(b.convs) for s in self.stages for b in s.blocks) + 1

  @tf.Module.with_name_scope
  def features(self, images: tf.Tensor, *, is_training: bool) -> tf.Tensor:
    """The last stage's feature map, before pooling."""
    outputs = self.stem(images, is_training=is_training)
    for stage in self.stages:
      outputs = stage(outputs, is_training=is_training)
    return outputs

  def __call__(self, images: tf.Tensor, *, is_training: bool) -> tf.Tensor:
    """Logits for float NHWC `images`."""
    return self.head(self.features(images, is_training=is_training))


def imagenet_stages(depth: int) -> tuple[str, tuple[int, ...]]:
  """The block type and blocks per stage of an ImageNet network (Table 1).

  Raises:
    ValueError: for a depth not in Table 1, listing the valid ones.
  """
  if depth not in IMAGENET_STAGES:
    raise ValueError(
        f"no ImageNet network has depth {depth}; valid depths are "
        f"{', '.join(map(str, sorted(IMAGENET_STAGES)))} (paper Table 1)")
  return IMAGENET_STAGES[depth]


def cifar_blocks_per_stage(depth: int) -> int:
  """n for a CIFAR network of depth 6n+2.

  Raises:
    ValueError: if `depth` is not 6n+2 for an integer n >= 1.
  """
  if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
    raise ValueError(
        f"CIFAR-10 networks have depth 6n+2 for n >= 1 (8, 14, 20, 26, 32, "
        f"..., e.g. the paper's 20, 32, 44, 56, 110, 1202), not {depth}")
  return (depth - 2) // 6


def imagenet_resnet(depth: int, *, shortcut: Optional[str] = "B",
                    num_classes: int = 1000, name: Optional[str] = None,
                    **options) -> ResNet:
  """An ImageNet network of Table 1 (18, 34, 50, 101 or 152 layers).

  Args:
    depth: number of weight layers.
    shortcut: `A`, `B` (the paper's default for ImageNet) or `C`; None for
      the plain twin.
    num_classes: outputs of the classifier.
    name: module name; default `resnet{depth}` or `plain{depth}`.
    **options: further `ResNet` arguments.

  Raises:
    ValueError: for a depth not in Table 1.
  """
  block, counts = imagenet_stages(depth)
  return ResNet(block=block, blocks_per_stage=counts, widths=IMAGENET_WIDTHS,
                stem="imagenet", num_classes=num_classes, shortcut=shortcut,
                name=name or f"{'resnet' if shortcut else 'plain'}{depth}",
                **options)


def cifar_resnet(depth: int, *, shortcut: Optional[str] = "A",
                 num_classes: int = 10, name: Optional[str] = None,
                 **options) -> ResNet:
  """A CIFAR-10 network of section 4.2: 6n+2 layers, widths 16/32/64.

  Args:
    depth: 6n+2 weight layers, n >= 1.
    shortcut: `A` (the paper's choice for CIFAR), `B` or `C`; None for the
      plain twin.
    num_classes: outputs of the classifier.
    name: module name; default `cifar_resnet{depth}` or `cifar_plain{depth}`.
    **options: further `ResNet` arguments.

  Raises:
    ValueError: for a depth that is not 6n+2.
  """
  n = cifar_blocks_per_stage(depth)
  kind = "resnet" if shortcut else "plain"
  return ResNet(block="basic", blocks_per_stage=(n, n, n), widths=CIFAR_WIDTHS,
                stem="cifar", num_classes=num_classes, shortcut=shortcut,
                name=name or f"cifar_{kind}{depth}", **options)


def imagenet_plain(depth: int, **kwargs) -> ResNet:
  """The plain twin of an ImageNet ResNet: the same stack, no shortcuts."""
  return imagenet_resnet(depth, shortcut=None, **kwargs)


def cifar_plain(depth: int, **kwargs) -> ResNet:
  """The plain twin of a CIFAR ResNet: the same stack, no shortcuts."""
  return cifar_resnet(depth, shortcut=None, **kwargs)


resnet18 = functools.partial(imagenet_resnet, 18)
resnet34 = functools.partial(imagenet_resnet, 34)
resnet50 = functools.partial(imagenet_resnet, 50)
resnet101 = functools.partial(imagenet_resnet, 101)
resnet152 = functools.partial(imagenet_resnet, 152)
plain18 = functools.partial(imagenet_plain, 18)
plain34 = functools.partial(imagenet_plain, 34)
resnet20 = functools.partial(cifar_resnet, 20)
resnet32 = functools.partial(cifar_resnet, 32)
resnet44 = functools.partial(cifar_resnet, 44)
resnet56 = functools.partial(cifar_resnet, 56)
resnet110 = functools.partial(cifar_resnet, 110)
resnet1202 = functools.partial(cifar_resnet, 1202)
