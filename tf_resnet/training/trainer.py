"""The Trainer: owns the network, optimizer, schedule, task and what a checkpoint holds.

Orbit's shape: `Trainer.train(num_steps)` runs that many steps in one
`tf.function` call (`strategy.run` of the task's per-replica step in a
`tf.range` loop over the distributed iterator) and returns the interval's
metrics; `Trainer.evaluate(split)` scores the network on a split. Cadence,
checkpoint files, summaries and actions belong to the `Controller`; the
Trainer knows nothing of files.
"""

import dataclasses
import math
import time
from typing import Callable, Optional

import tensorflow as tf

from tf_resnet.data import pipeline
from tf_resnet.data import sources
from tf_resnet.data import stats as stats_lib
from tf_resnet.model import zoo
from tf_resnet.training import config as config_lib
from tf_resnet.training import evaluation
from tf_resnet.training import optimizer as optimizer_lib
from tf_resnet.training import schedules
from tf_resnet.training import task as task_lib

# A function from a tf.distribute.InputContext to that pipeline's dataset of
# per-replica (images, labels) batches.
DatasetFn = Callable[[tf.distribute.InputContext], tf.data.Dataset]
_SUMS = ("loss", "errors", "examples", "nonfinite")


class NonFiniteLoss(RuntimeError):
  """The loss became NaN or infinite; `step` is the first such step."""

  def __init__(self, step: int, kind: str):
    super().__init__(f"the loss became {kind} at step {step}")
    self.step = step
    self.kind = kind


@dataclasses.dataclass(frozen=True)
class TrainMetrics:
  """What one `Trainer.train` call measured over its steps."""

  step: int  # The global step after the call.
  loss: float  # Mean cross-entropy plus the weight-decay term.
  train_error: float  # Top-1 error on the training batches.
  learning_rate: float  # The rate at the interval's first step.
  images_per_sec: float
  seconds: float

  def to_json(self) -> dict[str, float]:
    return {"loss": self.loss, "train_error": self.train_error,
            "learning_rate": self.learning_rate,
            "images_per_sec": self.images_per_sec}


def build_schedule(config: config_lib.ScheduleConfig):
  """The schedule a config describes: (schedule, its plateau part, its warm-up part)."""
  if config.kind == "steps":
    base = schedules.PiecewiseConstant(config.learning_rate,
                                       config.boundaries, config.factor)
    plateau = None
  else:
    base = plateau = schedules.ReduceOnPlateau(
        config.learning_rate, factor=config.factor, patience=config.patience,
        threshold=config.threshold, min_lr=config.min_learning_rate)
  warmup = None
  if config.warmup_learning_rate is not None:
    warmup = schedules.Warmup(base, warmup_lr=config.warmup_learning_rate,
                              until_train_error_below=config.warmup_until_error,
                              max_warmup_steps=config.warmup_max_steps)
  return warmup or base, plateau, warmup


