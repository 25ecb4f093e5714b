"""A training run, described by frozen configs that the binary builds from its flags.

`paper_config` gives the paper's run for a network and data set, from the
family registry (`tf_resnet.families`); the training binary is that plus
the flags a user set. `config_changes` compares a stored run with a new
command, for resuming.
"""

import dataclasses
import json
from typing import Any, Optional

from tf_resnet import families
from tf_resnet.data import pipeline
from tf_resnet.model import zoo
from tf_resnet.training import strategy as strategy_lib
from tf_resnet.training import task as task_lib

SCHEDULES = ("plateau", "steps")
TRAINABLE = ("all", "head")
# train_and_eval: the chief evaluates in the training loop. train: it does
# not; an evaluator beside the trainers evaluates their checkpoints
# (tf_resnet.training.continuous_eval).
MODES = ("train_and_eval", "train")


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
  """The learning rate over training, in the paper's terms.

  Attributes:
    kind: `plateau` (ImageNet: divide by `factor` when the validation error
      stops improving) or `steps` (CIFAR: divide at `boundaries`).
    learning_rate: the starting rate (0.1 in the paper).
    boundaries: steps at which `steps` divides the rate (32k and 48k on
      CIFAR).
    factor: what each reduction multiplies the rate by (0.1).
    patience: evaluations without improvement before `plateau` reduces.
    threshold: the smallest fall of the validation error that counts as an
      improvement.
    min_learning_rate: `plateau` never goes below this.
    warmup_learning_rate: if set, train at this rate until the training
      error falls below `warmup_until_error` (ResNet-110/1202: 0.01 until
      below 80%), then at `learning_rate`.
    warmup_until_error: the training error that ends the warm-up.
    warmup_max_steps: end the warm-up after this many steps regardless.
  """

  kind: str = "plateau"
  learning_rate: float = 0.1
  boundaries: tuple[int, ...] = ()
  factor: float = 0.1
  patience: int = 3
  threshold: float = 0.001
  min_learning_rate: float = 0.0
  warmup_learning_rate: Optional[float] = None
  warmup_until_error: float = 0.8
  warmup_max_steps: Optional[int] = None

  def __post_init__(self):
    if self.kind not in SCHEDULES:
      raise ValueError(f"`schedule` must be one of {SCHEDULES}, not "
                       f"{self.kind!r}")
    if self.kind == "steps" and list(self.boundaries) != sorted(
        set(self.boundaries)):
      raise ValueError(f"`boundaries` must be increasing, not "
                       f"{list(self.boundaries)}")
    if self.learning_rate <= 0:
      raise ValueError(f"`learning_rate` must be positive, not "
                       f"{self.learning_rate}")
    if self.kind == "plateau" and not (
        0 <= self.min_learning_rate <= self.learning_rate):
      raise ValueError(
          f"the plateau schedule's floor (--min_learning_rate="
          f"{self.min_learning_rate}) must be in [0, --learning_rate="
          f"{self.learning_rate}]")


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where the examples come from.

  Attributes:
    dataset: a `sources.parse` spec: imagenet2012, cifar10, folder:PATH,
      digits or synthetic.
    data_dir: TFDS's data directory.
    holdout: training examples held out for validation (CIFAR: 5000).
    on_bad_file: `skip` or `fail` on undecodable images.
    stats_max_images: images read to compute the mean image and PCA.
  """

  dataset: str = "digits"
  data_dir: Optional[str] = None
  holdout: int = 0
  on_bad_file: str = "skip"
  stats_max_images: int = 10_000


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything a training run needs; written to `model_dir/config.json`.

  Attributes:
    model: the network.
    data: the data set.
    input: batch, seed, augmentation.
    schedule: the learning rate.
    model_dir: checkpoints, statistics, summaries and the metrics log.
    train_steps: iterations to train for (the run ends there).
    momentum: SGD momentum (0.9).
    weight_decay: L2 weight decay on kernels (1e-4).
    steps_per_loop: training steps per `tf.function` call; also the cadence
      of progress lines and summaries.
    checkpoint_every_steps: save every this many steps; None: by time only.
    checkpoint_every_secs: save at least this often (default ten minutes).
    eval_every_steps: evaluate on the validation split every this many
      steps; None: only at the end.
    eval_examples: evaluate on at most this many examples (None: all).
    monitor_test: when the validation split is a holdout, also evaluate the
      test split at every evaluation and log it as `test` (learning curves
      like the paper's Fig. 6); it never drives the schedule or the best
      checkpoint.
    keep_checkpoints: how many recent checkpoints to keep.
    precision: `float32`, `mixed_float16` or `mixed_bfloat16`.
    xla: compile the step with XLA.
    strategy: `default`, `one_device`, `mirrored` or `multi_worker`.
    num_cpu_devices: split the CPU into this many logical devices.
    export_dir: export a SavedModel version here when training ends (like
      tf.estimator's FinalExporter).
    export_best: also export whenever the validation error improves (like
      BestExporter).
    keep_exports: the number of exported versions kept.
    init_from: start from this run's (or checkpoint's) weights where names
      and shapes match (fine-tuning); only when the run has no checkpoint of
      its own yet.
    trainable: `all`, or `head`: train the classifier (the last layer)
      alone, with the rest frozen and its batch normalization in inference
      mode.
    head_learning_rate: the classifier's starting rate (the schedule scales
      it like the others, Caffe's `lr_mult`); None: `learning_rate`.
    mode: `train_and_eval` (evaluate in the training loop) or `train` (no
      evaluation in the loop: an evaluator evaluates the checkpoints,
      `continuous_eval`; the plateau schedule then waits for its validation
      error at every evaluation step).
    eval_mode: the test mode of the validation (and monitored test)
      evaluations: `center`, `10crop` or `multiscale` (`pipeline.EVAL_MODES`;
      a family without test scales, CIFAR, has only `center`).
  """

  model: zoo.ModelConfig
  data: DataConfig
  input: pipeline.InputConfig
  schedule: ScheduleConfig
  model_dir: str
  train_steps: int
  momentum: float = 0.9
  weight_decay: float = 1e-4
  steps_per_loop: int = 100
  checkpoint_every_steps: Optional[int] = None
  checkpoint_every_secs: float = 600.0
  eval_every_steps: Optional[int] = None
  eval_examples: Optional[int] = None
  monitor_test: bool = False
  keep_checkpoints: int = 3
  precision: str = "float32"
  xla: bool = False
  strategy: str = "default"
  num_cpu_devices: Optional[int] = None
  export_dir: Optional[str] = None
  export_best: bool = False
  keep_exports: int = 3
  init_from: Optional[str] = None
  trainable: str = "all"
  head_learning_rate: Optional[float] = None
  # Both default to what runs from before these fields did, so that their
  # config.json resumes unchanged.
  mode: str = "train_and_eval"
  eval_mode: str = "center"

  def __post_init__(self):
    for name in ("train_steps", "steps_per_loop", "keep_checkpoints",
                 "keep_exports"):
      if getattr(self, name) < 1:
        raise ValueError(f"`{name}` must be positive, not "
                         f"{getattr(self, name)}")
    for name in ("checkpoint_every_steps", "eval_every_steps",
                 "num_cpu_devices", "eval_examples"):
      value = getattr(self, name)
      if value is not None and value < 1:
        raise ValueError(f"`{name}` must be positive, not {value}")
    if self.precision not in task_lib.PRECISIONS:
      raise ValueError(f"`precision` must be one of {task_lib.PRECISIONS}, "
                       f"not {self.precision!r}")
    if self.strategy not in strategy_lib.STRATEGIES:
      raise ValueError(f"`strategy` must be one of "
                       f"{strategy_lib.STRATEGIES}, not {self.strategy!r}")
    if not 0.0 <= self.momentum < 1.0:
      raise ValueError(f"`momentum` must be in [0, 1), not {self.momentum}")
    if self.export_best and not self.export_dir:
      raise ValueError("`export_best` needs `export_dir`")
    if self.weight_decay < 0:
      raise ValueError(f"`weight_decay` must be >= 0, not "
                       f"{self.weight_decay}")
    if self.trainable not in TRAINABLE:
      raise ValueError(f"`trainable` must be one of {TRAINABLE}, not "
                       f"{self.trainable!r}")
    if self.head_learning_rate is not None and self.head_learning_rate < 0:
      raise ValueError(f"`head_learning_rate` must be >= 0, not "
                       f"{self.head_learning_rate}")
    if self.mode not in MODES:
      raise ValueError(f"`mode` must be one of {MODES}, not {self.mode!r}")
    if self.eval_mode not in pipeline.EVAL_MODES:
      raise ValueError(f"`eval_mode` must be one of {pipeline.EVAL_MODES}, "
                       f"not {self.eval_mode!r}")
    if (self.eval_mode != "center"
        and not families.get(self.model.family).test_scales):
      raise ValueError(
          f"the {self.model.family} family is tested on its single native "
          f"view: `eval_mode` must be 'center', not {self.eval_mode!r}")

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def paper_config(model: zoo.ModelConfig, *, dataset: str, model_dir: str,
                 **overrides: Any) -> TrainConfig:
  """The paper's run of `model` on `dataset`, with `overrides` on top.

  Args:
    model: the network; its family gives the recipe.
    dataset: a `tf_resnet.data` spec; the paper's data sets also give the
      validation split the paper held out (CIFAR-10: 5,000; ImageNet: see
      `families.IMAGENET`).
    model_dir: where the run lives.
    **overrides: TrainConfig fields, or the fields of its parts by their
      names: `batch_size`, `seed`, `color_augmentation`,
      `resample_on_device`, `holdout`,
      `data_dir`, `on_bad_file`, `stats_max_images`, and ScheduleConfig's
      (`kind`, `learning_rate`, `boundaries`, ...). None means the default.

  Returns:
    The config.

  Raises:
    ValueError: for an unknown override or an invalid value.
  """
  recipe = families.get(model.family).recipe
  values = {k: v for k, v in overrides.items() if v is not None}

  def take(name, default):
    return values.pop(name, default)

  schedule = ScheduleConfig(
      kind=take("kind", recipe.schedule),
      learning_rate=take("learning_rate", 0.1),
      boundaries=tuple(take("boundaries", recipe.lr_boundaries)),
      factor=take("factor", 0.1),
      patience=take("patience", recipe.plateau_patience),
      threshold=take("threshold", recipe.plateau_threshold),
      min_learning_rate=take("min_learning_rate", recipe.min_learning_rate),
      warmup_learning_rate=take(
          "warmup_learning_rate",
          recipe.warmup_for(model.architecture, model.depth)),
      warmup_until_error=take("warmup_until_error", 0.8),
      warmup_max_steps=take("warmup_max_steps", 2000))
  data = DataConfig(
      dataset=dataset, data_dir=take("data_dir", None),
      holdout=take("holdout", families.paper_holdout(dataset)),
      on_bad_file=take("on_bad_file", "skip"),
      stats_max_images=take("stats_max_images", 10_000))
  input_config = pipeline.InputConfig(
      global_batch_size=take("batch_size", recipe.batch_size),
      seed=take("seed", 0),
      color_augmentation=take("color_augmentation", True),
      resample_on_device=take("resample_on_device", False),
      on_bad_image=data.on_bad_file)
  fields = {f.name for f in dataclasses.fields(TrainConfig)}
  unknown = sorted(set(values) - fields)
  if unknown:
    raise ValueError(f"unknown settings: {', '.join(unknown)}")
  values.setdefault("train_steps", recipe.train_steps)
  values.setdefault("eval_every_steps", recipe.eval_every_steps)
  return TrainConfig(model=model, data=data, input=input_config,
                     schedule=schedule, model_dir=model_dir, **values)


