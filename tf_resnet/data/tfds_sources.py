"""TensorFlow Datasets' ImageNet (ILSVRC2012, streamed) and CIFAR-10 (in memory)."""

import os
from typing import Optional

import numpy as np
import tensorflow as tf

from tf_resnet.data import base

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog",
                   "frog", "horse", "ship", "truck")
IMAGENET_ARCHIVES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")


class TfdsImageNet(base.Source):
  """TFDS's `imagenet2012`, streamed as encoded JPEGs.

  Evaluation and statistics read a split in its stored order (`stream`);
  training reads its TFRecord files in shuffled blocks (`record_files`,
  `streaming`).
  """

  encoded = True
  indexed = False

  def __init__(self, data_dir: Optional[str] = None, holdout: int = 0):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    self._tfds = tfds
    self.name = "imagenet2012"
    self.family = "imagenet"
    self._builder = tfds.builder("imagenet2012", data_dir=data_dir)
    if not self._builder.is_prepared():
      data_root = data_dir or os.path.expanduser("~/tensorflow_datasets")
      manual = os.path.join(data_root, "downloads", "manual")
      missing = [f for f in IMAGENET_ARCHIVES
                 if not os.path.exists(os.path.join(manual, f))]
      if missing:
        raise base.DataError(
            "ImageNet (ILSVRC2012) is not prepared and cannot be downloaded "
            f"automatically. Missing: {', '.join(missing)}. Download "
            "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar from "
            f"https://image-net.org (registration needed), put them in {manual}"
            f"/ (TFDS's manual directory under --data_dir={data_root}), and "
            "run again: TFDS then prepares them (once, several hours, about "
            "300 GB) into "
            f"{os.path.join(data_root, 'imagenet2012')}.")
      self._builder.download_and_prepare()
    info = self._builder.info
    file_format = getattr(info, "file_format", None)
    if file_format not in (None, tfds.core.FileFormat.TFRECORD):
      raise base.DataError(
          f"{self._builder.data_dir} holds ImageNet as {file_format.value}; "
          "training reads TFDS's default TFRecord files (prepare it again "
          "without file_format, or point --data_dir elsewhere)")
    self.class_names = tuple(info.features["label"].names)
    # Split sizes are known once TFDS has prepared the data (1,281,167 and
    # 50,000); -1 while they are not (TFDS's mock data in tests).
    counts = {name: info.splits[name].num_examples if name in info.splits
              else -1 for name in ("train", "validation")}
    self._holdout = holdout
    if holdout and not 0 < holdout < counts["train"]:
      raise base.DataError(f"`holdout` (--holdout) must be in [0, "
                           f"{counts['train']}) for a training set of "
                           f"{counts['train']} examples, not {holdout}")
    self._sizes = {"train": counts["train"] - holdout, "holdout": holdout,
                   "test": counts["validation"]}

  def num_examples(self, split: str) -> int:
    base.check_split(split)
    return self._sizes[split]

  def has_split(self, split: str) -> bool:
    return self._sizes[split] != 0

  def _tfds_split(self, split: str) -> str:
    if split == "test":
      return "validation"
    if not self._holdout:
      return "train"
    return ("train[:-%d]" if split == "train" else "train[-%d:]") % \
        self._holdout

  def stream(self, split: str,
             input_context: Optional[tf.distribute.InputContext] = None
             ) -> tf.data.Dataset:
    tfds = self._tfds
    ds = self._builder.as_dataset(
        split=self._tfds_split(split), shuffle_files=False,
        read_config=tfds.ReadConfig(input_context=input_context),
        decoders={"image": tfds.decode.SkipDecoding()})
    return ds.map(lambda x: (x["image"], tf.cast(x["label"], tf.int32)),
                  num_parallel_calls=tf.data.AUTOTUNE)

  def record_files(self, split: str):
    instructions = self._builder.info.splits[
        self._tfds_split(split)].file_instructions
    files = [(os.fspath(i.filename), i.skip,
              i.take if i.take >= 0 else i.examples_in_shard - i.skip)
             for i in instructions]
    features = self._builder.info.features
    decoders = {"image": self._tfds.decode.SkipDecoding()}

    def parse(record):
      example = features.deserialize_example(record, decoders=decoders)
      return example["image"], tf.cast(example["label"], tf.int32)

    return files, parse


def tfds_cifar10(data_dir: Optional[str] = None, holdout: int = 0
                 ) -> base.IndexedSource:
  """TFDS's `cifar10`, held in memory (150 MB) so it is indexed.

  Args:
    data_dir: TFDS's data directory.
    holdout: training examples to hold out as the `holdout` split.

  Returns:
    The source.

  Raises:
    DataError: when CIFAR-10 is not prepared and cannot be downloaded.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder("cifar10", data_dir=data_dir)
  if not builder.is_prepared():
    try:
      builder.download_and_prepare()
    except Exception as e:  # pylint: disable=broad-except
      raise base.DataError(
          f"CIFAR-10 is not prepared in {builder.data_dir} and could not be "
          f"downloaded ({type(e).__name__}: {str(e)[:200]}). Without network, "
          "use an image-folder copy instead: --dataset=folder:PATH with "
          "PATH/train/<class>/*.jpg and PATH/test/<class>/*.jpg.") from None
  items, labels = {}, {}
  for split, tfds_split in (("train", "train"), ("test", "test")):
    batches = list(builder.as_dataset(split=tfds_split).batch(10_000)
                   .as_numpy_iterator())
    items[split] = np.concatenate([b["image"] for b in batches])
    labels[split] = np.concatenate([b["label"] for b in batches])
  names = builder.info.features["label"].names
  if all(n.isdigit() for n in names):
    names = CIFAR10_CLASSES  # Offline, TFDS may not know the names.
  return base.IndexedSource("cifar10", "cifar", names, items, labels,
                            encoded=False, holdout=holdout)
