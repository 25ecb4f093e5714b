"""Flags the binaries share, and their conversion to configs.

Only binaries (train, evaluate, export, summary, convert, benchmarks) import
this module; the library takes configs, never flags. Every flag is defined
once here or in its binary, held by the handle its DEFINE returns (absl's
current style); nobody reads the global FLAGS.
"""

import dataclasses
import sys
from typing import Any, Callable, Optional, Sequence

from absl import app
from absl import flags
from absl import logging

from tf_resnet import families
from tf_resnet.data import sources
from tf_resnet.model import resnet
from tf_resnet.model import zoo

SHORTCUT_HELP = ("Shortcut option (section 3.3). A: identity, zero-padded "
                 "where dimensions grow. B: projections where dimensions "
                 "grow. C: projections everywhere. Default: "
                 + ", ".join(f"{f.default_shortcut} on {f.dataset}"
                             for f in families.FAMILIES.values()) + ".")


@dataclasses.dataclass(frozen=True)
class DataFlags:
  """--dataset, --data_dir, --family, --holdout, --on_bad_file."""

  dataset: flags.FlagHolder
  data_dir: flags.FlagHolder
  family: flags.FlagHolder
  holdout: flags.FlagHolder
  on_bad_file: flags.FlagHolder

  def family_hint(self, model: "ModelFlags") -> Optional[str]:
    """The family the flags imply (see `family_hint`)."""
    return family_hint(self.dataset.value, self.family.value,
                       model.model.value, model.depth.value)

  def parse(self, model: "ModelFlags",
            default_family: Optional[str] = None) -> sources.Source:
    """The data set the flags name.

    Args:
      model: the model flags (synthetic data takes its family from them).
      default_family: the family when neither --family nor the data set
        fixes one (e.g. the network being fine-tuned); None: from the data.

    Raises:
      sources.DataError: for missing or unusable data.
      ValueError: for a spec or family that does not exist.
    """
    holdout = self.holdout.value
    if holdout is None:
      holdout = families.paper_holdout(self.dataset.value)
    return sources.parse(self.dataset.value, data_dir=self.data_dir.value,
                         family=self.family_hint(model) or default_family,
                         holdout=holdout, on_bad_file=self.on_bad_file.value)


def define_data_flags() -> DataFlags:
  """Defines the data flags of the training binary."""
  paper_holdouts = ", ".join(f"{f.recipe.holdout:,} of {f.dataset}"
                             for f in families.FAMILIES.values())
  return DataFlags(
      dataset=flags.DEFINE_string("dataset", "imagenet2012",
                                  f"The data set: {sources.DATASETS_HELP}."),
      data_dir=flags.DEFINE_string(
          "data_dir", None,
          "TFDS's data directory (default ~/tensorflow_datasets)."),
      family=flags.DEFINE_enum(
          "family", None, list(families.NAMES),
          "Network family and preprocessing for folder: and synthetic data: "
          "imagenet (Table 1 nets, scale augmentation, 224x224 crops) or "
          "cifar (section 4.2 nets, 32x32, pad-and-crop). Default: from the "
          "model flags for synthetic, from the image size for folders."),
      holdout=flags.DEFINE_integer(
          "holdout", None,
          "Training examples held out as the validation split, on which "
          "every decision is taken (the plateau schedule, the best "
          "checkpoint, --export_best); without one the test split is only "
          f"logged. Default: the paper's ({paper_holdouts}), else 0.",
          lower_bound=0),
      on_bad_file=flags.DEFINE_enum(
          "on_bad_file", "skip", ["skip", "fail"],
          "What to do with undecodable or non-image files: skip them "
          "(counted and logged with their paths) or fail."))


@dataclasses.dataclass(frozen=True)
class ModelFlags:
  """--model, --depth, --shortcut."""

  model: flags.FlagHolder
  depth: flags.FlagHolder
  shortcut: flags.FlagHolder

  def config(self, family: str, **options) -> zoo.ModelConfig:
    """The network the flags describe in `family`.

    Raises:
      ValueError: for a network the family does not have.
    """
    return zoo.ModelConfig(family=family, architecture=self.model.value,
                           depth=self.depth.value,
                           shortcut=self.shortcut.value, **options)


