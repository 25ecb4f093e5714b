r"""Exports a training run as a SavedModel for TensorFlow Serving and any TF2 program.

Examples:
  python -m tf_resnet.export --model_dir=/runs/r50 --export_dir=/models/resnet
  python -m tf_resnet.export --model_dir=/runs/r20 --export_dir=/models/r20 \
      --version=7 --top_k=3
  python -m tf_resnet.export --model_dir=/runs/r50 --export_dir=/models/resnet \
      --serving_default=predict   # TF Serving's ResNet tutorial's interface

Writes `export_dir/<version>/` atomically (default version: one above the
highest there). The network, mean image and class names come from the run
(`config.json`, `stats.json`, `labels.txt`) and its checkpoint, never from
these flags. Signatures: `serving_default` and `classification` (classify on
tf.Example `image/encoded`, multi-scale), `predict` (image bytes),
`predict_images` (uint8 images), and the fast single-view
`classify_single_view` and `predict_single_view`. With
--serving_default=predict, `serving_default` is `predict` instead (`image_bytes`
-> `classes`, `probabilities`, ...: the Estimator-era ResNet export that TF
Serving's ResNet tutorial and its pre-2021 example clients call); every other
signature stays.
"""


from tf_resnet import startup

startup.prepare_tensorflow()

# pylint: disable=g-import-not-at-top,g-bad-import-order
from absl import app
from absl import flags
from absl import logging

from tf_resnet import cli
from tf_resnet import families
from tf_resnet import hardware
from tf_resnet.data import sources
from tf_resnet.exporting import serving_module
from tf_resnet.exporting import writer
from tf_resnet.training import run_dir
# pylint: enable=g-import-not-at-top,g-bad-import-order

_RUN = cli.define_run_flags("export")
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", None, "The model's base path; the export goes in a "
    "numbered subdirectory.", required=True)
_VERSION = flags.DEFINE_integer(
    "version", None, "Version number (default: one above the highest).",
    lower_bound=1)
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Replace an existing version.")
_SCALES = flags.DEFINE_list(
    "scales", None, "Shorter sides of the multi-scale test (default "
    f"{','.join(map(str, families.IMAGENET.test_scales))} for ImageNet; "
    "CIFAR's native 32x32).")
_FLIP = flags.DEFINE_bool("flip", False, "Also average the mirrored views.")
_TOP_K = flags.DEFINE_integer("top_k", 5, "Classes returned per image.",
                              lower_bound=1)
_PRECISION = flags.DEFINE_enum(
    "precision", "float32", list(serving_module.PRECISIONS),
    "What the network computes in: float32, or bfloat16 (fast on CPUs with "
    "AMX or AVX-512 and on recent GPUs; on other CPUs TensorFlow runs it on "
    "slow reference kernels, and this binary warns) or float16 (GPUs). "
    "Outputs stay float32.")
_SERVING_DEFAULT = flags.DEFINE_enum(
    "serving_default", "classify", list(serving_module.SERVING_DEFAULTS),
    "What the `serving_default` signature is: `classify` (tf.Example in, "
    "label names and scores out, as `classification`) or `predict` (JPEG or "
    "PNG bytes in `image_bytes`, outputs `classes` and `probabilities`, as "
    "`predict`): the interface TF Serving's ResNet tutorial clients call.")
_LABELS = flags.DEFINE_string(
    "labels", None, "A file with one class name per line (default: the "
    "run's labels.txt: TFDS's names, CIFAR's, the folder names).")


def main(argv):
  cli.start(argv)
  try:
    trained = run_dir.load(_RUN.model_dir.value)
    labels = trained.labels
    if _LABELS.value:
      with open(_LABELS.value) as f:
        labels = f.read().splitlines()
    elif labels is None:  # A run from before labels.txt: the data's names.
      labels = list(sources.parse(
          trained.data.dataset, data_dir=trained.data.data_dir,
          family=trained.model.family).class_names)
    model, step, path = run_dir.restore(trained, _RUN.checkpoint.value,
                                        _RUN.best.value)
  except (run_dir.RunDirError, sources.DataError, OSError) as e:
    cli.fail(str(e))
  slow = hardware.slow_compute_warning(
      serving_module.PRECISIONS[_PRECISION.value],
      f"--precision={_PRECISION.value}")
  if slow:
    logging.warning(slow + " (The export runs anywhere; this is about "
                    "serving it on a machine like this one.)")
  try:
    module = serving_module.for_run(
        model, trained.model.family, trained.statistics.mean_image, labels,
        scales=[int(s) for s in _SCALES.value or []], flip=_FLIP.value,
        top_k=_TOP_K.value, precision=_PRECISION.value,
        serving_default=_SERVING_DEFAULT.value)
    exported = writer.write(module, _EXPORT_DIR.value, _VERSION.value,
                            overwrite=_OVERWRITE.value)
  except (ValueError, FileExistsError) as e:
    cli.fail(str(e))
  print(f"Exported {trained.model.display_name} at step {step} "
        f"({path}) to {exported}")


def run():
  """Console-script entry point."""
  app.run(main)


if __name__ == "__main__":
  run()
