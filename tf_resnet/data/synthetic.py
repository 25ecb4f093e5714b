"""Synthetic data: random images and labels of a family's shape, for smoke runs."""

from typing import Optional

import tensorflow as tf

from tf_resnet import families
from tf_resnet.data import base


class SyntheticSource(base.Source):
  """Random uint8 images and labels, generated from each example's index."""

  def __init__(self, family: str = "cifar", num_classes: Optional[int] = None,
               sizes: Optional[dict[str, int]] = None, seed: int = 0):
    facts = families.get(family)
    self.name = "synthetic"
    self.family = family
    classes = num_classes or facts.num_classes
    self.class_names = tuple(f"class_{i}" for i in range(classes))
    self.image_size = facts.input_size
    self._sizes = sizes or {"train": 10_000, "test": 1_000}
    self._seed = seed

  def num_examples(self, split: str) -> int:
    base.check_split(split)
    return self._sizes.get(split, 0)

  def load(self, split: str, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    key = tf.stack([tf.cast(index, tf.int64),
                    tf.constant(self._seed * 3 + base.SPLITS.index(split),
                                tf.int64)])
    image = tf.random.stateless_uniform(
        [self.image_size, self.image_size, 3], key, maxval=256, dtype=tf.int32)
    label = tf.random.stateless_uniform([], key + 1, maxval=self.num_classes,
                                        dtype=tf.int32)
    return tf.cast(image, tf.uint8), label
