r"""Converts Keras's or torchvision's pretrained ResNet weights into a run directory.

Examples:
  python -m tf_resnet.convert --source=keras \
      --weights=~/.keras/models/resnet50_weights_tf_dim_ordering_tf_kernels.h5 \
      --model_dir=/runs/keras_resnet50
  python -m tf_resnet.convert --weights=torchvision:resnet50 \
      --model_dir=/runs/tv_resnet50
  python -m tf_resnet.convert --weights=keras:resnet50_notop --num_classes=10 \
      --model_dir=/runs/r50_head10

The run directory (`config.json`, `stats.json`, `labels.txt`, `ckpt-0`)
is what `tf_resnet.train` writes, so `tf_resnet.evaluate`, `tf_resnet.export`
and `tf_resnet.summary` take it as they take a trained run. The conversion
is exact: the outputs equal the source's on the same images.
"""

from tf_resnet import startup

startup.prepare_tensorflow()

# pylint: disable=g-import-not-at-top,g-bad-import-order
from absl import app
from absl import flags

from tf_resnet import cli
from tf_resnet.pretrained import conversion
from tf_resnet.pretrained import mapping
# pylint: enable=g-import-not-at-top,g-bad-import-order

_SOURCE = flags.DEFINE_enum(
    "source", None, list(mapping.SOURCES),
    "Whose weights: keras (keras.applications ResNet50/101/152, the paper's "
    "Caffe models; legacy .h5) or torchvision (ResNet-18...152 state_dict, "
    ".pth or .safetensors). Default: from a named --weights.")
_WEIGHTS = flags.DEFINE_string(
    "weights", None,
    "A weight file, or a name: keras:resnet50[_notop], keras:resnet101, "
    "keras:resnet152, torchvision:resnet18...resnet152, "
    "torchvision:resnet50_v2 (fetched through the source's own cache: "
    "~/.keras/models, ~/.cache/torch/hub/checkpoints).", required=True)
_MODEL_DIR = flags.DEFINE_string("model_dir", None,
                                 "The run directory to write (new).",
                                 required=True)
_DEPTH = flags.DEFINE_integer(
    "depth", None, "The network's depth; default the file's (given, it must "
    "match the file).")
_NUM_CLASSES = flags.DEFINE_integer(
    "num_classes", None, "Classes of a new, freshly initialised head "
    "(required for a _notop file); default the file's classifier.",
    lower_bound=1)
_LABELS = flags.DEFINE_string(
    "labels", "names",
    "Class names for the export: names (ImageNet's human-readable names), "
    "synsets (WordNet ids), or a file with one name per line for a new head.")
_CACHE_DIR = flags.DEFINE_string(
    "cache_dir", None, "For named weights: the Keras or torch home to use "
    "instead of ~/.keras or ~/.cache/torch.")
_DOWNLOAD = flags.DEFINE_bool(
    "download", True, "Download named weights the cache does not hold.")
_SEED = flags.DEFINE_integer("seed", 0, "Initialises a new head.")


def config_from_flags() -> conversion.ConvertConfig:
  """The conversion the flags describe."""
  source = _SOURCE.value
  if source is None:
    prefix = _WEIGHTS.value.partition(":")[0]
    if prefix not in mapping.SOURCES:
      raise app.UsageError("--source is required unless --weights names "
                           "keras:... or torchvision:...")
    source = prefix
  return conversion.ConvertConfig(
      source=source, weights=_WEIGHTS.value, model_dir=_MODEL_DIR.value,
      depth=_DEPTH.value, num_classes=_NUM_CLASSES.value,
      labels=_LABELS.value, cache_dir=_CACHE_DIR.value,
      download=_DOWNLOAD.value, seed=_SEED.value)


def main(argv):
  cli.start(argv)
  try:
    result = conversion.convert(config_from_flags())
  except (conversion.ConversionError, ValueError, OSError) as e:
    cli.fail(str(e))
  head = (f", new {result.model.num_classes}-way head" if result.new_head
          else "")
  print(f"Converted {result.weights_file} into {result.model.display_name}"
        f"{head}: {result.checkpoint}")


def run():
  """Console-script entry point."""
  app.run(main)


if __name__ == "__main__":
  run()
