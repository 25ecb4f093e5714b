r"""Evaluates a training run's checkpoint in one of the paper's test modes.

Examples:
  python -m tf_resnet.evaluate --model_dir=/runs/resnet34 --eval_mode=10crop
  python -m tf_resnet.evaluate --model_dir=/runs/r20 --format=json

The network, data set, mean image and input options come from the run
(`config.json` and `stats.json` in --model_dir); --dataset and --data_dir
override where the examples are read from (the same classes, in the same
order, are required).
"""

import json

from tf_resnet import startup

startup.prepare_tensorflow()

# pylint: disable=g-import-not-at-top,g-bad-import-order
from absl import app
from absl import flags

from tf_resnet import cli
from tf_resnet import families
from tf_resnet.data import pipeline
from tf_resnet.data import sources
from tf_resnet.training import evaluation
from tf_resnet.training import run_dir
# pylint: enable=g-import-not-at-top,g-bad-import-order

_RUN = cli.define_run_flags("evaluate")
_DATASET = flags.DEFINE_string(
    "dataset", None,
    f"Override the run's data set (same classes): {sources.DATASETS_HELP}.")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "Override TFDS's data directory.")
_SPLIT = flags.DEFINE_enum(
    "split", "test", list(sources.SPLITS),
    "The split to evaluate (test: CIFAR's test set, ImageNet's validation "
    "set, the folder's test/ or val/).")
_EVAL_MODE = flags.DEFINE_enum(
    "eval_mode", "center", list(pipeline.EVAL_MODES),
    "center: a single view (ImageNet: the 224x224 centre crop of the "
    "256-resized image; CIFAR: the image). 10crop: four corners and the "
    "centre, and their flips, scores averaged. multiscale: the "
    "fully-convolutional net on the whole image with its shorter side at "
    "each --scales, scores averaged.")
_SCALES = flags.DEFINE_list(
    "scales", None, "Shorter sides for multiscale (default "
    f"{','.join(map(str, families.IMAGENET.test_scales))}).")
_FLIP = flags.DEFINE_bool("flip", False,
                          "multiscale: also average mirrored views.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 100, "Examples per batch.",
                                   lower_bound=1)
_MAX_EXAMPLES = flags.DEFINE_integer("max_examples", None,
                                     "Evaluate at most this many.",
                                     lower_bound=1)
_FORMAT = flags.DEFINE_enum(
    "format", "table", ["table", "json"],
    "table: a few readable lines. json: one line with top1_error, "
    "top5_error, step, examples and the setting.")


def main(argv):
  cli.start(argv)
  try:
    trained = run_dir.load(_RUN.model_dir.value)
  except run_dir.RunDirError as e:
    cli.fail(str(e))
  model_config, data_config = trained.model, trained.data
  input_config, statistics = trained.input, trained.statistics
  try:
    source = sources.parse(_DATASET.value or data_config.dataset,
                           data_dir=_DATA_DIR.value or data_config.data_dir,
                           family=model_config.family,
                           holdout=(0 if _DATASET.value
                                    else data_config.holdout),
                           on_bad_file=data_config.on_bad_file)
    if source.num_classes != model_config.num_classes:
      raise ValueError(f"{source.name} has {source.num_classes} classes; the "
                       f"run's network has {model_config.num_classes}")
    if _SCALES.value:
      input_config = pipeline.InputConfig(
          **{**input_config.__dict__,
             "test_scales": tuple(int(s) for s in _SCALES.value)})
    input_config = pipeline.InputConfig(
        **{**input_config.__dict__, "test_flip": _FLIP.value})
    dataset = pipeline.eval_dataset(source, statistics, input_config,
                                    split=_SPLIT.value, mode=_EVAL_MODE.value,
                                    batch_size=_BATCH_SIZE.value)
  except (sources.DataError, ValueError) as e:
    cli.fail(str(e))

  try:
    model, step, path = run_dir.restore(trained, _RUN.checkpoint.value,
                                        _RUN.best.value)
  except run_dir.RunDirError as e:
    cli.fail(str(e))
  result = evaluation.Evaluator(model, _EVAL_MODE.value).evaluate(
      dataset, max_examples=_MAX_EXAMPLES.value)
  record = {**result.to_json(), "step": step,
            "checkpoint": path, "eval_mode": _EVAL_MODE.value,
            "split": _SPLIT.value, "dataset": source.name,
            "model": model_config.display_name}
  if _FORMAT.value == "json":
    print(json.dumps(record))
  else:
    print(f"{model_config.display_name} at step {record['step']} "
          f"({path})\n{source.name} {_SPLIT.value}, {_EVAL_MODE.value}: "
          f"top-1 error {result.top1_error:.4f}, top-5 error "
          f"{result.top5_error:.4f} over {result.examples} examples")


def run():
  """Console-script entry point."""
  app.run(main)


if __name__ == "__main__":
  run()
