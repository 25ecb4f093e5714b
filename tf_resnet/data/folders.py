"""Image folders: `root/train/<class>/*` and `root/test/<class>/*` (or `val/`).

The tree is scanned once: class names are the sorted folder names, files are
checked for a complete JPEG or PNG (header and end marker) so that truncated
or mislabelled files are skipped at listing (logged with their paths) rather
than failing mid-run, and the family is decided from the first training
image's size unless given.
"""

import concurrent.futures
import os
from typing import Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from tf_resnet.data import base

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
# Folder images up to this size get the CIFAR family's preprocessing.
CIFAR_MAX_SIDE = 64


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
      raise base.DataError(
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
                  on_bad_file: str = "skip") -> base.IndexedSource:
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

  Returns:
    The source, indexed, of encoded images.

  Raises:
    DataError: for a missing tree or split, no classes, or test classes that
      the training split does not have.
  """
  if on_bad_file not in ("skip", "fail"):
    raise ValueError(f"`on_bad_file` must be 'skip' or 'fail', not "
                     f"{on_bad_file!r}")
  train_dir = os.path.join(root, "train")
  if not os.path.isdir(train_dir):
    raise base.DataError(
        f"no training data: {train_dir} does not exist (an image folder needs "
        "train/<class>/* and test/<class>/* or val/<class>/*)")
  test_name = next((d for d in ("test", "val")
                    if os.path.isdir(os.path.join(root, d))), None)
  if test_name is None:
    raise base.DataError(f"no test data: neither {root}/test nor {root}/val "
                         "exists")
  classes = sorted(d for d in os.listdir(train_dir)
                   if os.path.isdir(os.path.join(train_dir, d)))
  if not classes:
    raise base.DataError(f"no class folders in {train_dir}")
  test_classes = {d for d in os.listdir(os.path.join(root, test_name))
                  if os.path.isdir(os.path.join(root, test_name, d))}
  unknown = sorted(test_classes - set(classes))
  if unknown:
    raise base.DataError(f"{root}/{test_name} has classes that train/ does "
                         f"not: {', '.join(unknown)}; their labels would be "
                         "wrong")
  items, labels = {}, {}
  for split, split_dir in (("train", "train"), ("test", test_name)):
    paths, split_labels = _list_folder(root, split_dir, classes, on_bad_file)
    if not paths:
      raise base.DataError(
          f"no readable images in {os.path.join(root, split_dir)}")
    items[split], labels[split] = np.array(paths), np.array(split_labels)
  empty = [c for i, c in enumerate(classes) if not np.any(labels["train"] == i)]
  if empty:
    logging.warning("Class folder(s) without training images in %s: %s",
                    train_dir, ", ".join(empty))
  if family is None:
    family = ("cifar" if _image_side(items["train"][0]) <= CIFAR_MAX_SIDE
              else "imagenet")
  return base.IndexedSource(f"folder:{root}", family, classes, items, labels,
                            encoded=True, holdout=holdout)
