"""Where examples come from: TFDS builders, image folders, an embedded set, synthetic data.

One `--dataset` string names a source (`parse` turns it into one):

* `imagenet2012`: TFDS's ImageNet builder (manual download; a clear error
  says which files to put where when it is missing).
* `cifar10`: TFDS's CIFAR-10 builder (downloads where there is network).
* `folder:PATH`: `PATH/train/<class>/*` and `PATH/test/<class>/*` (or
  `val/`), JPEG or PNG; class names are the sorted folder names.
* `digits`: scikit-learn's handwritten digits (1,797 real 8x8 images shipped
  inside its wheel), resized to 32x32 RGB: the embedded default that needs no
  network.
* `synthetic`: random images and labels of the family's shape.

Sources are either *indexed* (every example reachable by its index: folders,
digits, synthetic, CIFAR-10 held in memory), which gives exact, resumable,
fully-shuffled input orders, or *streamed* (TFDS ImageNet, too large to
index), read shard by shard.

Splits are `train`, `test` (the paper's test numbers: CIFAR's test set,
ImageNet's validation set) and, when `holdout` examples are asked for,
`holdout`, taken from the training data and removed from `train` (the paper's
45k/5k CIFAR split).
"""

import abc
import concurrent.futures
import dataclasses
import os
from typing import Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

FAMILIES = ("imagenet", "cifar")
SPLITS = ("train", "holdout", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog",
                   "frog", "horse", "ship", "truck")
# Data sets whose network family is fixed by the data itself.
FIXED_FAMILIES = {"imagenet2012": "imagenet", "cifar10": "cifar",
                  "digits": "cifar"}
# Folder images up to this size get the CIFAR family's preprocessing.
CIFAR_MAX_SIDE = 64


class DataError(ValueError):
  """A data set is missing, empty or inconsistent; the message says how to fix it."""


class Source(abc.ABC):
  """A data set: its splits, classes and network family."""

  name: str
  family: str
  class_names: tuple[str, ...]
  # Whether `load` returns encoded image bytes (to decode) or uint8 images.
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

  def stream(self, split: str, input_context: Optional[tf.distribute.InputContext],
             seed: int, shuffle: bool) -> tf.data.Dataset:
    """The split as a dataset of (image or bytes, int32 label), for streamed sources."""
    raise NotImplementedError(f"{self.name} is indexed; use `load`")

  def describe(self) -> str:
    counts = ", ".join(f"{s} {self.num_examples(s):,}" for s in SPLITS
                       if self.has_split(s))
    return (f"{self.name}: {self.num_classes} classes, {self.family} family; "
            f"{counts}")

  def has_split(self, split: str) -> bool:
    return self.num_examples(split) > 0


def _check_split(split: str) -> None:
  if split not in SPLITS:
    raise ValueError(f"`split` must be one of {SPLITS}, not {split!r}")


def _holdout(num_train: int, holdout: int, seed: int = 0
             ) -> tuple[np.ndarray, np.ndarray]:
  """Train and held-out indices: a fixed random `holdout` of the training examples."""
  if holdout < 0 or holdout >= num_train:
    raise DataError(f"`holdout` must be in [0, {num_train}) for a training "
                    f"set of {num_train} examples, not {holdout}")
  order = np.random.default_rng(seed).permutation(num_train)
  return np.sort(order[holdout:]), np.sort(order[:holdout])


class IndexedSource(Source):
  """Examples held as per-split arrays (images, or file paths) and labels."""

  def __init__(self, name: str, family: str, class_names: Sequence[str],
               items: dict[str, np.ndarray], labels: dict[str, np.ndarray],
               encoded: bool, holdout: int = 0):
    if family not in FAMILIES:
      raise ValueError(f"`family` must be one of {FAMILIES}, not {family!r}")
    self.name = name
    self.family = family
    self.class_names = tuple(class_names)
    self.encoded = encoded
    if holdout:
      train, held = _holdout(len(labels["train"]), holdout)
      items["holdout"], labels["holdout"] = items["train"][held], \
          labels["train"][held]
      items["train"], labels["train"] = items["train"][train], \
          labels["train"][train]
    self._items = items
    self._labels = {k: np.asarray(v, np.int32) for k, v in labels.items()}
    self._tensors = {}

  def num_examples(self, split: str) -> int:
    _check_split(split)
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


