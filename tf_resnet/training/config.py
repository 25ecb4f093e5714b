"""A training run, described by frozen configs that the binary builds from its flags."""

import dataclasses
import json
from typing import Any, Optional

from tf_resnet.data import pipeline
from tf_resnet.model import zoo
from tf_resnet.training import strategy as strategy_lib
from tf_resnet.training import task as task_lib

SCHEDULES = ("plateau", "steps")


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

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


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
