"""VGG-19 (Simonyan and Zisserman, 2015, configuration E), the paper's Fig. 3 reference.

Sixteen 3x3 convolutions in five stages separated by 2x2 max pools, then
three fully-connected layers. The fully-connected layers are held as
convolutions (fc6 as a 7x7 `VALID` convolution, fc7 and fc8 as 1x1), the
"dense evaluation" form of the VGG paper: a 224x224 image gives exactly the
fully-connected net's logits, and a larger image gives a map of them, which is
averaged, so VGG-19 takes part in the same multi-scale testing as the ResNets.

As everywhere in this library, batch normalization follows each convolution
and there is no dropout; `batch_norm=False` gives the original's
convolutions with biases (still without dropout).
"""

from typing import Optional, Sequence

import tensorflow as tf

from tf_resnet.model import hooks
from tf_resnet.model import layers

# Configuration E: convolutions per stage and their widths.
VGG19_STAGES = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))


class VGGStage(tf.Module):
  """3x3 convolutions of one width (each with BN and ReLU), then 2x2 max pool."""

  def __init__(self, in_channels: int, width: int, num_convs: int,
               batch_norm: bool, bn_options: dict,
               name: Optional[str] = None):
    super().__init__(name=name)
    self.width = width
    with self.name_scope:
      self.convs = []
      self.bns = []
      for i in range(num_convs):
        self.convs.append(layers.Conv2D(in_channels if i == 0 else width,
                                        width, 3, use_bias=not batch_norm,
                                        name=f"conv_{i}"))
        if batch_norm:
          self.bns.append(layers.BatchNorm(width, name=f"bn_{i}",
                                           **bn_options))
    self.out_channels = width

  def describe(self) -> str:
    return f"[3x3, {self.width}] x {len(self.convs)}, 2x2 max pool"

  @tf.Module.with_name_scope
  def __call__(self, inputs: tf.Tensor, *, is_training: bool) -> tf.Tensor:
    outputs = inputs
    for i, conv in enumerate(self.convs):
      outputs = conv(outputs)
      if self.bns:
        outputs = self.bns[i](outputs, is_training=is_training)
      outputs = tf.nn.relu(outputs)
    outputs = tf.nn.max_pool2d(outputs, 2, 2, "VALID")
    hooks.record(self, "stage", outputs)
    return outputs


class VGGHead(tf.Module):
  """fc6, fc7 (4096-d, ReLU) and fc8, as convolutions, then the average of the score map."""

  def __init__(self, in_channels: int, num_classes: int, hidden: int = 4096,
               name: Optional[str] = None):
    super().__init__(name=name)
    with self.name_scope:
      self.fc6 = layers.Conv2D(in_channels, hidden, 7, padding="VALID",
                               use_bias=True, name="fc6")
      self.fc7 = layers.Conv2D(hidden, hidden, 1, use_bias=True, name="fc7")
      self.fc8 = layers.Conv2D(hidden, num_classes, 1, use_bias=True,
                               name="fc8")
    self.hidden = hidden
    self.num_classes = num_classes

  def describe(self) -> str:
    return (f"{self.hidden}-d fc, {self.hidden}-d fc, {self.num_classes}-d fc,"
            " softmax")

  @tf.Module.with_name_scope
  def __call__(self, features: tf.Tensor) -> tf.Tensor:
    outputs = tf.nn.relu(self.fc6(features))
    outputs = tf.nn.relu(self.fc7(outputs))
    return tf.reduce_mean(self.fc8(outputs), axis=(1, 2))


class VGG(tf.Module):
  """A VGG network; `logits = net(images, is_training=...)`."""

  def __init__(self,
               *,
               stages: Sequence[tuple[int, int]] = VGG19_STAGES,
               num_classes: int = 1000,
               batch_norm: bool = True,
               bn_decay: float = 0.9,
               bn_epsilon: float = 1e-5,
               sync_batch_norm: bool = False,
               in_channels: int = 3,
               name: Optional[str] = None):
    """Constructs a VGG network.

    Args:
      stages: (convolutions, width) of each stage.
      num_classes: outputs of the classifier.
      batch_norm: batch normalization after every convolution (this
        library's convention) instead of biases (the original).
      bn_decay: decay of the batch-norm moving statistics.
      bn_epsilon: batch normalization's variance epsilon.
      sync_batch_norm: normalize with the global batch's statistics.
      in_channels: channels of the input images.
      name: module name.
    """
    super().__init__(name=name)
    bn_options = dict(decay=bn_decay, epsilon=bn_epsilon,
                      cross_replica=sync_batch_norm)
    self.num_classes = num_classes
    with self.name_scope:
      self.stages = []
      channels = in_channels
      for i, (num_convs, width) in enumerate(stages):
        self.stages.append(VGGStage(channels, width, num_convs, batch_norm,
                                    bn_options, name=f"stage_{i + 1}"))
        channels = width
      self.head = VGGHead(channels, num_classes, name="head")

  @property
  def depth(self) -> int:
    """Weight layers: convolutions and the three fully-connected layers."""
    return sum(len(s.convs) for s in self.stages) + 3

  @property
  def classifier(self) -> tf.Module:
    """The last layer, whose outputs are the classes (fine-tuning replaces it)."""
    return self.head.fc8

  @tf.Module.with_name_scope
  def features(self, images: tf.Tensor, *, is_training: bool) -> tf.Tensor:
    """The last stage's feature map (7x7 for a 224x224 image)."""
    outputs = images
    for stage in self.stages:
      outputs = stage(outputs, is_training=is_training)
    return outputs

  def __call__(self, images: tf.Tensor, *, is_training: bool) -> tf.Tensor:
    """Logits for float NHWC `images` of at least 224x224."""
    return self.head(self.features(images, is_training=is_training))


def vgg19(*, num_classes: int = 1000, name: Optional[str] = "vgg19",
          **options) -> VGG:
  """VGG-19, configuration E."""
  return VGG(stages=VGG19_STAGES, num_classes=num_classes, name=name, **options)