class SyntheticSource(Source):
  """Random uint8 images and labels, generated from each example's index."""

  def __init__(self, family: str = "cifar", num_classes: Optional[int] = None,
               sizes: Optional[dict[str, int]] = None, seed: int = 0):
    if family not in FAMILIES:
      raise ValueError(f"`family` must be one of {FAMILIES}, not {family!r}")
    self.name = "synthetic"
    self.family = family
    classes = num_classes or (1000 if family == "imagenet" else 10)
    self.class_names = tuple(f"class_{i}" for i in range(classes))
    self.image_size = 224 if family == "imagenet" else 32
    self._sizes = sizes or {"train": 10_000, "test": 1_000}
    self._seed = seed

  def num_examples(self, split: str) -> int:
    _check_split(split)
    return self._sizes.get(split, 0)

  def load(self, split: str, index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    key = tf.stack([tf.cast(index, tf.int64),
                    tf.constant(self._seed * 3 + SPLITS.index(split),
                                tf.int64)])
    image = tf.random.stateless_uniform(
        [self.image_size, self.image_size, 3], key, maxval=256, dtype=tf.int32)
    label = tf.random.stateless_uniform([], key + 1, maxval=self.num_classes,
                                        dtype=tf.int32)
    return tf.cast(image, tf.uint8), label


def digits_source(holdout: int = 0) -> IndexedSource:
  """scikit-learn's handwritten digits (UCI), embedded in its wheel.

  1,797 real 8x8 grayscale images of the digits 0-9 with 17 grey levels,
  scaled to 0-255, resized to the CIFAR family's 32x32 and repeated to RGB.
  Every fifth image (359) is the test split, the rest (1,438) train.
  """
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  images = digits.images[..., None] * (255.0 / 16.0)
  images = tf.image.resize(images, [32, 32], method="bilinear")
  images = np.round(np.repeat(images.numpy(), 3, axis=-1)).clip(0, 255)
  images = images.astype(np.uint8)
  is_test = np.arange(len(images)) % 5 == 0
  return IndexedSource(
      "digits", "cifar", [str(d) for d in range(10)],
      items={"train": images[~is_test], "test": images[is_test]},
      labels={"train": digits.target[~is_test], "test": digits.target[is_test]},
      encoded=False, holdout=holdout)


def _header_ok(path: str) -> Optional[str]:
  """Why a file cannot be a complete JPEG or PNG, or None if it can."""
  try:
    with open(path, "rb") as f:
      head = f.read(8)
      f.seek(0, os.SEEK_END)
      size = f.tell()
      f.seek(max(0, size - 1024))
      tail = f.read()
  except OSError as e:
    return f"unreadable ({e.strerror})"
  if head[:3] == b"\xff\xd8\xff":
    # A complete JPEG ends with the end-of-image marker (some writers append
    # a few bytes after it); a truncated one does not.
    return None if b"\xff\xd9" in tail else "truncated JPEG (no end marker)"
  if head == b"\x89PNG\r\n\x1a\n":
    return None if b"IEND" in tail else "truncated PNG (no IEND chunk)"
  return "not a JPEG or PNG file"


def _list_folder(root: str, split_dir: str, classes: Sequence[str],
                 on_bad_file: str) -> tuple[list[str], list[int]]:
  """The image files of one split and their labels; bad files skipped and logged."""
  candidates, labels, skipped = [], [], []
  for label, name in enumerate(classes):
    class_dir = os.path.join(root, split_dir, name)
    if not os.path.isdir(class_dir):
      continue
    for entry in sorted(os.listdir(class_dir)):
      path = os.path.join(class_dir, entry)
      if not os.path.isfile(path):
        continue
      if entry.lower().endswith(IMAGE_EXTENSIONS):
        candidates.append(path)
        labels.append(label)
      elif not entry.startswith("."):
        skipped.append((path, "not an image file name (.jpg, .jpeg, .png)"))
  with concurrent.futures.ThreadPoolExecutor(16) as pool:
    problems = list(pool.map(_header_ok, candidates))
  paths, kept = [], []
  for path, label, problem in zip(candidates, labels, problems):
    if problem is None:
      paths.append(path)
      kept.append(label)
    else:
      skipped.append((path, problem))
  if skipped:
    if on_bad_file == "fail":
      raise DataError(
          f"{len(skipped)} bad file(s) in {os.path.join(root, split_dir)}, "
          f"e.g. {skipped[0][0]}: {skipped[0][1]} (use on_bad_file='skip' to "
          "skip them)")
    logging.warning("Skipped %d bad file(s) in %s:\n%s", len(skipped),
                    os.path.join(root, split_dir),
                    "\n".join(f"  {p}: {why}" for p, why in skipped))
  return paths, kept


def _image_side(path: str) -> int:
  shape = tf.shape(tf.io.decode_image(tf.io.read_file(path), channels=3,
                                      expand_animations=False))
  return int(max(shape[0], shape[1]))


def folder_source(root: str, family: Optional[str] = None, holdout: int = 0,
                  on_bad_file: str = "skip") -> IndexedSource:
  """An image-folder tree: `root/train/<class>/*` and `root/test/<class>/*` (or `val/`).

  Args:
    root: the tree's root.
    family: `imagenet` or `cifar` preprocessing; None decides from the first
      training image: up to 64 pixels on its longer side means CIFAR (32x32,
      padding and crops), larger means ImageNet (scale augmentation, 224x224
      crops).
    holdout: training examples to hold out as the `holdout` split.
    on_bad_file: `skip` (log and count undecodable or non-image files, then
      go on without them) or `fail`.

  Raises:
    DataError: for a missing tree or split, no classes, or test classes that
      the training split does not have.
  """
  if on_bad_file not in ("skip", "fail"):
    raise ValueError(f"`on_bad_file` must be 'skip' or 'fail', not "
                     f"{on_bad_file!r}")
  train_dir = os.path.join(root, "train")
  if not os.path.isdir(train_dir):
    raise DataError(f"no training data: {train_dir} does not exist (an image "
                    "folder needs train/<class>/* and test/<class>/* or "
                    "val/<class>/*)")
  test_name = next((d for d in ("test", "val")
                    if os.path.isdir(os.path.join(root, d))), None)
  if test_name is None:
    raise DataError(f"no test data: neither {root}/test nor {root}/val exists")
  classes = sorted(d for d in os.listdir(train_dir)
                   if os.path.isdir(os.path.join(train_dir, d)))
  if not classes:
    raise DataError(f"no class folders in {train_dir}")
  test_classes = {d for d in os.listdir(os.path.join(root, test_name))
                  if os.path.isdir(os.path.join(root, test_name, d))}
  unknown = sorted(test_classes - set(classes))
  if unknown:
    raise DataError(f"{root}/{test_name} has classes that train/ does not: "
                    f"{', '.join(unknown)}; their labels would be wrong")
  items, labels = {}, {}
  for split, split_dir in (("train", "train"), ("test", test_name)):
    paths, split_labels = _list_folder(root, split_dir, classes, on_bad_file)
    if not paths:
      raise DataError(f"no readable images in {os.path.join(root, split_dir)}")
    items[split], labels[split] = np.array(paths), np.array(split_labels)
  empty = [c for i, c in enumerate(classes) if not np.any(labels["train"] == i)]
  if empty:
    logging.warning("Class folder(s) without training images in %s: %s",
                    train_dir, ", ".join(empty))
  if family is None:
    family = ("cifar" if _image_side(items["train"][0]) <= CIFAR_MAX_SIDE
              else "imagenet")
  return IndexedSource(f"folder:{root}", family, classes, items, labels,
                       encoded=True, holdout=holdout)


class TfdsImageNet(Source):
  """TFDS's `imagenet2012`, streamed as encoded JPEGs."""

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
      needed = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
      missing = [f for f in needed
                 if not os.path.exists(os.path.join(manual, f))]
      if missing:
        raise DataError(
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
    self.class_names = tuple(info.features["label"].names)
    # Split sizes are known once TFDS has prepared the data (1,281,167 and
    # 50,000); -1 while they are not (TFDS's mock data in tests).
    counts = {name: info.splits[name].num_examples if name in info.splits
              else -1 for name in ("train", "validation")}
    self._holdout = holdout
    if holdout and not 0 < holdout < counts["train"]:
      raise DataError(f"`holdout` must be in [0, {counts['train']}), not "
                      f"{holdout}")
    self._sizes = {"train": counts["train"] - holdout, "holdout": holdout,
                   "test": counts["validation"]}

  def num_examples(self, split: str) -> int:
    _check_split(split)
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

  def stream(self, split, input_context, seed, shuffle):
    tfds = self._tfds
    read_config = tfds.ReadConfig(input_context=input_context,
                                  shuffle_seed=seed,
                                  interleave_cycle_length=16)
    ds = self._builder.as_dataset(
        split=self._tfds_split(split), shuffle_files=shuffle,
        read_config=read_config,
        decoders={"image": tfds.decode.SkipDecoding()})
    return ds.map(lambda x: (x["image"], tf.cast(x["label"], tf.int32)),
                  num_parallel_calls=tf.data.AUTOTUNE)


def tfds_cifar10(data_dir: Optional[str] = None, holdout: int = 0
                 ) -> IndexedSource:
  """TFDS's `cifar10`, held in memory (150 MB) so it is indexed."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder("cifar10", data_dir=data_dir)
  if not builder.is_prepared():
    try:
      builder.download_and_prepare()
    except Exception as e:  # pylint: disable=broad-except
      raise DataError(
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
  return IndexedSource("cifar10", "cifar", names, items, labels,
                       encoded=False, holdout=holdout)


DATASETS_HELP = (
    "imagenet2012 (TFDS; needs the ILSVRC2012 tars in TFDS's manual "
    "directory), cifar10 (TFDS; downloads), folder:PATH (PATH/train/<class>/* "
    "and PATH/test/<class>/* or val/, JPEG or PNG; family from the image size: "
    f"up to {CIFAR_MAX_SIDE}px is CIFAR, larger is ImageNet, unless --family "
    "says), digits (scikit-learn's 1,797 handwritten digits, embedded, no "
    "network; CIFAR family), synthetic (random images of the family's shape)")


def parse(spec: str, *, data_dir: Optional[str] = None,
          family: Optional[str] = None, holdout: int = 0,
          on_bad_file: str = "skip") -> Source:
  """The source a `--dataset` string names.

  Args:
    spec: `imagenet2012`, `cifar10`, `folder:PATH`, `digits` or `synthetic`.
    data_dir: TFDS's data directory (default ~/tensorflow_datasets).
    family: force the `imagenet` or `cifar` family (folders and synthetic
      data; the others have their own).
    holdout: training examples to hold out as the `holdout` split.
    on_bad_file: for folders, `skip` or `fail` on undecodable files.

  Raises:
    ValueError: for an unknown spec or a family that contradicts the data.
    DataError: when the data is missing or unusable.
  """
  if family is not None and family not in FAMILIES:
    raise ValueError(f"`family` must be one of {FAMILIES}, not {family!r}")
  fixed = FIXED_FAMILIES.get(spec)
  if fixed and family not in (None, fixed):
    raise ValueError(f"{spec} is a {fixed}-family data set, not {family}")
  if spec == "imagenet2012":
    return TfdsImageNet(data_dir, holdout)
  if spec == "cifar10":
    return tfds_cifar10(data_dir, holdout)
  if spec == "digits":
    return digits_source(holdout)
  if spec == "synthetic":
    source = SyntheticSource(family or "cifar")
    if holdout:
      raise ValueError("synthetic data has no held-out split")
    return source
  if spec.startswith("folder:") and len(spec) > len("folder:"):
    return folder_source(os.path.expanduser(spec[len("folder:"):]), family,
                         holdout, on_bad_file)
  raise ValueError(f"unknown data set {spec!r}; use one of: {DATASETS_HELP}")
