"""The evaluator beside the trainers: `--mode=continuous_eval`.

Model Garden's `continuous_eval` mode and tf.estimator's `evaluator` task in
spirit: the trainers run without evaluating (`TrainConfig.mode == "train"`)
and save checkpoints; one more process watches the run's directory and
evaluates every checkpoint that appears, so that nobody in the all-reduce
ring waits while 10-crop or multi-scale validation runs.

`evaluate_continuously(model_dir)` reads the run from its `config.json`
(the trainer writes it; nothing else is needed) and, for each new checkpoint
in step order:

* evaluates the validation split in the run's `eval_mode` (and the test split
  when the run monitors it, or when there is no validation split) through
  the training loop's own `Controller.evaluate` and `Trainer.evaluate`, so
  the numbers, TensorBoard summaries (`eval/`, `test/`) and log lines are the
  ones an in-loop evaluation writes;
* keeps the best checkpoint (`best/`) and runs the caller's actions (the
  binary's best export) when the validation error improves;
* appends that checkpoint's lines, then an `evaluated` line naming it, to its
  own log, `evaluator_metrics.jsonl`, in one write (the trainers own
  `metrics.jsonl`; `tf_resnet.reporting.logs` reads both).

It returns after the checkpoint of the run's last step, and raises
`errors.TaskSilent` (retryable: the trainers may be restarting) when no new
checkpoint appears within the timeout. A killed
evaluator run again reads its log and evaluates only the checkpoints it has
no `evaluated` line for.

The plateau schedule decides on the validation error inside the training
loop: in mode `train` the trainers save a checkpoint at every evaluation
step and wait for the evaluator's `eval` line of it (`train_lib`), so the
schedule takes the same decisions at the same steps as in `train_and_eval`.
"""

import dataclasses
import json
import os
import sys
import time
from typing import Callable, Optional, TextIO

import tensorflow as tf

from tf_resnet.data import sources
from tf_resnet.training import actions as actions_lib
from tf_resnet.training import cluster
from tf_resnet.training import config as config_lib
from tf_resnet.training import controller as controller_lib
from tf_resnet.training import errors
from tf_resnet.training import progress as progress_lib
from tf_resnet.training import run_dir
from tf_resnet.training import train_lib
from tf_resnet.training import trainer as trainer_lib
from tf_resnet.training import writers

TRAIN_AND_EVAL, TRAIN = config_lib.MODES
CONTINUOUS_EVAL = "continuous_eval"
# The binary's --mode values.
MODES = config_lib.MODES + (CONTINUOUS_EVAL,)
# The line of the evaluator's log that says a checkpoint was done.
EVALUATED_RECORD = "evaluated"


class EvaluatorError(errors.TrainingError):
  """The evaluator cannot go on; says why and what to do."""


def resolve_mode(flag: Optional[str], task: Optional[cluster.Task]) -> str:
  """The mode this process runs in: --mode, or what TF_CONFIG's task implies.

  TF_CONFIG's `evaluator` task runs `continuous_eval`; the training tasks of
  a cluster with an evaluator run `train` (the evaluator evaluates); without
  TF_CONFIG, or without an evaluator in it, the default is `train_and_eval`.

  Args:
    flag: --mode, or None when it was not given.
    task: this process's task in TF_CONFIG, or None.

  Returns:
    One of MODES.

  Raises:
    cluster.ClusterError: when --mode contradicts TF_CONFIG.
  """
  if flag is not None and flag not in MODES:
    raise ValueError(f"`mode` must be one of {MODES}, not {flag!r}")
  if task is None:
    return flag or TRAIN_AND_EVAL
  if task.is_evaluator:
    if flag not in (None, CONTINUOUS_EVAL):
      raise cluster.ClusterError(
          f"TF_CONFIG's task is the cluster's evaluator, which runs "
          f"--mode={CONTINUOUS_EVAL}, not --mode={flag}")
    return CONTINUOUS_EVAL
  if flag == CONTINUOUS_EVAL:
    raise cluster.ClusterError(
        f"--mode={CONTINUOUS_EVAL} with TF_CONFIG's task {task.type} "
        f"{task.index}: a cluster's evaluator is its `evaluator` task (give "
        "the evaluator process that TF_CONFIG, or none)")
  if task.has_evaluator:
    if flag not in (None, TRAIN):
      raise cluster.ClusterError(
          f"TF_CONFIG's cluster has an evaluator task, which evaluates the "
          f"checkpoints: the training tasks run --mode={TRAIN}, not "
          f"--mode={flag}")
    return TRAIN
  return flag or TRAIN_AND_EVAL


