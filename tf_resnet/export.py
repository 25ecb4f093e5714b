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


from tf_resnet import cli  # Sets TF's log level before TensorFlow loads.
from absl import app  # pylint: disable=g-bad-import-order
from absl import flags
from absl import logging

from tf_resnet.data import sources
from tf_resnet.exporting import serving_module
from tf_resnet.exporting import writer
from tf_resnet.training import run_dir

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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  try:
    trained = run_dir.load(FLAGS.model_dir)
    labels = trained.labels
    if FLAGS.labels:
      with open(FLAGS.labels) as f:
        labels = f.read().splitlines()
    elif labels is None:  # A run from before labels.txt: the data's names.
      labels = list(sources.parse(
          trained.data.dataset, data_dir=trained.data.data_dir,
          family=trained.model.family).class_names)
    model, step, path = run_dir.restore(trained, FLAGS.checkpoint,
                                        FLAGS.best)
  except (run_dir.RunDirError, sources.DataError, OSError) as e:
    cli.fail(str(e))
  try:
    module = serving_module.for_run(
        model, trained.model.family, trained.statistics.mean_image, labels,
        scales=[int(s) for s in FLAGS.scales or []], flip=FLAGS.flip,
        top_k=FLAGS.top_k)
    exported = writer.write(module, FLAGS.export_dir, FLAGS.version,
                            overwrite=FLAGS.overwrite)
  except (ValueError, FileExistsError) as e:
    cli.fail(str(e))
  print(f"Exported {trained.model.display_name} at step {step} "
        f"({path}) to {exported}")


def run():
  """Console-script entry point."""
  app.run(main)


if __name__ == "__main__":
  run()