def define_model_flags() -> ModelFlags:
  """Defines the flags that choose a network of the paper."""
  depths = ". ".join(
      f"{f.dataset}: default {f.default_depth['resnet']}"
      for f in families.FAMILIES.values())
  return ModelFlags(
      model=flags.DEFINE_enum(
          "model", "resnet", list(zoo.ARCHITECTURES),
          "resnet: residual network. plain: the same stack without "
          "shortcuts. vgg19: VGG-19, the paper's Fig. 3 reference (ImageNet "
          "family only)."),
      depth=flags.DEFINE_integer(
          "depth", None,
          "Weight layers. ImageNet family: 18, 34, 50, 101, 152. CIFAR "
          f"family: 6n+2, e.g. 20, 32, 44, 56, 110, 1202. VGG: 19. {depths}."),
      shortcut=flags.DEFINE_enum("shortcut", None, ["A", "B", "C"],
                                 SHORTCUT_HELP))


def validate_network(family_of: Callable[[dict[str, Any]], Optional[str]],
                     other_flags: Sequence[str] = ()) -> None:
  """Rejects an impossible network when the flags are parsed, before any work.

  Args:
    family_of: the family, from the parsed values of the model flags and
      `other_flags`; None when only the data can tell (a folder).
    other_flags: flags `family_of` reads besides the model flags.
  """

  @flags.multi_flags_validator(["model", "depth", "shortcut", *other_flags],
                               message="invalid network")
  def _check(values) -> bool:
    family = family_of(values)
    try:
      zoo.ModelConfig(family=family or "imagenet",
                      architecture=values["model"], depth=values["depth"],
                      shortcut=values["shortcut"])
    except ValueError as e:
      if family is None:  # A folder: the family is not known yet.
        return True
      raise flags.ValidationError(str(e)) from None
    return True


@dataclasses.dataclass(frozen=True)
class RunFlags:
  """--model_dir, --checkpoint, --best: which checkpoint of a run."""

  model_dir: flags.FlagHolder
  checkpoint: flags.FlagHolder
  best: flags.FlagHolder


def define_run_flags(verb: str) -> RunFlags:
  """Defines the flags that pick a run's checkpoint, for a binary that `verb`s it."""
  return RunFlags(
      model_dir=flags.DEFINE_string(
          "model_dir", None, f"The training run to {verb} (what "
          "tf_resnet.train or tf_resnet.convert wrote).", required=True),
      checkpoint=flags.DEFINE_string(
          "checkpoint", None,
          "A checkpoint path (default: the latest in --model_dir)."),
      best=flags.DEFINE_bool(
          "best", False, f"{verb.capitalize()} the checkpoint with the best "
          "validation error (--model_dir/best) instead of the latest."))


def family_hint(dataset: str, family: Optional[str], model: str,
                depth: Optional[int]) -> Optional[str]:
  """The network family the flags imply, or None to decide from a folder's images.

  Synthetic data takes the model's family: Table 1's depths (and VGG-19, and
  no depth) mean ImageNet, any other 6n+2 depth CIFAR-10. The paper's data
  sets fix their family.
  """
  if family:
    return family
  if dataset in families.DATASET_FAMILIES:
    return families.DATASET_FAMILIES[dataset]
  if dataset == "synthetic":
    return ("imagenet" if depth is None or model == "vgg19"
            or depth in resnet.IMAGENET_STAGES else "cifar")
  return None


def start(argv: Sequence[str]) -> None:
  """A binary's first lines in `main`: no stray arguments, quiet INFO logs.

  Raises:
    app.UsageError: for positional arguments (e.g. `--flag value` given to
      a boolean flag).
  """
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  # Progress has its own lines; TensorFlow's INFO chatter only with -v.
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)


def fail(message: str, status: int = 1) -> None:
  """Ends a binary with a one-line error on stderr and exit `status`."""
  sys.stderr.write(f"error: {message}\n")
  sys.exit(status)