# Settings whose change would make a resumed run train on other images, in
# another order, or on another schedule than the one it started: refused on
# resume unless the caller allows it. Anything else (cadence, where files
# go, how many steps in all, precision) may change and is logged.
DECISIVE_SETTINGS = ("data.dataset", "data.holdout", "data.on_bad_file",
                     "input", "schedule", "momentum", "weight_decay",
                     "model", "trainable", "head_learning_rate")
# Parts of those that only shape evaluations after training, or where the
# same views are computed (resample_on_device: equal to float rounding).
_NOT_DECISIVE = ("input.test_scales", "input.test_flip",
                 "input.resample_on_device")


def _decisive(name: str, stored: dict[str, Any]) -> bool:
  """Whether changing setting `name` of the `stored` run changes its course."""
  if name in _NOT_DECISIVE:
    return False
  schedule = stored.get("schedule", {})
  # The plateau counts its patience in evaluations of the validation split:
  # their spacing and sample are part of the schedule. The warm-up checks
  # the training error once per `steps_per_loop` interval.
  if schedule.get("kind") == "plateau" and name in ("eval_every_steps",
                                                     "eval_examples",
                                                     "eval_mode"):
    return True
  if (schedule.get("warmup_learning_rate") is not None
      and name == "steps_per_loop"):
    return True
  return any(name == s or name.startswith(s + ".") for s in DECISIVE_SETTINGS)


