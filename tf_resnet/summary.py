r"""Shows a network of the paper like its Table 1, with parameters and multiply-adds.

Examples:
  python -m tf_resnet.summary --depth=34
  python -m tf_resnet.summary --dataset=cifar10 --depth=110 --format=json
  python -m tf_resnet.summary --model=plain --depth=34
  python -m tf_resnet.summary --zoo          # every network beside the paper
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from tf_resnet.model import describe
from tf_resnet.model import zoo

# The paper's data sets and the network family each one trains.
DATASET_FAMILIES = {"imagenet2012": "imagenet", "cifar10": "cifar"}

_DATASET = flags.DEFINE_enum(
    "dataset", "imagenet2012", list(DATASET_FAMILIES),
    "Data set the network is built for. imagenet2012: the ImageNet family "
    "(Table 1: 7x7/2 stem, four stages, 224x224 crops, 1000 classes). "
    "cifar10: the CIFAR-10 family (section 4.2: 6n+2 layers, 32x32, 10 "
    "classes).")
_MODEL = flags.DEFINE_enum(
    "model", "resnet", list(zoo.ARCHITECTURES),
    "resnet: residual network. plain: the same stack without shortcuts. "
    "vgg19: VGG-19, the paper's Fig. 3 reference (ImageNet only).")
_DEPTH = flags.DEFINE_integer(
    "depth", None,
    "Weight layers. ImageNet: 18, 34, 50, 101 or 152 (default 34). CIFAR-10: "
    "6n+2, e.g. 20, 32, 44, 56, 110, 1202 (default 20). VGG: 19.")
_SHORTCUT = flags.DEFINE_enum(
    "shortcut", None, ["A", "B", "C"],
    "Shortcut option of section 3.3 for a ResNet. A: identity, zero-padded "
    "where dimensions grow. B: projections where dimensions grow. C: "
    "projections everywhere. Default: B on ImageNet, A on CIFAR-10, as in "
    "the paper.")
_INPUT_SIZE = flags.DEFINE_integer(
    "input_size", None,
    "Square input size to count at (default: 224 on ImageNet, 32 on "
    "CIFAR-10, where the paper's figures hold). Larger inputs show the "
    "fully-convolutional network's cost at test scales.")
_FORMAT = flags.DEFINE_enum(
    "format", "table", ["table", "json"],
    "table: the layout of the paper's Table 1. json: one line with `params`, "
    "`multiply_adds`, the paper's figures and the rows.")
_ZOO = flags.DEFINE_bool(
    "zoo", False,
    "Summarize every network of the paper (ImageNet and CIFAR-10, residual, "
    "plain and VGG-19) beside its published size and cost, one line each.")


def _model_config() -> zoo.ModelConfig:
  return zoo.ModelConfig(family=DATASET_FAMILIES[_DATASET.value],
                         architecture=_MODEL.value, depth=_DEPTH.value,
                         shortcut=_SHORTCUT.value)


@flags.multi_flags_validator(["dataset", "model", "depth", "shortcut"],
                             message="invalid network")
def _check_network(values) -> bool:
  """Rejects a network the paper's families do not have, before any work."""
  try:
    zoo.ModelConfig(family=DATASET_FAMILIES[values["dataset"]],
                    architecture=values["model"], depth=values["depth"],
                    shortcut=values["shortcut"])
  except ValueError as e:
    raise flags.ValidationError(str(e)) from None
  return True


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if _ZOO.value:
    summaries = [describe.summarize(c) for c in describe.paper_configs()]
    if _FORMAT.value == "json":
      for s in summaries:
        print(json.dumps(s.to_json()))
    else:
      print(describe.format_zoo(summaries))
    return
  config = _model_config()
  min_size = config.input_size
  if _INPUT_SIZE.value is not None and _INPUT_SIZE.value < min_size:
    raise app.UsageError(f"--input_size must be at least {min_size} for the "
                         f"{config.family} family, not {_INPUT_SIZE.value}")
  summary = describe.summarize(config, _INPUT_SIZE.value)
  if _FORMAT.value == "json":
    print(json.dumps(summary.to_json()))
  else:
    print(describe.format_table(summary))


def run():
  """Console-script entry point."""
  app.run(main)


if __name__ == "__main__":
  sys.exit(run())
