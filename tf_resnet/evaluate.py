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

from tf_resnet import cli  # Sets TF's log level before TensorFlow loads.
from absl import app  # pylint: disable=g-bad-import-order
from absl import flags
from absl import logging

from tf_resnet.data import pipeline
from tf_resnet.data import sources
from tf_resnet.training import evaluation
from tf_resnet.training import run_dir

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "The training run to evaluate.")
flags.DEFINE_string("checkpoint", None,
                    "A checkpoint path (default: the latest in --model_dir).")
flags.DEFINE_bool("best", False,
                  "Evaluate the checkpoint with the best validation error "
                  "(--model_dir/best) instead of the latest.")
flags.DEFINE_string("dataset", None,
                    "Override the run's data set (same classes): "
                    f"{sources.DATASETS_HELP}.")
flags.DEFINE_string("data_dir", None, "Override TFDS's data directory.")
flags.DEFINE_enum("split", "test", list(sources.SPLITS),
                  "The split to evaluate (test: CIFAR's test set, ImageNet's "
                  "validation set, the folder's test/ or val/).")
flags.DEFINE_enum("eval_mode", "center", list(pipeline.EVAL_MODES),
                  "center: a single view (ImageNet: the 224x224 centre crop "
                  "of the 256-resized image; CIFAR: the image). 10crop: four "
                  "corners and the centre, and their flips, scores averaged. "
                  "multiscale: the fully-convolutional net on the whole image "
                  "with its shorter side at each --scales, scores averaged.")
flags.DEFINE_list("scales", None,
                  "Shorter sides for multiscale (default 224,256,384,480,640).")
flags.DEFINE_bool("flip", False, "multiscale: also average mirrored views.")
flags.DEFINE_integer("batch_size", 100, "Examples per batch.")
flags.DEFINE_integer("max_examples", None, "Evaluate at most this many.")
flags.DEFINE_enum("format", "table", ["table", "json"],
                  "table: a few readable lines. json: one line with "
                  "top1_error, top5_error, step, examples and the setting.")
flags.mark_flag_as_required("model_dir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  try:
    trained = run_dir.load(FLAGS.model_dir)
  except run_dir.RunDirError as e:
    cli.fail(str(e))
  model_config, data_config = trained.model, trained.data
  input_config, statistics = trained.input, trained.statistics
  try:
    source = sources.parse(FLAGS.dataset or data_config.dataset,
                           data_dir=FLAGS.data_dir or data_config.data_dir,
                           family=model_config.family,
                           holdout=(0 if FLAGS.dataset
                                    else data_config.holdout),
                           on_bad_file=data_config.on_bad_file)
    if source.num_classes != model_config.num_classes:
      raise ValueError(f"{source.name} has {source.num_classes} classes; the "
                       f"run's network has {model_config.num_classes}")
    if FLAGS.scales:
      input_config = pipeline.InputConfig(
          **{**input_config.__dict__,
             "test_scales": tuple(int(s) for s in FLAGS.scales)})
    input_config = pipeline.InputConfig(
        **{**input_config.__dict__, "test_flip": FLAGS.flip})
    dataset = pipeline.eval_dataset(source, statistics, input_config,
                                    split=FLAGS.split, mode=FLAGS.eval_mode,
                                    batch_size=FLAGS.batch_size)
  except (sources.DataError, ValueError) as e:
    cli.fail(str(e))

  try:
    model, step, path = run_dir.restore(trained, FLAGS.checkpoint,
                                        FLAGS.best)
  except run_dir.RunDirError as e:
    cli.fail(str(e))
  result = evaluation.Evaluator(model, FLAGS.eval_mode).evaluate(
      dataset, max_examples=FLAGS.max_examples)
  record = {**result.to_json(), "step": step,
            "checkpoint": path, "eval_mode": FLAGS.eval_mode,
            "split": FLAGS.split, "dataset": source.name,
            "model": model_config.display_name}
  if FLAGS.format == "json":
    print(json.dumps(record))
  else:
    print(f"{model_config.display_name} at step {record['step']} "
          f"({path})\n{source.name} {FLAGS.split}, {FLAGS.eval_mode}: "
          f"top-1 error {result.top1_error:.4f}, top-5 error "
          f"{result.top5_error:.4f} over {result.examples} examples")


def run():
  """Console-script entry point."""
  app.run(main)


if __name__ == "__main__":
  run()
