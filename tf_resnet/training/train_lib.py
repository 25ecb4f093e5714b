"""Runs (or resumes) a training run: checks, data, Trainer, Controller, actions.

`train(config)` is what `tf_resnet.train` calls, and what tests, benchmarks
and library users call too (flax's `train_and_evaluate` in spirit):

* everything that can be wrong is checked before any compute: the data, the
  model_dir, the batch's divisibility among replicas, a model_dir that holds
  another network, a resumed run whose data or schedule would change;
* rerunning the same command resumes from the newest checkpoint that reads
  (damaged ones are moved aside with a warning), also after `kill -9`, and
  stops at `train_steps`;
* `config.init_from` starts a new run from another run's weights (fine-
  tuning, `initialization.py`), keeping its mean image;
* the chief alone writes checkpoints, summaries, logs and exports; what runs
  after evaluations and at the end (the best checkpoint, exports) are actions
  the caller passes in (`make_actions`).
"""

import dataclasses
import json
import os
import re
import sys
import time
from typing import Callable, Optional, Sequence, TextIO

from absl import logging
import tensorflow as tf

from tf_resnet.data import sources
from tf_resnet.data import stats as stats_lib
from tf_resnet.training import actions as actions_lib
from tf_resnet.training import checkpoints
from tf_resnet.training import config as config_lib
from tf_resnet.training import controller as controller_lib
from tf_resnet.training import errors
from tf_resnet.training import initialization
from tf_resnet.training import progress as progress_lib
from tf_resnet.training import run_dir
from tf_resnet.training import strategy as strategy_lib
from tf_resnet.training import trainer as trainer_lib
from tf_resnet.training import writers

TrainingError = errors.TrainingError
WorkerLost = errors.WorkerLost
RunResult = controller_lib.RunResult
# What a collective raises when another worker is gone: its connection
# reset (a killed process), its heartbeats missing (TensorFlow's
# coordination service: a stopped or unreachable machine), or an operation
# aborted or timed out because of either.
_PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.AbortedError,
                tf.errors.DeadlineExceededError, tf.errors.CancelledError)


@dataclasses.dataclass(frozen=True)
class Experiment:
  """What a run is built from; handed to `make_actions`."""

  config: config_lib.TrainConfig
  source: sources.Source
  statistics: stats_lib.Statistics
  trainer: trainer_lib.Trainer
  is_chief: bool


ActionsFn = Callable[[Experiment], Sequence[actions_lib.Action]]


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this process writes the run's files (the chief, or worker 0)."""
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


