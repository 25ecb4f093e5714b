r"""Shows a network of the paper like its Table 1, with parameters and multiply-adds.

Examples:
  python -m tf_resnet.summary --depth=34
  python -m tf_resnet.summary --dataset=cifar10 --depth=110 --format=json
  python -m tf_resnet.summary --model=plain --depth=34
  python -m tf_resnet.summary --zoo          # every network beside the paper
"""

import json
import sys

from tf_resnet import startup

startup.prepare_tensorflow()

# pylint: disable=g-import-not-at-top,g-bad-import-order
from absl import app
from absl import flags

from tf_resnet import cli
from tf_resnet import families
from tf_resnet.analysis import describe
# pylint: enable=g-import-not-at-top,g-bad-import-order

_DATASET = flags.DEFINE_enum(
    "dataset", families.IMAGENET.dataset,
    [f.dataset for f in families.FAMILIES.values()],
    "Data set the network is built for: "
    + "; ".join(f"{f.dataset}: the {f.description} family"
                for f in families.FAMILIES.values()) + ".")
_MODEL = cli.define_model_flags()
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

cli.validate_network(
    lambda values: families.DATASET_FAMILIES[values["dataset"]], ["dataset"])


def main(argv):
  cli.start(argv)
  if _ZOO.value:
    summaries = [describe.summarize(c) for c in describe.paper_configs()]
    if _FORMAT.value == "json":
      for s in summaries:
        print(json.dumps(s.to_json()))
    else:
      print(describe.format_zoo(summaries))
    return
  config = _MODEL.config(families.DATASET_FAMILIES[_DATASET.value])
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
