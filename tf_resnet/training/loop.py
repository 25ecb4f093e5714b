"""The training loop: cadence, checkpoints, evaluation, summaries and progress.

`train(config)` runs (or resumes) a run in `config.model_dir`:

* everything that can be wrong is checked before any compute: the data, the
  model_dir, the batch's divisibility among replicas, a model_dir that holds
  another architecture;
* several steps run per `tf.function` call (`strategy.run` in a loop over
  the distributed iterator), so Python only sees every `steps_per_loop`-th
  step;
* checkpoints (model, optimizer slots, step, schedule state, loss scale;
  never the input iterator: the step resumes the input order) are saved every
  `checkpoint_every_steps` and at least every `checkpoint_every_secs`, on
  SIGTERM/SIGINT, and at the end; rerunning the same command resumes from the
  latest one, also after `kill -9`, and stops at `train_steps`;
* a non-finite loss stops the run with the step named, without saving over
  the last good checkpoint;
* the chief alone writes checkpoints, TensorBoard summaries and the
  `metrics.jsonl` log.
"""

import dataclasses
import json
import math
import os
import signal
import sys
import tempfile
import time
from typing import Any, Optional, TextIO

from absl import logging
import tensorflow as tf

from tf_resnet.data import pipeline
from tf_resnet.data import sources
from tf_resnet.data import stats as stats_lib
from tf_resnet.exporting import serving_module
from tf_resnet.exporting import writer
from tf_resnet.model import zoo
from tf_resnet.training import config as config_lib
from tf_resnet.training import evaluation
from tf_resnet.training import optimizer as optimizer_lib
from tf_resnet.training import schedules
from tf_resnet.training import strategy as strategy_lib
from tf_resnet.training import task as task_lib

CONFIG_FILE = "config.json"
STATS_FILE = "stats.json"
METRICS_FILE = "metrics.jsonl"
LABELS_FILE = "labels.txt"
BEST_DIR = "best"
NO_CHECKPOINT = "(none: no checkpoint was saved)"


class TrainingError(RuntimeError):
  """The run cannot go on; the message says why and what was kept."""


@dataclasses.dataclass
class RunResult:
  """How a call to `train` ended."""

  step: int
  interrupted_by: Optional[int] = None  # The signal that stopped it.
  last_eval: Optional[evaluation.EvalResult] = None
  checkpoint: Optional[str] = None
  model: Optional[tf.Module] = None  # The trained network.


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  return (resolver.task_type == "chief"
          or (resolver.task_type == "worker" and resolver.task_id == 0
              and "chief" not in resolver.cluster_spec().as_dict()))


def _check_model_dir(model_dir: str) -> None:
  try:
    tf.io.gfile.makedirs(model_dir)
    probe = os.path.join(model_dir, f".write_test_{os.getpid()}")
    with tf.io.gfile.GFile(probe, "w") as f:
      f.write("ok")
    tf.io.gfile.remove(probe)
  except (tf.errors.OpError, OSError) as e:
    raise TrainingError(f"--model_dir={model_dir} is not writable: "
                        f"{getattr(e, 'message', e)}") from None