def _path(model_dir: str) -> str:
  return os.path.join(model_dir, run_dir.EVALUATOR_METRICS_FILE)


def evaluated_steps(model_dir: str) -> set[int]:
  """The steps whose checkpoints the evaluator of `model_dir` finished.

  A partial last line of its log (a kill while writing) is cut off the
  file, so that the next line starts afresh.
  """
  path = _path(model_dir)
  if tf.io.gfile.exists(path):
    with tf.io.gfile.GFile(path) as f:
      text = f.read()
    if not text.endswith("\n"):
      run_dir.write_atomically(path, text[:text.rfind("\n") + 1])
  return {int(r["step"]) for r in run_dir.evaluator_records(model_dir)
          if r.get("kind") == EVALUATED_RECORD}


class _Log(writers.MetricsWriter):
  """The evaluator's writer: a checkpoint's lines go out together, at `commit`."""

  def __init__(self, model_dir: str):
    super().__init__(model_dir, filename=run_dir.EVALUATOR_METRICS_FILE)
    self._pending = []

  def write_record(self, record):
    self._pending.append(json.dumps(record) + "\n")

  def commit(self) -> None:
    # One write: a kill leaves all of a checkpoint's lines or none (at
    # worst a partial last line, which `evaluated_steps` cuts off).
    with tf.io.gfile.GFile(self._path, "a") as f:
      f.write("".join(self._pending))
    self._pending = []
    self.flush()


@dataclasses.dataclass
class EvalRunResult:
  """What an evaluator did.

  Attributes:
    evaluated: the steps whose checkpoints this process evaluated.
    skipped: (checkpoint, why) for those it could not read (deleted by the
      trainer's `keep_checkpoints` before their turn, or damaged).
    final_step: the run's last step, whose checkpoint was evaluated (by
      this process or an earlier one).
    best_checkpoint: `best/ckpt-N`, None without a validation split.
  """

  evaluated: list[int]
  skipped: list[tuple[str, str]]
  final_step: int
  best_checkpoint: Optional[str]


def _read_config(model_dir: str) -> Optional[config_lib.TrainConfig]:
  path = os.path.join(model_dir, run_dir.CONFIG_FILE)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return config_lib.train_config_from_json(f.read())


class _Evaluation:
  """The network of a run, and the training loop's evaluation over it."""

  def __init__(self, model_dir: str, config: config_lib.TrainConfig,
               make_actions: Optional[train_lib.ActionsFn],
               progress: progress_lib.Progress):
    if config.mode != TRAIN:
      raise EvaluatorError(
          f"{model_dir} is a run in mode {config.mode!r}: its chief "
          "evaluates in the training loop, and an evaluator beside it would "
          "write a second best checkpoint and second validation records. "
          f"Train with --mode={TRAIN} (or a TF_CONFIG cluster with an "
          "evaluator task); to evaluate one checkpoint, use "
          "tf_resnet.evaluate")
    run = run_dir.load(model_dir)
    source = sources.parse(config.data.dataset, data_dir=config.data.data_dir,
                           family=config.model.family,
                           holdout=config.data.holdout,
                           on_bad_file=config.data.on_bad_file)
    # Evaluation needs no strategy: one device, whatever the trainers use.
    self.trainer = trainer_lib.Trainer(config, tf.distribute.get_strategy(),
                                       source, run.statistics)
    # The trainers' plateau schedule decides on this evaluator's lines
    # (train_lib); this copy of it would only guess.
    self.trainer.plateau = None
    self._weights = tf.train.Checkpoint(model=self.trainer.model,
                                        step=self.trainer.task.step)
    self.model_dir = model_dir
    self.log = _Log(model_dir)
    self.has_validation = source.has_split("holdout")
    experiment = train_lib.Experiment(config, source, run.statistics,
                                      self.trainer, is_chief=True)
    # The caller's actions (the best export) before the best checkpoint: an
    # evaluator killed between the two evaluates that checkpoint again and,
    # the best error not yet saved, exports it again rather than never.
    actions = list(make_actions(experiment) if make_actions else ())
    actions.append(actions_lib.SaveBestCheckpoint(
        self.trainer.model, self.trainer.task.step, self.trainer.best_error,
        model_dir, is_chief=True))
    self.controller = controller_lib.Controller(
        self.trainer,
        cadence=controller_lib.Cadence(train_steps=config.train_steps,
                                       steps_per_loop=config.steps_per_loop),
        checkpointer=None,  # Only `evaluate` runs: nothing trains or saves.
        writer=self.log, progress=progress,
        validation_split="holdout" if self.has_validation else None,
        monitor_test=config.monitor_test, actions=actions)

  def evaluate(self, path: str) -> Optional[str]:
    """Evaluates the checkpoint at `path` and logs it; returns why not, or None.

    Raises:
      EvaluatorError: if the checkpoint does not hold the run's network.
    """
    problem = run_dir.checkpoint_problem(path)
    if problem is None:
      try:
        self._weights.read(path).expect_partial(
            ).assert_existing_objects_matched()
      except tf.errors.NotFoundError as e:  # Deleted since the check.
        problem = f"NotFoundError: {e.message.splitlines()[0][:200]}"
      except AssertionError as e:
        raise EvaluatorError(f"{path} does not hold the network of "
                             f"{self.model_dir}/config.json: "
                             f"{str(e)[:300]}") from None
    if problem is not None:
      return problem
    step = self.trainer.step
    self.controller.evaluate(step)
    self.log.write_record({"kind": EVALUATED_RECORD, "step": step,
                           "time": time.time(), "checkpoint": path,
                           "eval_mode": self.trainer.config.eval_mode})
    self.log.commit()
    return None