def _check_resume(config: config_lib.TrainConfig, allow_config_change: bool,
                  say: Callable[[str], None]) -> Optional[dict]:
  """Compares the stored config.json with this command's config.

  Returns:
    The stored config.json, parsed; None when the run has none yet.

  Raises:
    TrainingError: for another network, or (unless allowed) a change of the
      data or the schedule.
  """
  path = os.path.join(config.model_dir, run_dir.CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    text = f.read()
  previous = config_lib.model_config_from_json(text)
  stored = json.loads(text)
  changes = config_lib.config_changes(stored, config)
  # Another network cannot load the run's checkpoints at all; only how its
  # batch norm gathers statistics may change (a decisive change below).
  other = [f"{name[len('model.'):]}: {old!r} -> {new!r}"
           for name, old, new, _ in changes
           if name.startswith("model.") and name != "model.sync_batch_norm"]
  if other:
    raise TrainingError(
        f"{config.model_dir} holds a run of {previous.display_name} "
        f"({previous.family}, {previous.num_classes} classes); this command "
        f"builds {config.model.display_name} ({config.model.family}, "
        f"{config.model.num_classes} classes): {'; '.join(other)}. Use "
        "another --model_dir.")
  decisive = [c for c in changes if c[3]]
  if decisive and not allow_config_change:
    listed = "; ".join(f"{name}: {old!r} -> {new!r}"
                       for name, old, new, _ in decisive)
    raise TrainingError(
        f"{config.model_dir} holds a run this command would change: "
        f"{listed}. These change the data or the schedule of a run under "
        "way; use another --model_dir, the run's own settings, or "
        "--allow_config_change to change them anyway.")
  for name, old, new, _ in changes:
    say(f"Resuming with {name} changed: {old!r} -> {new!r}")
  return stored


def wait_for_validation_error(
    model_dir: str, step: int, *, timeout_secs: float,
    say: Callable[[str], None] = print, poll_secs: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep) -> float:
  """The validation top-1 error the run's evaluator logged for the checkpoint at `step`.

  Waits for it (tf_resnet.training.continuous_eval writes it). Every worker
  reads the same line of the shared log, so they all decide alike.

  Raises:
    errors.TaskSilent: (retryable) when it has not come within
      `timeout_secs`.
  """
  deadline = clock() + timeout_secs
  said = False
  while True:
    for record in run_dir.evaluator_records(model_dir):
      if record.get("kind") == "eval" and int(record["step"]) == step:
        return float(record["top1_error"])
    if clock() >= deadline:
      raise errors.TaskSilent(
          f"no validation error of the checkpoint at step {step} from an "
          f"evaluator ({run_dir.EVALUATOR_METRICS_FILE} in {model_dir}) "
          f"within {timeout_secs:g} s; the plateau schedule decides on it. "
          "Start the evaluator (--mode=continuous_eval, or TF_CONFIG's "
          "evaluator task) and run the same command again, or train with "
          "--mode=train_and_eval")
    if not said:
      say(f"step {step}: waiting for the evaluator's validation error of "
          "this step's checkpoint (the plateau schedule decides on it)")
      said = True
    sleep(poll_secs)


def _validation_split(source: sources.Source) -> Optional[str]:
  return "holdout" if source.has_split("holdout") else None


def train(config: config_lib.TrainConfig, *,
          source: Optional[sources.Source] = None,
          make_actions: Optional[ActionsFn] = None,
          allow_config_change: bool = False,
          progress_stream: TextIO = sys.stdout,
          strategy: Optional[tf.distribute.Strategy] = None,
          evaluator_timeout_secs: float = 3600.0) -> RunResult:
  """Trains (or resumes training) as `config` says.

  Args:
    config: the run.
    source: the data `config.data` names, if the caller has it already.
    make_actions: given the built experiment, the actions to run after
      validations and at the end (e.g. exports), besides keeping the best
      checkpoint.
    allow_config_change: resume even if the data or schedule settings
      differ from the stored run's (each change is logged either way).
    progress_stream: where progress lines go.
    strategy: the strategy `config.strategy` names, if the caller built it
      already: a binary builds MultiWorkerMirroredStrategy before anything
      else, since it configures collective ops, which TensorFlow accepts
      only before its first op.
    evaluator_timeout_secs: in mode `train` with the plateau schedule, how
      long to wait for the evaluator's validation error of a checkpoint.

  Returns:
    How the run ended.

  Raises:
    TrainingError: for an unusable model_dir, a refused change, unreadable
      checkpoints or a non-finite loss.
    sources.DataError: for missing or unusable data.
    ValueError: for a batch that does not divide among the replicas, or
      data that does not fit the network.
    errors.WorkerLost: (a TrainingError) when another worker of a
      multi-worker run fails or vanishes.
  """
  if strategy is None:
    strategy = strategy_lib.make_strategy(config.strategy,
                                          config.num_cpu_devices)
  try:
    return _train(config, strategy, source, make_actions,
                  allow_config_change, progress_stream, evaluator_timeout_secs)
  except _PEER_ERRORS as e:
    if strategy_lib.num_workers(strategy) < 2:
      raise
    latest = tf.train.latest_checkpoint(config.model_dir)
    raise errors.WorkerLost(
        f"lost another worker of the cluster ({type(e).__name__}: "
        f"{_first_words(e.message)}); restart every worker to resume from "
        f"the last checkpoint, {latest or 'none yet: from the start'}"
    ) from e


def _first_words(message: str) -> str:
  """TensorFlow's error message in one line: without the traceback of the
  graph node it happened at (indented lines), internal op names and the
  generic advice it appends."""
  lines = [line for line in message.splitlines()
           if line and not line[0].isspace()
           and not line.startswith(("Graph execution error:",
                                    "Detected at node "))]
  text = re.sub(r"\{\{[^}]*\}\}\s*", "", " ".join(lines))
  text = text.split("The error could be from a previous operation")[0]
  return " ".join(text.split())[:500]


def _train(config: config_lib.TrainConfig, strategy: tf.distribute.Strategy,
           source: Optional[sources.Source], make_actions: Optional[ActionsFn],
           allow_config_change: bool, progress_stream: TextIO,
           evaluator_timeout_secs: float) -> RunResult:
  """`train`'s work, under a built strategy."""
  replicas = strategy.num_replicas_in_sync
  if config.input.global_batch_size % replicas:
    raise ValueError(f"--batch_size={config.input.global_batch_size} must be "
                     f"divisible by the number of replicas ({replicas})")
  chief = is_chief(strategy)
  progress = progress_lib.Progress(config.train_steps, progress_stream,
                                   enabled=chief)
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
  validation = _validation_split(source)
  if validation is None and config.export_best:
    raise ValueError("--export_best selects on the validation error and "
                     "there is no validation split: pass --holdout=N")
  stored = _check_resume(config, allow_config_change, progress.message)
  stats_path = os.path.join(config.model_dir, run_dir.STATS_FILE)
  # The run's weights were trained with its stats.json. Before its first
  # checkpoint nothing was: a rerun that starts from other weights (another
  # --init_from, or none) takes the statistics that go with them.
  if tf.io.gfile.exists(stats_path) and (
      (stored is not None and stored.get("init_from") == config.init_from)
      or tf.train.latest_checkpoint(config.model_dir) is not None):
    statistics = stats_lib.Statistics.load(stats_path)
  elif config.init_from:
    # Fine-tuning keeps the preprocessing the source's weights were
    # trained with.
    try:
      statistics = initialization.source_for(config.init_from,
                                             config.model)[0].statistics
    except initialization.InitError as e:
      raise TrainingError(str(e)) from None
    progress.message(f"Using the mean image and RGB components of "
                     f"{config.init_from} (kept in {stats_path})")
    if chief:
      statistics.save(stats_path)
  else:
    progress.message(
        f"Computing the per-pixel mean and RGB components from up to "
        f"{config.data.stats_max_images} training images (once; kept in "
        f"{stats_path})")
    statistics = stats_lib.compute(source,
                                   max_images=config.data.stats_max_images)
    logging.info("Computed the mean image and RGB components from %d "
                 "training images of %s", statistics.num_images, source.name)
    if chief:
      statistics.save(stats_path)
  if chief:
    run_dir.write_atomically(os.path.join(config.model_dir,
                                          run_dir.CONFIG_FILE),
                             config.to_json())
    run_dir.write_atomically(
        os.path.join(config.model_dir, run_dir.LABELS_FILE),
        "".join(f"{name}\n" for name in source.class_names))
  if validation is None:
    progress.message(
        f"No validation split ({source.name} has no holdout): evaluations "
        "use the test split and are only logged; nothing is selected on "
        "them (no best checkpoint"
        + (", and the plateau schedule keeps its rate" if
           config.schedule.kind == "plateau" else "")
        + "). Pass --holdout=N to hold out N training examples.")

  trainer = trainer_lib.Trainer(config, strategy, source, statistics)
  checkpointer = checkpoints.Checkpointer(
      trainer.checkpoint, config.model_dir, is_chief=chief,
      max_to_keep=config.keep_checkpoints, step_counter=trainer.task.step)
  try:
    restored, damaged = checkpointer.newest_readable()
  except checkpoints.CheckpointError as e:
    raise TrainingError(str(e)) from None
  # Every worker must resume from the same checkpoint.
  number = run_dir.checkpoint_number(restored) if restored else -1
  if not strategy_lib.same_on_every_worker(strategy, number):
    raise TrainingError(
        f"the workers found different newest readable checkpoints in "
        f"{config.model_dir} (this one: {restored}); run the same command "
        "again once the files are settled")
  if damaged:
    progress.message(checkpoints.log_damaged(damaged, restored))
  if restored is None and config.init_from:
    try:
      with strategy.scope():
        report = initialization.initialize(
            trainer.model, config.model, source.class_names,
            config.init_from)
    except initialization.InitError as e:
      raise TrainingError(str(e)) from None
    progress.message(report.summary())
  trainer.restore(restored)
  if restored:
    progress.message(f"Resumed from {restored} at step {trainer.step}")
  experiment = Experiment(config, source, statistics, trainer, chief)
  actions = [actions_lib.SaveBestCheckpoint(
      trainer.model, trainer.task.step, trainer.best_error, config.model_dir,
      is_chief=chief)]
  actions += list(make_actions(experiment) if make_actions else ())
  # In mode `train` an evaluator evaluates the checkpoints: by default they
  # come where the loop would have evaluated, and the plateau schedule
  # takes the evaluator's validation errors of them.
  in_loop = config.mode != "train"
  validation_errors = None
  if not in_loop and trainer.plateau is not None and validation is not None:
    validation_errors = lambda step: wait_for_validation_error(
        config.model_dir, step, timeout_secs=evaluator_timeout_secs,
        say=progress.message)
  controller = controller_lib.Controller(
      trainer,
      cadence=controller_lib.Cadence(
          train_steps=config.train_steps,
          steps_per_loop=config.steps_per_loop,
          eval_every_steps=config.eval_every_steps,
          checkpoint_every_steps=(config.checkpoint_every_steps
                                  or (None if in_loop
                                      else config.eval_every_steps)),
          checkpoint_every_secs=config.checkpoint_every_secs,
          evaluate=in_loop),
      validation_errors=validation_errors,
      checkpointer=checkpointer,
      writer=writers.create_writer(config.model_dir, just_logging=not chief),
      progress=progress,
      validation_split=validation,
      monitor_test=config.monitor_test,
      actions=actions)
  return controller.run(restored)
