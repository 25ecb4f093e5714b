r"""Exports a training run as a SavedModel for TensorFlow Serving and any TF2 program.

Examples:
  python -m tf_resnet.export --model_dir=/runs/r50 --export_dir=/models/resnet
  python -m tf_resnet.export --model_dir=/runs/r20 --export_dir=/models/r20 \
      --version=7 --top_k=3

Writes `export_dir/<version>/` atomically (default version: one above the
highest there). The network, mean image and class names come from the run
(`config.json`, `stats.json`, `labels.txt`) and its checkpoint, never from
these flags. Signatures: `serving_default` and `classification` (classify on
tf.Example `image/encoded`, multi-scale), `predict` (image bytes),
`predict_images` (uint8 images), and the fast single-view
`classify_single_view` and `predict_single_view`.
"""

import os

from tf_resnet import cli  # Sets TF's log level before TensorFlow loads.
from absl import app  # pylint: disable=g-bad-import-order
from absl import flags
from absl import logging
import tensorflow as tf

from tf_resnet.data import sources
from tf_resnet.data import stats as stats_lib
from tf_resnet.exporting import serving_module
from tf_resnet.exporting import writer
from tf_resnet.model import zoo
from tf_resnet.training import config as config_lib
from tf_resnet.training import loop

FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None, "The training run to export.")
flags.DEFINE_string("checkpoint", None,
                    "A checkpoint path (default: the latest in --model_dir).")
flags.DEFINE_bool("best", False, "Export the best checkpoint by validation "
                  "error (--model_dir/best) instead of the latest.")
flags.DEFINE_string("export_dir", None,
                    "The model's base path; the export goes in a numbered "
                    "subdirectory.")
flags.DEFINE_integer("version", None,
                     "Version number (default: one above the highest).")
flags.DEFINE_bool("overwrite", False, "Replace an existing version.")
flags.DEFINE_list("scales", None,
                  "Shorter sides of the multi-scale test (default "
                  "224,256,384,480,640 for ImageNet; CIFAR's native 32x32).")
flags.DEFINE_bool("flip", False, "Also average the mirrored views.")
flags.DEFINE_integer("top_k", 5, "Classes returned per image.")
flags.DEFINE_string("labels", None,
                    "A file with one class name per line (default: the run's "
                    "labels.txt: TFDS's names, CIFAR's, the folder names).")
flags.mark_flags_as_required(["model_dir", "export_dir"])


def _read(path: str) -> str:
  if not tf.io.gfile.exists(path):
    cli.fail(f"{path} does not exist: --model_dir must be a training run of "
             "tf_resnet.train")
  with tf.io.gfile.GFile(path) as f:
    return f.read()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  text = _read(os.path.join(FLAGS.model_dir, loop.CONFIG_FILE))
  model_config = config_lib.model_config_from_json(text)
  statistics = stats_lib.Statistics.from_json(
      _read(os.path.join(FLAGS.model_dir, loop.STATS_FILE)))
  labels_file = FLAGS.labels or os.path.join(FLAGS.model_dir,
                                             loop.LABELS_FILE)
  if FLAGS.labels or tf.io.gfile.exists(labels_file):
    labels = _read(labels_file).splitlines()
  else:  # A run from before labels.txt: the data set's names.
    data = config_lib.data_config_from_json(text)
    try:
      labels = list(sources.parse(data.dataset, data_dir=data.data_dir,
                                  family=model_config.family).class_names)
    except (sources.DataError, ValueError) as e:
      cli.fail(f"no {labels_file} and the run's data set is unavailable "
               f"({e}); pass --labels")
  model = zoo.build_model(model_config)
  step = tf.Variable(0, dtype=tf.int64)
  directory = (os.path.join(FLAGS.model_dir, loop.BEST_DIR) if FLAGS.best
               else FLAGS.model_dir)
  path = FLAGS.checkpoint or tf.train.latest_checkpoint(directory)
  if not path:
    cli.fail(f"no checkpoint in {directory}")
  try:
    tf.train.Checkpoint(model=model, step=step).read(
        path).expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    cli.fail(f"{path} does not hold a {model_config.display_name} as "
             f"{FLAGS.model_dir}/config.json describes: {str(e)[:300]}")
  try:
    module = serving_module.for_run(
        model, model_config.family, statistics.mean_image, labels,
        scales=[int(s) for s in FLAGS.scales or []], flip=FLAGS.flip,
        top_k=FLAGS.top_k)
    exported = writer.write(module, FLAGS.export_dir, FLAGS.version,
                            overwrite=FLAGS.overwrite)
  except (ValueError, FileExistsError) as e:
    cli.fail(str(e))
  print(f"Exported {model_config.display_name} at step {int(step)} "
        f"({path}) to {exported}")


def run():
  """Console-script entry point."""
  app.run(main)


if __name__ == "__main__":
  run()