class Trainer:
  """Trains one network of a TrainConfig under a tf.distribute strategy."""

  def __init__(self, config: config_lib.TrainConfig,
               strategy: tf.distribute.Strategy,
               source: sources.Source,
               statistics: stats_lib.Statistics,
               dataset_fn: Optional[DatasetFn] = None):
    """Builds the network and everything its training updates.

    Args:
      config: the run.
      strategy: where the replicas run.
      source: the data.
      statistics: the training set's mean image and RGB components.
      dataset_fn: the training input per pipeline; default
        `pipeline.train_dataset` over `source` (a benchmark passes one
        batch held in memory).

    Raises:
      ValueError: for a batch that does not divide among the replicas.
    """
    replicas = strategy.num_replicas_in_sync
    batch = config.input.global_batch_size
    if batch % replicas:
      raise ValueError(f"--batch_size={batch} must be divisible by the "
                       f"number of replicas ({replicas})")
    self.config = config
    self.strategy = strategy
    self.source = source
    self.statistics = statistics
    self._dataset_fn = dataset_fn
    # The seed fixes the initial weights too: the same command gives the
    # same run.
    tf.random.set_seed(config.input.seed)
    with strategy.scope():
      self.model = zoo.build_model(config.model)
      classifier = self.model.classifier
      if config.trainable == "head":
        variables = classifier.trainable_variables
        forward = self._head_only
      else:
        variables = self.model.trainable_variables
        forward = self.model
      head_refs = {v.ref() for v in classifier.trainable_variables}
      head_rate = config.head_learning_rate
      multipliers = [
          head_rate / config.schedule.learning_rate
          if head_rate is not None and v.ref() in head_refs else 1.0
          for v in variables]
      trained = {v.ref() for v in variables}
      self._decayed = [v for v in task_lib.decayed_variables(self.model)
                       if v.ref() in trained]
      self.optimizer = optimizer_lib.SGDMomentum(
          variables, momentum=config.momentum,
          weight_decay=config.weight_decay, decay_variables=self._decayed,
          learning_rate_multipliers=multipliers, name="sgd")
      self.schedule, self.plateau, self.warmup = build_schedule(
          config.schedule)
      self.task = task_lib.Task(forward, self.optimizer, self.schedule,
                                variables=variables, global_batch_size=batch,
                                precision=config.precision,
                                input_transform=pipeline.train_device_transform(
                                    source, statistics, config.input))
    # The best validation error so far, kept with the checkpoint so that a
    # resumed run does not replace the best model with a worse one.
    self.best_error = tf.Variable(math.inf, trainable=False, name="best_error")
    trackables = dict(model=self.model, optimizer=self.optimizer,
                      schedule=self.schedule, step=self.task.step,
                      best_error=self.best_error)
    if self.task.loss_scale is not None:
      trackables["loss_scale"] = self.task.loss_scale
    self.checkpoint = tf.train.Checkpoint(**trackables)
    self._iterator = None
    self._train_steps = self._build_train_steps()
    self._penalty = tf.function(lambda: task_lib.weight_decay_penalty(
        self._decayed, config.weight_decay))
    self._evaluator = evaluation.Evaluator(self.model, config.eval_mode,
                                           self.task.compute_dtype)

  def _head_only(self, images: tf.Tensor, *, is_training: bool) -> tf.Tensor:
    """Logits with all but the classifier frozen, batch norm in inference mode."""
    del is_training  # The head has no batch norm; the rest is frozen.
    features = self.model.features(images, is_training=False)
    return self.model.head(tf.stop_gradient(features))

  @property
  def step(self) -> int:
    return int(self.task.step.numpy())

  def restore(self, path: Optional[str]) -> None:
    """Restores `path` (None: a fresh run) and opens the training input there.

    The input order is a function of (seed, step) for every source, so the
    step alone resumes it: no input iterator is saved with a checkpoint
    (older checkpoints that hold one still load).
    """
    start = 0
    if path:
      reader = tf.train.load_checkpoint(path)
      start = int(reader.get_tensor("step/.ATTRIBUTES/VARIABLE_VALUE"))
    dataset_fn = self._dataset_fn or (
        lambda ctx: pipeline.train_dataset(
            self.source, self.statistics, self.config.input, ctx,
            start_step=start))
    self._iterator = iter(
        self.strategy.distribute_datasets_from_function(dataset_fn))
    if path:
      self.checkpoint.read(path).expect_partial()

  def _build_train_steps(self):
    strategy, task, config = self.strategy, self.task, self.config
    step_fn = task.train_step
    if config.xla:  # The input's transform, if any, stays out of XLA.
      update = tf.function(task.update, jit_compile=True)
      step_fn = lambda inputs: update(task.prepare(inputs))

    @tf.function
    def train_steps(iterator, num_steps):
      sums = tf.zeros([len(_SUMS)])
      first_bad = tf.constant(-1, tf.int64)
      for i in tf.range(num_steps):
        out = strategy.run(step_fn, args=(next(iterator),))
        step_sums = tf.stack([strategy.reduce(tf.distribute.ReduceOp.SUM,
                                              out[k], axis=None)
                              for k in _SUMS])
        first_bad = tf.where((first_bad < 0) & (step_sums[3] > 0),
                             tf.cast(i, tf.int64), first_bad)
        sums += step_sums
      return sums, first_bad

    return train_steps

  def train(self, num_steps: int) -> TrainMetrics:
    """Runs `num_steps` training steps in one call.

    Returns:
      The interval's metrics.

    Raises:
      NonFiniteLoss: naming the first step whose loss was not finite (the
        weights are then not to be saved).
    """
    if self._iterator is None:
      self.restore(None)
    first = self.step
    learning_rate = float(self.schedule(tf.constant(first, tf.int64)))
    began = time.perf_counter()
    sums, first_bad = self._train_steps(self._iterator,
                                        tf.constant(num_steps))
    sums = sums.numpy()
    seconds = time.perf_counter() - began
    if int(first_bad) >= 0:
      raise NonFiniteLoss(first + int(first_bad) + 1,
                          "NaN" if math.isnan(sums[0]) else "infinite")
    examples = max(sums[2], 1.0)
    return TrainMetrics(
        step=first + num_steps,
        loss=float(sums[0] / examples + self._penalty()),
        train_error=float(sums[1] / examples),
        learning_rate=learning_rate,
        images_per_sec=float(examples / max(seconds, 1e-9)),
        seconds=seconds)

  def evaluate(self, split: str) -> evaluation.EvalResult:
    """Top-1 and top-5 error on `split` in the run's eval_mode (<= eval_examples)."""
    mode = self.config.eval_mode
    # About as many images per call in every mode: 10-crop's ten views of
    # each example make the batch ten times larger.
    batch = min(256, max(self.config.input.global_batch_size, 32))
    dataset = pipeline.eval_dataset(
        self.source, self.statistics, self.config.input, split=split,
        mode=mode, batch_size=max(1, batch // 10) if mode == "10crop"
        else batch)
    return self._evaluator.evaluate(dataset,
                                    max_examples=self.config.eval_examples)