def _check_same_network(config: config_lib.TrainConfig) -> None:
  path = os.path.join(config.model_dir, CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    return
  with tf.io.gfile.GFile(path) as f:
    previous = config_lib.model_config_from_json(f.read())
  if previous != config.model:
    raise TrainingError(
        f"{config.model_dir} holds a run of {previous.display_name} "
        f"({previous.family}, {previous.num_classes} classes); this command "
        f"builds {config.model.display_name} ({config.model.family}, "
        f"{config.model.num_classes} classes). Use another --model_dir.")


def load_statistics(source: sources.Source, model_dir: str,
                    max_images: int, write: bool) -> stats_lib.Statistics:
  """The run's statistics: read from `model_dir`, or computed once and stored there."""
  path = os.path.join(model_dir, STATS_FILE)
  if tf.io.gfile.exists(path):
    return stats_lib.Statistics.load(path)
  statistics = stats_lib.compute(source, max_images=max_images)
  logging.info("Computed the mean image and RGB components from %d training "
               "images of %s", statistics.num_images, source.name)
  if write:
    statistics.save(path)
  return statistics


def build_schedule(config: config_lib.ScheduleConfig):
  """The learning-rate schedule a config describes, and its plateau and warm-up parts."""
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


class _Progress:
  """A progress line every few steps: step/total, loss, error, lr, rate, ETA."""

  def __init__(self, total: int, stream: TextIO = sys.stdout):
    self.total = total
    self.stream = stream
    self.tty = stream.isatty()

  def show(self, step: int, loss: float, error: float, lr: float,
           rate: float, eta_secs: float) -> None:
    minutes, seconds = divmod(int(max(eta_secs, 0)), 60)
    hours, minutes = divmod(minutes, 60)
    eta = f"{hours}:{minutes:02d}:{seconds:02d}"
    text = (f"step {step}/{self.total} loss {loss:.4f} train_error "
            f"{error:.4f} lr {lr:.4g} {rate:.1f} img/s ETA {eta}")
    if self.tty:
      width = 20
      done = int(width * step / self.total)
      bar = "#" * done + "." * (width - done)
      end = "\n" if step >= self.total else ""
      self.stream.write(f"\r[{bar}] {text}\x1b[K{end}")
    else:
      self.stream.write(text + "\n")
    self.stream.flush()

  def message(self, text: str) -> None:
    if self.tty:
      self.stream.write("\n")
    self.stream.write(text + "\n")
    self.stream.flush()


class _SignalCatcher:
  """Turns SIGTERM and SIGINT into a flag the loop checks between calls."""

  def __init__(self):
    self.caught: Optional[int] = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.caught = signum

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _write_atomically(path: str, text: str) -> None:
  tmp = f"{path}.tmp-{os.getpid()}"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(text)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def _jsonl(path: str, record: dict[str, Any]) -> None:
  with tf.io.gfile.GFile(path, "a") as f:
    f.write(json.dumps(record) + "\n")


def train(config: config_lib.TrainConfig,
          progress_stream: TextIO = sys.stdout,
          source: Optional[sources.Source] = None) -> RunResult:
  """Trains (or resumes training) as `config` says.

  Args:
    config: the run.
    progress_stream: where progress lines go.
    source: the data `config.data` names, if the caller has it already.

  Returns:
    How the run ended.

  Raises:
    TrainingError: for an unusable model_dir or a non-finite loss.
    sources.DataError: for missing or unusable data.
    ValueError: for a batch that does not divide among the replicas.
  """
  strategy = strategy_lib.make_strategy(config.strategy,
                                        config.num_cpu_devices)
  replicas = strategy.num_replicas_in_sync
  batch = config.input.global_batch_size
  if batch % replicas:
    raise ValueError(f"--batch_size={batch} must be divisible by the number "
                     f"of replicas ({replicas})")
  chief = _is_chief(strategy)
  _check_model_dir(config.model_dir)
  if source is None:
    source = sources.parse(config.data.dataset, data_dir=config.data.data_dir,
                           family=config.model.family,
                           holdout=config.data.holdout,
                           on_bad_file=config.data.on_bad_file)
  if source.family != config.model.family:
    raise ValueError(f"{source.name} is a {source.family}-family data set; "
                     f"the network is {config.model.family}-family")
  if source.num_classes != config.model.num_classes:
    raise ValueError(f"{source.name} has {source.num_classes} classes; the "
                     f"network has {config.model.num_classes} outputs")
  _check_same_network(config)
  stats_path = os.path.join(config.model_dir, STATS_FILE)
  computing = not tf.io.gfile.exists(stats_path)
  if computing and chief:
    print(f"Computing the per-pixel mean and RGB components from up to "
          f"{config.data.stats_max_images} training images (once; kept in "
          f"{stats_path})", file=progress_stream, flush=True)
  statistics = load_statistics(source, config.model_dir,
                               config.data.stats_max_images, write=chief)
  if chief:
    _write_atomically(os.path.join(config.model_dir, CONFIG_FILE),
                      config.to_json())
    _write_atomically(os.path.join(config.model_dir, LABELS_FILE),
                      "".join(f"{name}\n" for name in source.class_names))

  # The seed fixes the initial weights too: the same command gives the same
  # run.
  tf.random.set_seed(config.input.seed)
  with strategy.scope():
    model = zoo.build_model(config.model)
    variables = model.trainable_variables
    optimizer = optimizer_lib.SGDMomentum(
        variables, momentum=config.momentum, weight_decay=config.weight_decay,
        decay_variables=task_lib.decayed_variables(model), name="sgd")
    schedule, plateau, warmup = build_schedule(config.schedule)
    task = task_lib.Task(model, optimizer, schedule, variables=variables,
                         global_batch_size=batch, precision=config.precision)

  # The best validation error so far, kept with the checkpoint so that a
  # resumed run does not replace the best model with a worse one.
  best_error = tf.Variable(math.inf, trainable=False, name="best_error")
  trackables = dict(model=model, optimizer=optimizer, schedule=schedule,
                    step=task.step, best_error=best_error)
  if task.loss_scale is not None:
    trackables["loss_scale"] = task.loss_scale
  checkpoint = tf.train.Checkpoint(**trackables)
  # Every worker saves (reading distributed variables takes all of them);
  # only the chief's checkpoints are kept, the others' go to scratch space.
  directory = (config.model_dir if chief else
               tempfile.mkdtemp(prefix="tf_resnet_worker_"))
  manager = tf.train.CheckpointManager(checkpoint, directory,
                                       max_to_keep=config.keep_checkpoints,
                                       step_counter=task.step)
  # Every worker resumes from the chief's latest checkpoint.
  restored = tf.train.latest_checkpoint(config.model_dir)
  if restored:
    checkpoint.read(restored).expect_partial()
  start = int(task.step.numpy())
  progress = _Progress(config.train_steps,
                       progress_stream if chief else open(os.devnull, "w"))
  if restored:
    progress.message(f"Resumed from {restored} at step {start}")

  def dataset_fn(ctx):
    # The input order is a function of (seed, step) for every source: the
    # step alone resumes it, with no iterator in the checkpoint.
    return pipeline.train_dataset(source, statistics, config.input, ctx,
                                  start_step=start)

  iterator = iter(strategy.distribute_datasets_from_function(dataset_fn))

  step_fn = (tf.function(task.train_step, jit_compile=True) if config.xla
             else task.train_step)

  @tf.function
  def train_steps(iterator, num_steps):
    sums = tf.zeros([4])
    first_bad = tf.constant(-1, tf.int64)
    for i in tf.range(num_steps):
      out = strategy.run(step_fn, args=(next(iterator),))
      step_sums = tf.stack([strategy.reduce(tf.distribute.ReduceOp.SUM,
                                            out[k], axis=None)
                            for k in ("loss", "errors", "examples",
                                      "nonfinite")])
      first_bad = tf.where((first_bad < 0) & (step_sums[3] > 0),
                           tf.cast(i, tf.int64), first_bad)
      sums += step_sums
    return sums, first_bad

  penalty = tf.function(lambda: task_lib.weight_decay_penalty(
      task_lib.decayed_variables(model), config.weight_decay))
  evaluator = evaluation.Evaluator(model, "center", task.compute_dtype)
  eval_split = "holdout" if source.has_split("holdout") else "test"
  # Test-set learning curves (Fig. 6) beside the validation ones; logged only.
  monitor_test = config.monitor_test and eval_split == "holdout"
  writers = {}
  if chief:
    kinds = ("train", "eval", "test") if monitor_test else ("train", "eval")
    writers = {name: tf.summary.create_file_writer(
        os.path.join(config.model_dir, name)) for name in kinds}
  metrics_path = os.path.join(config.model_dir, METRICS_FILE)
  best_directory = (os.path.join(config.model_dir, BEST_DIR) if chief else
                    tempfile.mkdtemp(prefix="tf_resnet_worker_best_"))
  best_manager = tf.train.CheckpointManager(
      tf.train.Checkpoint(model=model, step=task.step), best_directory,
      max_to_keep=1)

  def log(kind: str, step: int, values: dict[str, float]) -> None:
    if not chief:
      return
    with writers[kind].as_default(step=step):
      for name, value in values.items():
        tf.summary.scalar(name, value)
    _jsonl(metrics_path, {"kind": kind, "step": step, "time": time.time(),
                          **values})

  def evaluate_split(step: int, split: str, kind: str) -> evaluation.EvalResult:
    ds = pipeline.eval_dataset(source, statistics, config.input,
                               split=split, mode="center",
                               batch_size=min(256, max(batch, 32)))
    result = evaluator.evaluate(ds, max_examples=config.eval_examples)
    log(kind, step, {"top1_error": result.top1_error,
                     "top5_error": result.top5_error,
                     "examples": float(result.examples)})
    progress.message(f"step {step}: {split} top-1 error "
                     f"{result.top1_error:.4f}, top-5 {result.top5_error:.4f} "
                     f"({result.examples} examples)")
    return result

  def run_eval(step: int) -> evaluation.EvalResult:
    result = evaluate_split(step, eval_split, "eval")
    if monitor_test:
      evaluate_split(step, "test", "test")
    return result

  def export(step: int, why: str) -> None:
    # Estimator-style exporters: a new SavedModel version, the last few kept.
    if not config.export_dir:
      return
    module = serving_module.for_run(model, config.model.family,
                                    statistics.mean_image,
                                    source.class_names)
    if chief:
      path = writer.write(module, config.export_dir)
      writer.prune(config.export_dir, config.keep_exports)
      progress.message(f"step {step}: exported {path} ({why})")
    else:
      scratch = tempfile.mkdtemp(prefix="tf_resnet_worker_export_")
      writer.write(module, scratch)
      tf.io.gfile.rmtree(scratch)

  def _scratch_cleanup(path: str) -> None:
    if not chief:
      tf.io.gfile.rmtree(path)
      tf.io.gfile.makedirs(path)

  def save(step: int) -> str:
    path = manager.save(checkpoint_number=step)
    _scratch_cleanup(directory)
    return path

  def save_best(step: int) -> None:
    best_manager.save(checkpoint_number=step)
    _scratch_cleanup(best_directory)

  result = RunResult(step=start, checkpoint=restored,
                     model=model)
  last_save = time.time()
  step = start
  with _SignalCatcher() as signals:
    while step < config.train_steps:
      boundaries = [config.train_steps, step + config.steps_per_loop]
      for every in (config.eval_every_steps, config.checkpoint_every_steps):
        if every:
          boundaries.append((step // every + 1) * every)
      num_steps = min(boundaries) - step
      lr = float(schedule(tf.constant(step, tf.int64)))
      began = time.time()
      sums, first_bad = train_steps(iterator, tf.constant(num_steps))
      sums = sums.numpy()
      elapsed = time.time() - began
      if int(first_bad) >= 0:
        bad = step + int(first_bad) + 1
        raise TrainingError(
            f"the loss became {'NaN' if math.isnan(sums[0]) else 'infinite'} "
            f"at step {bad}; training stopped. The last good checkpoint is "
            f"{tf.train.latest_checkpoint(config.model_dir) or NO_CHECKPOINT}"
            "; lower --learning_rate or check the data.")
      step += num_steps
      examples = max(sums[2], 1.0)
      train_error = float(sums[1] / examples)
      loss = float(sums[0] / examples + penalty())
      rate = float(examples / max(elapsed, 1e-9))
      progress.show(step, loss, train_error, lr, rate,
                    (config.train_steps - step) * batch / rate)
      log("train", step, {"loss": loss, "train_error": train_error,
                          "learning_rate": lr, "images_per_sec": rate})
      if warmup is not None and warmup.observe_train_error(train_error):
        progress.message(f"step {step}: training error {train_error:.3f} is "
                         "below the warm-up threshold; learning rate back to "
                         f"{config.schedule.learning_rate}")
      due_eval = (config.eval_every_steps
                  and step % config.eval_every_steps == 0
                  and step < config.train_steps)
      if due_eval:
        result.last_eval = run_eval(step)
        if plateau is not None and plateau.observe_validation_error(
            result.last_eval.top1_error):
          progress.message(f"step {step}: validation error plateaued; "
                           f"learning rate now {float(plateau(step)):.4g}")
        if result.last_eval.top1_error < float(best_error):
          best_error.assign(result.last_eval.top1_error)
          save_best(step)
          if config.export_best:
            export(step, "best validation error so far")
      due_save = ((config.checkpoint_every_steps
                   and step % config.checkpoint_every_steps == 0)
                  or time.time() - last_save >= config.checkpoint_every_secs
                  or signals.caught is not None)
      if due_save and step < config.train_steps:
        result.checkpoint = save(step)
        last_save = time.time()
      if signals.caught is not None:
        result.interrupted_by = signals.caught
        progress.message(f"Stopped by signal {signals.caught} at step {step}; "
                         f"saved {result.checkpoint}. Run the same command "
                         "to resume.")
        result.step = step
        return result
    result.last_eval = run_eval(step)
    if result.last_eval.top1_error < float(best_error):
      best_error.assign(result.last_eval.top1_error)
      save_best(step)
    if step > start or not restored:
      result.checkpoint = save(step)
      export(step, "end of training")
  result.step = step
  return result
