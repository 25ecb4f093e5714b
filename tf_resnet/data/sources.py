"""Where examples come from: one `--dataset` string names a source, `parse` builds it.

* `imagenet2012`: TFDS's ImageNet builder (manual download; a clear error
  says which files to put where when it is missing).
* `cifar10`: TFDS's CIFAR-10 builder (downloads where there is network).
* `folder:PATH`: `PATH/train/<class>/*` and `PATH/test/<class>/*` (or
  `val/`), JPEG or PNG; class names are the sorted folder names.
* `digits`: scikit-learn's handwritten digits (1,797 real 8x8 images shipped
  inside its wheel), resized to 32x32 RGB: the embedded default that needs no
  network.
* `synthetic`: random images and labels of the family's shape.

This is the entry module: the interface (`Source`, `DataError`, the splits
and families) lives in `base`, each kind of source in its own module
(`folders`, `tfds_sources`, `digits`, `synthetic`); the names callers use
are re-exported here.
"""

import os
from typing import Optional

from tf_resnet import families
from tf_resnet.data import base
from tf_resnet.data import digits
from tf_resnet.data import folders
from tf_resnet.data import synthetic
from tf_resnet.data import tfds_sources

DataError = base.DataError
FAMILIES = base.FAMILIES
SPLITS = base.SPLITS
Source = base.Source
IndexedSource = base.IndexedSource
SyntheticSource = synthetic.SyntheticSource
TfdsImageNet = tfds_sources.TfdsImageNet
digits_source = digits.digits_source
folder_source = folders.folder_source
tfds_cifar10 = tfds_sources.tfds_cifar10

# Data sets whose network family is fixed by the data itself.
FIXED_FAMILIES = families.DATASET_FAMILIES

DATASETS_HELP = (
    "imagenet2012 (TFDS; needs the ILSVRC2012 tars in TFDS's manual "
    "directory), cifar10 (TFDS; downloads), folder:PATH (PATH/train/<class>/* "
    "and PATH/test/<class>/* or val/, JPEG or PNG; family from the image size: "
    f"up to {folders.CIFAR_MAX_SIDE}px is CIFAR, larger is ImageNet, unless "
    "--family says), digits (scikit-learn's 1,797 handwritten digits, "
    "embedded, no network; CIFAR family), synthetic (random images of the "
    "family's shape)")


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

  Returns:
    The source.

  Raises:
    ValueError: for an unknown spec or a family that contradicts the data.
    DataError: when the data is missing or unusable.
  """
  if family is not None:
    base.check_family(family)
  fixed = FIXED_FAMILIES.get(spec)
  if fixed and family not in (None, fixed):
    raise ValueError(f"{spec} is a {fixed}-family data set, not {family}")
  if spec == "imagenet2012":
    return tfds_sources.TfdsImageNet(data_dir, holdout)
  if spec == "cifar10":
    return tfds_sources.tfds_cifar10(data_dir, holdout)
  if spec == "digits":
    return digits.digits_source(holdout)
  if spec == "synthetic":
    if holdout:
      raise ValueError("synthetic data has no held-out split")
    return synthetic.SyntheticSource(family or "cifar")
  if spec.startswith("folder:") and len(spec) > len("folder:"):
    return folders.folder_source(os.path.expanduser(spec[len("folder:"):]),
                                 family, holdout, on_bad_file)
  raise ValueError(f"unknown data set {spec!r}; use one of: {DATASETS_HELP}")