def config_changes(stored: dict[str, Any], new: TrainConfig
                   ) -> list[tuple[str, Any, Any, bool]]:
  """How `new` differs from a run's stored config.json.

  Settings the stored file lacks (written by an older version) are not
  changes.

  Args:
    stored: the parsed config.json.
    new: this command's config.

  Returns:
    (dotted name, stored value, new value, decisive) per changed setting;
    decisive changes alter the data or the schedule (DECISIVE_SETTINGS,
    and the evaluation cadence of a plateau schedule).
  """
  changes = []

  def walk(old, current, prefix):
    for key in sorted(set(old) & set(current)):
      name = f"{prefix}{key}"
      a, b = old[key], current[key]
      if isinstance(a, dict) and isinstance(b, dict):
        walk(a, b, f"{name}.")
      elif a != b:
        changes.append((name, a, b, _decisive(name, stored)))

  walk(stored, json.loads(new.to_json()), "")
  return changes


def model_config_from_json(text: str) -> zoo.ModelConfig:
  """The network of a run, from its `config.json`."""
  return zoo.ModelConfig(**json.loads(text)["model"])


def input_config_from_json(text: str) -> pipeline.InputConfig:
  """The input options of a run, from its `config.json`."""
  values: dict[str, Any] = json.loads(text)["input"]
  return pipeline.InputConfig(**{
      k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def data_config_from_json(text: str) -> DataConfig:
  """The data set of a run, from its `config.json`."""
  return DataConfig(**json.loads(text)["data"])


def train_config_from_json(text: str) -> TrainConfig:
  """The whole TrainConfig of a run, from its `config.json`.

  Settings the file lacks (written by an older version) take their
  defaults, which are what that version did.

  Raises:
    ValueError: for a file that is not a TrainConfig's JSON.
  """
  try:
    values: dict[str, Any] = json.loads(text)
    schedule = dict(values["schedule"])
    schedule["boundaries"] = tuple(schedule.get("boundaries", ()))
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    known = {k: v for k, v in values.items()
             if k in fields and k not in ("model", "data", "input",
                                          "schedule")}
    return TrainConfig(model=model_config_from_json(text),
                       data=data_config_from_json(text),
                       input=input_config_from_json(text),
                       schedule=ScheduleConfig(**schedule), **known)
  except (json.JSONDecodeError, KeyError, TypeError) as e:
    raise ValueError(f"not a tf_resnet.train config.json: {e!r}") from None
