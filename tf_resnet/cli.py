"""Flags shared by the binaries, and their conversion to configs.

Only the binaries (train, evaluate, benchmarks) import this module; the
library takes configs, never flags.
"""

import os
import sys
from typing import Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # pylint: disable=g-import-not-at-top

from tf_resnet.data import sources
from tf_resnet.model import resnet
from tf_resnet.model import zoo


def define_data_flags() -> None:
  """--dataset, --data_dir, --family, --holdout, --on_bad_file."""
  flags.DEFINE_string("dataset", "imagenet2012",
                      f"The data set: {sources.DATASETS_HELP}.")
  flags.DEFINE_string("data_dir", None,
                      "TFDS's data directory (default ~/tensorflow_datasets).")
  flags.DEFINE_enum("family", None, list(sources.FAMILIES),
                    "Network family and preprocessing for folder: and "
                    "synthetic data: imagenet (Table 1 nets, scale "
                    "augmentation, 224x224 crops) or cifar (section 4.2 "
                    "nets, 32x32, pad-and-crop). Default: from the model "
                    "flags for synthetic, from the image size for folders.")
  flags.DEFINE_integer("holdout", 0,
                       "Training examples held out as a validation split "
                       "(the paper's CIFAR split is 45k/5k: --holdout=5000).")
  flags.DEFINE_enum("on_bad_file", "skip", ["skip", "fail"],
                    "What to do with undecodable or non-image files: skip "
                    "them (counted and logged with their paths) or fail.")


def define_model_flags() -> None:
  """--model, --depth, --shortcut."""
  flags.DEFINE_enum("model", "resnet", list(zoo.ARCHITECTURES),
                    "resnet: residual network. plain: the same stack without "
                    "shortcuts. vgg19: VGG-19 (ImageNet family).")
  flags.DEFINE_integer("depth", None,
                       "Weight layers. ImageNet: 18, 34, 50, 101, 152 "
                       "(default 34). CIFAR-10: 6n+2, e.g. 20, 32, 44, 56, "
                       "110, 1202 (default 20).")
  flags.DEFINE_enum("shortcut", None, ["A", "B", "C"],
                    "Shortcut option (section 3.3). A: identity, zero-"
                    "padded where dimensions grow. B: projections where "
                    "dimensions grow. C: projections everywhere. Default: B "
                    "on ImageNet, A on CIFAR-10.")


def family_hint(dataset: str, family: Optional[str], model: str,
                depth: Optional[int]) -> Optional[str]:
  """The network family the flags imply, or None to decide from a folder's images.

  Synthetic data takes the model's family: Table 1's depths (and VGG-19, and
  no depth) mean ImageNet, any other 6n+2 depth CIFAR-10.
  """
  if family:
    return family
  if dataset == "synthetic":
    return ("imagenet" if depth is None or model == "vgg19"
            or depth in resnet.IMAGENET_STAGES else "cifar")
  return None


def fail(message: str) -> None:
  """Ends a binary with a one-line error on stderr and exit status 1."""
  sys.stderr.write(f"error: {message}\n")
  sys.exit(1)
