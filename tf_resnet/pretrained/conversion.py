"""Converting a source's weight file into a run directory, as if training had produced it.

`convert(config)` reads the file, maps it onto the network
(`mapping`), restores it into a freshly built network (checking every
variable's shape) and writes what `tf_resnet.train` writes and
`tf_resnet.evaluate`, `tf_resnet.export` and `tf_resnet.summary` read:
`config.json`, `stats.json` (the source's mean as the mean image),
`labels.txt` (ImageNet's class names) and a checkpoint `ckpt-0` of the
network and step 0.
"""

import dataclasses
import os
from typing import Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from tf_resnet.data import stats as stats_lib
from tf_resnet.data import transforms
from tf_resnet.model import zoo
from tf_resnet.pretrained import labels as labels_lib
from tf_resnet.pretrained import mapping
from tf_resnet.pretrained import named
from tf_resnet.pretrained import readers
from tf_resnet.training import config as config_lib
from tf_resnet.training import run_dir

ConversionError = readers.ConversionError


@dataclasses.dataclass(frozen=True)
class ConvertConfig:
  """What to convert and where to.

  Attributes:
    source: `keras` or `torchvision`.
    weights: a file path, or a name such as `keras:resnet50` or
      `torchvision:resnet50` (`named.lookup`).
    model_dir: the run directory to write (new or empty).
    depth: the network's depth; None takes the file's (given, it must
      match the file).
    num_classes: None keeps the file's classifier; another number (or any
      number for a file without a classifier) builds a new, freshly
      initialised head.
    labels: `names` or `synsets` for ImageNet's 1,000 classes; for a new
      head, a file with one class name per line (default `class_0`, ...).
    cache_dir: the Keras or torch home for named weights (default the
      source's own).
    download: download named weights the cache lacks.
    seed: initialises a new head.
  """

  source: str
  weights: str
  model_dir: str
  depth: Optional[int] = None
  num_classes: Optional[int] = None
  labels: str = "names"
  cache_dir: Optional[str] = None
  download: bool = True
  seed: int = 0

  def __post_init__(self):
    if self.source not in mapping.SOURCES:
      raise ValueError(f"`source` must be one of {mapping.SOURCES}, not "
                       f"{self.source!r}")
    if self.num_classes is not None and self.num_classes < 1:
      raise ValueError(f"`num_classes` must be positive, not "
                       f"{self.num_classes}")


@dataclasses.dataclass(frozen=True)
class Result:
  """What `convert` wrote."""

  model_dir: str
  checkpoint: str
  model: zoo.ModelConfig
  weights_file: str
  new_head: bool
  network: tf.Module


def resolve_weights(config: ConvertConfig) -> str:
  """The weight file's local path: the path given, or a named file from its cache.

  Raises:
    ConversionError: for a name of the other source, an unknown name, or a
      named file that is neither cached nor downloadable.
  """
  if os.path.exists(config.weights) or ":" not in config.weights:
    return config.weights
  wanted = named.lookup(config.weights, config.cache_dir)
  if wanted.source != config.source:
    raise ConversionError(f"--weights={config.weights} is a {wanted.source} "
                          f"file but --source={config.source}")
  return named.fetch(wanted, download=config.download)


def read(source: str, path: str) -> dict[str, np.ndarray]:
  """A source's weight file as {name: array}."""
  if source == "keras":
    return readers.read_keras_h5(path)
  return readers.read_torch(path)


def load_into(network: tf.Module, converted: mapping.Converted,
              path: str) -> None:
  """Assigns the converted weights to the network's variables.

  Raises:
    ConversionError: naming the variable, for a shape that differs or a
      variable the file does not provide (other than a new head's).
  """
  root = network.name + "/"
  targets = {v.name[len(root):].rsplit(":", 1)[0]: v
             for v in network.variables}
  for name, value in converted.weights.items():
    if name not in targets:
      raise ConversionError(f"{path}: {converted.origins[name]} has no "
                            f"variable {root}{name} to go to")
    variable = targets[name]
    if tuple(variable.shape) != value.shape:
      raise ConversionError(
          f"{path}: {converted.origins[name]} has shape {value.shape} but "
          f"{root}{name} needs {tuple(variable.shape)}")
  missing = [n for n in targets if n not in converted.weights
             and not (converted.new_head and n.startswith("head/"))]
  if missing:
    more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
    raise ConversionError(f"{path} lacks weights for {len(missing)} "
                          f"variables: {', '.join(root + n for n in missing[:5])}"
                          f"{more}")
  for name, value in converted.weights.items():
    targets[name].assign(value)


