"""Residual and plain networks of He et al. (2015), as `tf.Module`s.

One parametric `ResNet` covers every network of the paper: the ImageNet
family of Table 1 (18 and 34 layers with basic blocks, 50/101/152 with
bottlenecks), the CIFAR-10 family of section 4.2 (6n+2 layers), and the plain
twins of both (the same stacks with `shortcut=None`). The named constructors
at the bottom are thin definitions over it.

Its parts (shortcut options A/B/C, basic and bottleneck blocks, stages,
stem, head) are in `blocks.py`.
"""

import functools
from typing import Optional, Sequence

import tensorflow as tf

from tf_resnet.model import blocks

SHORTCUTS = blocks.SHORTCUTS

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
    if block not in blocks.BLOCKS:
      raise ValueError(f"`block` must be one of {sorted(blocks.BLOCKS)}, "
                       f"not {block!r}")
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
    block_fn = functools.partial(blocks.BLOCKS[block], shortcut=shortcut,
                                 stride_on_3x3=stride_on_3x3,
                                 zero_init_last_bn=zero_init_last_bn,
                                 bn_options=bn_options)
    with self.name_scope:
      if stem == "imagenet":
        self.stem = blocks.Stem(in_channels, widths[0], 7, 2, True, bn_options,
                         max_pool_padding=max_pool_padding, name="stem")
      else:
        self.stem = blocks.Stem(in_channels, widths[0], 3, 1, False, bn_options,
                         name="stem")
      channels = self.stem.out_channels
      self.stages = []
      for i, (width, count) in enumerate(zip(widths, blocks_per_stage)):
        self.stages.append(blocks.Stage(block_fn, channels, width, count,
                                 stride=1 if i == 0 else 2,
                                 name=f"stage_{i + 1}"))
        channels = self.stages[-1].out_channels
      self.head = blocks.Head(channels, num_classes, name="head")

  @property
  def classifier(self) -> tf.Module:
    """The last layer, whose outputs are the classes (fine-tuning replaces it)."""
    return self.head.fc

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
