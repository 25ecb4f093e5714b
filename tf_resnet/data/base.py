"""The data-source interface, and the in-memory indexed source most sources build.

A source names a data set's splits, classes and network family, and hands out
examples in one of two ways:

* *indexed* (folders, digits, synthetic, CIFAR-10 held in memory): every
  example is reachable by its index, which gives exact, resumable,
  fully-shuffled input orders (`pipeline.train_dataset`);
* *streamed* (TFDS ImageNet, too large to index): read in stored order for
  testing (`stream`), and for training as record files read in shuffled
  blocks whose order is a function of (seed, position) too (`record_files`,
  `streaming`).

Splits are `train`, `test` (the paper's test numbers: CIFAR's test set,
ImageNet's validation set) and, when `holdout` examples are asked for,
`holdout`, taken from the training data and removed from `train` (the paper's
45k/5k CIFAR split).
"""

import abc
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_resnet import families

FAMILIES = families.NAMES
SPLITS = ("train", "holdout", "test")


class DataError(ValueError):
  """A data set is missing, empty or inconsistent; the message says how to fix it."""


def check_family(family: str) -> None:
  families.get(family)  # Raises ValueError naming the known families.


def check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f"`split` must be one of {SPLITS}, not {split!r}")


class Source(abc.ABC):
  """A data set: its splits, classes and network family."""

  name: str
  family: str
  class_names: tuple[str, ...]
  # Whether examples are encoded image bytes (to decode) or uint8 images.
  encoded: bool = False
  indexed: bool = True

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @abc.abstractmethod
  def num_examples(self, split: str) -> int:
    """Examples in a split."""

  def load(self, split: str, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """The example at `index` of `split`, as TF ops: (image or bytes, int32 label)."""
    raise NotImplementedError(f"{self.name} is not indexed")

  def stream(self, split: str,
             input_context: Optional[tf.distribute.InputContext] = None
             ) -> tf.data.Dataset:
    """A streamed source's split in stored order: (image or bytes, int32 label).

    With an `input_context`, each input pipeline reads its own share.
    """
    raise NotImplementedError(f"{self.name} is indexed; use `load`")

  def record_files(self, split: str
                   ) -> tuple[list[tuple[str, int, int]],
                              Callable[[tf.Tensor], tuple[tf.Tensor,
                                                          tf.Tensor]]]:
    """A streamed source's split as TFRecord files, for resumable training reads.

    Returns:
      (files, parse): the split's records in stored order, as (file name,
      records to skip, records to take) per file; and a function from one
      serialized record to (image bytes, int32 label).
    """
    raise NotImplementedError(f"{self.name} is indexed; use `load`")

  def describe(self) -> str:
    counts = ", ".join(f"{s} {self.num_examples(s):,}" for s in SPLITS
                       if self.has_split(s))
    return (f"{self.name}: {self.num_classes} classes, {self.family} family; "
            f"{counts}")

  def has_split(self, split: str) -> bool:
    return self.num_examples(split) > 0


def holdout_indices(num_train: int, holdout: int, seed: int = 0
                    ) -> tuple[np.ndarray, np.ndarray]:
  """Train and held-out indices: a fixed random `holdout` of the training examples."""
  if holdout < 0 or holdout >= num_train:
    raise DataError(f"`holdout` (--holdout) must be in [0, {num_train}) for "
                    f"a training set of {num_train} examples, not {holdout}")
  order = np.random.default_rng(seed).permutation(num_train)
  return np.sort(order[holdout:]), np.sort(order[:holdout])


class IndexedSource(Source):
  """Examples held as per-split arrays (images, or file paths) and labels."""

  def __init__(self, name: str, family: str, class_names: Sequence[str],
               items: dict[str, np.ndarray], labels: dict[str, np.ndarray],
               encoded: bool, holdout: int = 0):
    check_family(family)
    self.name = name
    self.family = family
    self.class_names = tuple(class_names)
    self.encoded = encoded
    if holdout:
      train, held = holdout_indices(len(labels["train"]), holdout)
      items["holdout"], labels["holdout"] = items["train"][held], \
          labels["train"][held]
      items["train"], labels["train"] = items["train"][train], \
          labels["train"][train]
    self._items = items
    self._labels = {k: np.asarray(v, np.int32) for k, v in labels.items()}
    self._tensors = {}

  def num_examples(self, split: str) -> int:
    check_split(split)
    return len(self._labels.get(split, ()))

  def labels(self, split: str) -> np.ndarray:
    """All labels of a split, in index order."""
    return self._labels[split]

  def _split_tensors(self, split: str):
    if split not in self._tensors:
      if not self.num_examples(split):
        raise DataError(f"{self.name} has no {split!r} split")
      with tf.init_scope():  # Eager constants, shared by every pipeline.
        self._tensors[split] = (tf.constant(self._items[split]),
                                tf.constant(self._labels[split]))
    return self._tensors[split]

  def load(self, split: str, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    items, labels = self._split_tensors(split)
    item = tf.gather(items, index)
    return (tf.io.read_file(item) if self.encoded else item,
            tf.gather(labels, index))

  def path(self, split: str, index: int) -> str:
    """The file of an example (encoded sources)."""
    return self._items[split][index]