def _pending(model_dir: str, done: set[int]) -> list[str]:
  """The checkpoints after the last evaluated one, oldest first."""
  last = max(done, default=-1)
  return sorted((p for p in run_dir.checkpoints(model_dir)
                 if run_dir.checkpoint_number(p) > last),
                key=run_dir.checkpoint_number)


def evaluate_continuously(
    model_dir: str, *, timeout_secs: float,
    make_actions: Optional[train_lib.ActionsFn] = None,
    progress_stream: TextIO = sys.stdout, poll_secs: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep) -> EvalRunResult:
  """Evaluates the checkpoints of the run in `model_dir` as they appear.

  Args:
    model_dir: the run's directory, shared with its trainers.
    timeout_secs: give up when no new checkpoint (or, at first, no run)
      appears for this long.
    make_actions: given the experiment, the actions to run after each
      validation (e.g. the best export), besides keeping the best
      checkpoint. Their `on_end` is the trainers' and is not called.
    progress_stream: where the evaluator's lines go.
    poll_secs: how often to look for a new checkpoint.
    clock: seconds, for the timeout.
    sleep: waits, between looks.

  Returns:
    What it did, once the checkpoint of the run's last step is evaluated.

  Raises:
    errors.TaskSilent: when no new checkpoint (or, at first, no run)
      appears within `timeout_secs`.
    EvaluatorError: for a run that evaluates in its own loop, or for a
      checkpoint of another network.
    sources.DataError: for data the evaluator cannot read.
  """
  done = evaluated_steps(model_dir)
  passed = set()  # Skipped: an evaluator goes forward, never back.
  result = EvalRunResult(evaluated=[], skipped=[], final_step=-1,
                         best_checkpoint=None)
  evaluation = None
  progress = None
  waiting_since = clock()
  while True:
    config = _read_config(model_dir)
    if config is not None:
      if progress is None:
        progress = progress_lib.Progress(config.train_steps, progress_stream)
        progress.message(
            f"Evaluating the checkpoints of {model_dir} as they appear "
            f"({config.eval_mode} view)"
            + (f"; {len(done)} were evaluated before, up to step {max(done)}"
               if done else ""))
      if max(done, default=-1) >= config.train_steps:
        break
    pending = (_pending(model_dir, done | passed) if config is not None
               else [])
    if not pending:
      if clock() - waiting_since > timeout_secs:
        what = ("the run's config.json" if config is None else
                f"a checkpoint after step {max(done, default=0)} of "
                f"{config.train_steps}")
        raise errors.TaskSilent(
            f"no new checkpoint in {model_dir} for {timeout_secs:g} s: "
            f"waited for {what}. Is the training running? Running the "
            "evaluator again goes on from there (checkpoints it evaluated "
            "are not evaluated again)")
      sleep(poll_secs)
      continue
    if evaluation is None:
      evaluation = _Evaluation(model_dir, config, make_actions, progress)
    for path in pending:
      step = run_dir.checkpoint_number(path)
      problem = evaluation.evaluate(path)
      if problem is None:
        result.evaluated.append(step)
        done.add(step)
      else:
        progress.message(f"Skipped {path}: {problem}")
        result.skipped.append((path, problem))
        passed.add(step)
    waiting_since = clock()
  result.final_step = config.train_steps
  best = os.path.join(model_dir, run_dir.BEST_DIR)
  result.best_checkpoint = tf.train.latest_checkpoint(best)
  progress.message(
      f"Evaluated the checkpoint of the last step, {config.train_steps}"
      + (f"; the best validation error is in {result.best_checkpoint}"
         if result.best_checkpoint else ""))
  return result