def _class_names(config: ConvertConfig, converted: mapping.Converted
                 ) -> list[str]:
  classes = converted.model.num_classes
  if config.labels not in labels_lib.LABEL_KINDS:
    with open(config.labels) as f:
      names = f.read().splitlines()
    if len(names) != classes:
      raise ConversionError(f"--labels={config.labels} has {len(names)} "
                            f"names for {classes} classes")
    return names
  if not converted.new_head and classes == labels_lib.NUM_CLASSES:
    return labels_lib.imagenet_labels(config.labels)
  if converted.new_head:
    return [f"class_{i}" for i in range(classes)]
  raise ConversionError(f"{config.weights} has {classes} classes, not "
                        "ImageNet's 1000: give --labels=FILE")


def _statistics(mean_rgb: Sequence[float]) -> stats_lib.Statistics:
  """The source's per-channel mean as the run's mean image, and ImageNet's PCA."""
  size = transforms.IMAGENET_CROP
  mean_image = np.broadcast_to(np.asarray(mean_rgb, np.float32),
                               (size, size, 3)).copy()
  return stats_lib.Statistics(
      mean_image=mean_image,
      eigenvalues=np.asarray(stats_lib.IMAGENET_EIGENVALUES, np.float32),
      eigenvectors=np.asarray(stats_lib.IMAGENET_EIGENVECTORS, np.float32),
      num_images=0,  # The mean is the source's, not counted here.
      pca_source="imagenet")


def _train_config(model: zoo.ModelConfig, model_dir: str
                  ) -> config_lib.TrainConfig:
  """The config a run of this network on ImageNet would have written."""
  return config_lib.paper_config(model, dataset="imagenet2012",
                                 model_dir=model_dir)


def _check_model_dir(model_dir: str) -> None:
  if tf.io.gfile.exists(model_dir) and tf.io.gfile.listdir(model_dir):
    raise ConversionError(f"--model_dir={model_dir} is not empty: convert "
                          "into a new directory")


def convert(config: ConvertConfig) -> Result:
  """Converts a weight file into a run directory.

  Args:
    config: what to convert and where to.

  Returns:
    What was written, with the restored network.

  Raises:
    ConversionError: for a missing, damaged or unknown file, a depth that
      does not match it, a `_notop` file without `num_classes`, unknown
      weights (named), a shape mismatch (naming the variable), or a
      non-empty model_dir.
  """
  _check_model_dir(config.model_dir)
  path = resolve_weights(config)
  converted = mapping.convert(config.source, read(config.source, path), path,
                              depth=config.depth,
                              num_classes=config.num_classes)
  class_names = _class_names(config, converted)
  tf.random.set_seed(config.seed)  # A new head's initial weights.
  network = zoo.build_model(converted.model)
  load_into(network, converted, path)
  if converted.new_head:
    logging.info("Head: a new %d-way classifier (the file's: %s)",
                 converted.model.num_classes, converted.source_classes)

  tf.io.gfile.makedirs(config.model_dir)
  _statistics(converted.mean_rgb).save(
      os.path.join(config.model_dir, run_dir.STATS_FILE))
  run_dir.write_atomically(
      os.path.join(config.model_dir, run_dir.LABELS_FILE),
      "".join(f"{name}\n" for name in class_names))
  step = tf.Variable(0, dtype=tf.int64)
  manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=network, step=step), config.model_dir,
      max_to_keep=1, step_counter=step)
  checkpoint = manager.save(checkpoint_number=0)
  # Last: a directory with config.json is a run that readers may open.
  run_dir.write_atomically(
      os.path.join(config.model_dir, run_dir.CONFIG_FILE),
      _train_config(converted.model, config.model_dir).to_json())
  return Result(config.model_dir, checkpoint, converted.model, path,
                converted.new_head, network)

