"""The Controller: the cadence of training, evaluation and saving, and how a run stops.

Orbit's shape: the Controller asks the Trainer for `train(n)` until the next
event (an evaluation, a checkpoint, the end), evaluates on the validation
split, feeds the errors to the schedule, saves checkpoints every
`checkpoint_every_steps` and at least every `checkpoint_every_secs`, on
SIGTERM/SIGINT and at the end, and runs the caller's actions. Decisions
(the plateau schedule, the best model) are taken on the validation split
only; without one, the test split is evaluated and logged, never selected on.
"""

import dataclasses
import signal
import time
from typing import Callable, Optional, Sequence

from tf_resnet.training import actions as actions_lib
from tf_resnet.training import checkpoints
from tf_resnet.training import errors
from tf_resnet.training import evaluation
from tf_resnet.training import progress as progress_lib
from tf_resnet.training import run_dir
from tf_resnet.training import strategy as strategy_lib
from tf_resnet.training import trainer as trainer_lib
from tf_resnet.training import writers


@dataclasses.dataclass(frozen=True)
class Cadence:
  """When things happen, in steps (and seconds for checkpoints)."""

  train_steps: int
  steps_per_loop: int
  eval_every_steps: Optional[int] = None
  checkpoint_every_steps: Optional[int] = None
  checkpoint_every_secs: float = 600.0
  # False: no evaluation at all, neither every `eval_every_steps` nor at the
  # end (an evaluator beside the trainers evaluates their checkpoints).
  evaluate: bool = True


@dataclasses.dataclass
class RunResult:
  """How a run ended."""

  step: int
  interrupted_by: Optional[int] = None  # The signal that stopped it.
  last_eval: Optional[evaluation.EvalResult] = None
  checkpoint: Optional[str] = None
  model: Optional[object] = None  # The trained network.


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


class Controller:
  """Runs a Trainer to `cadence.train_steps`."""

  def __init__(self, trainer: trainer_lib.Trainer, *,
               cadence: Cadence,
               checkpointer: checkpoints.Checkpointer,
               writer: writers.MetricsWriter,
               progress: progress_lib.Progress,
               validation_split: Optional[str],
               monitor_test: bool = False,
               actions: Sequence[actions_lib.Action] = (),
               clock: Callable[[], float] = time.monotonic,
               validation_errors: Optional[Callable[[int], float]] = None):
    """Constructs the controller.

    Args:
      trainer: what trains.
      cadence: when to evaluate and save.
      checkpointer: saves the trainer's checkpoint.
      writer: where metrics go.
      progress: where a person reads them.
      validation_split: the split decisions are taken on (`holdout`), or
        None: then the test split is evaluated, logged as `test`, and
        nothing is decided on it.
      monitor_test: with a validation split, also evaluate the test split
        at every evaluation (logged as `test`; never decides anything).
      actions: run after each validation and at the end.
      clock: seconds, for the ETA (a test's scripted clock).
      validation_errors: when the loop does not evaluate
        (`cadence.evaluate` False) and the schedule is the plateau: the
        validation top-1 error of the checkpoint saved at a step, from the
        evaluator beside the trainers (it waits for it). Every
        `eval_every_steps` the loop saves, then gives the plateau that
        error, as its own evaluation would have.
    """
    self.trainer = trainer
    self.cadence = cadence
    self.checkpointer = checkpointer
    self.writer = writer
    self.progress = progress
    self.validation_split = validation_split
    self.monitor_test = monitor_test and validation_split is not None
    self.actions = list(actions)
    self._clock = clock
    self._started: Optional[tuple[float, int]] = None  # (time, step).
    self._validation_errors = validation_errors

  def _next_stop(self, step: int) -> int:
    c = self.cadence
    stops = [c.train_steps, step + c.steps_per_loop]
    for every in (c.eval_every_steps, c.checkpoint_every_steps):
      if every:
        stops.append((step // every + 1) * every)
    return min(stops)

  def _evaluate_split(self, step: int, split: str,
                      kind: str) -> evaluation.EvalResult:
    result = self.trainer.evaluate(split)
    self.writer.write(kind, step, {"top1_error": result.top1_error,
                                   "top5_error": result.top5_error,
                                   "examples": float(result.examples)})
    self.progress.message(
        f"step {step}: {split} top-1 error {result.top1_error:.4f}, top-5 "
        f"{result.top5_error:.4f} ({result.examples} examples)")
    return result

  def evaluate(self, step: int) -> evaluation.EvalResult:
    """Evaluates, decides on the validation split, and runs the actions."""
    if self.validation_split is None:
      return self._evaluate_split(step, "test", "test")
    result = self._evaluate_split(step, self.validation_split, "eval")
    if self.monitor_test:
      self._evaluate_split(step, "test", "test")
    plateau = self.trainer.plateau
    if plateau is not None and plateau.observe_validation_error(
        result.top1_error):
      self.progress.message(
          f"step {step}: validation error plateaued; learning rate now "
          f"{float(plateau(step)):.4g}")
    best = self.trainer.best_error
    improved = result.top1_error < float(best)
    if improved:
      best.assign(result.top1_error)
    for action in self.actions:
      action.on_validation(step, result, improved)
    return result

  def _waits_for_evaluator(self, step: int) -> bool:
    """Whether the plateau takes the evaluator's error of this step's checkpoint."""
    c = self.cadence
    return bool(not c.evaluate and self._validation_errors is not None
                and self.trainer.plateau is not None and c.eval_every_steps
                and step % c.eval_every_steps == 0
                and 0 < step < c.train_steps)

  def _observe_evaluator(self, step: int) -> None:
    error = self._validation_errors(step)
    if self.trainer.plateau.observe_validation_error(error):
      self.progress.message(
          f"step {step}: validation error plateaued (the evaluator's "
          f"{error:.4f}); learning rate now "
          f"{float(self.trainer.plateau(step)):.4g}")

  def _train_interval(self, step: int) -> int:
    """Trains to the next stop; logs the interval; returns the new step."""
    trainer = self.trainer
    try:
      metrics = trainer.train(self._next_stop(step) - step)
    except trainer_lib.NonFiniteLoss as e:
      raise errors.TrainingError(
          f"{e}; training stopped. The last good checkpoint is "
          f"{self.checkpointer.latest or run_dir.NO_CHECKPOINT}; lower "
          "--learning_rate or check the data.") from None
    self.progress.show(metrics.step, metrics.loss, metrics.train_error,
                       metrics.learning_rate, metrics.images_per_sec,
                       self._eta_secs(metrics.step))
    self.writer.write("train", metrics.step, metrics.to_json())
    warmup = trainer.warmup
    if warmup is not None and warmup.observe_train_error(
        metrics.train_error):
      self.progress.message(
          f"step {metrics.step}: training error {metrics.train_error:.3f} "
          "is below the warm-up threshold; learning rate back to "
          f"{trainer.config.schedule.learning_rate}")
    return metrics.step

  def _eta_secs(self, step: int) -> float:
    """The time left at the pace since this run started: wall-clock seconds
    per step including evaluations and saves (what the user waits for), so
    one slow interval or an evaluation does not swing it."""
    started_at, start_step = self._started
    done = step - start_step
    elapsed = self._clock() - started_at
    return (self.cadence.train_steps - step) * elapsed / max(done, 1)

  def run(self, restored: Optional[str] = None) -> RunResult:
    """Trains to the end, or until a signal; saves on the way.

    Args:
      restored: the checkpoint the trainer was restored from, if any.

    Returns:
      How the run ended.

    Raises:
      errors.TrainingError: for a non-finite loss (nothing is saved over
        the last good checkpoint).
    """
    c = self.cadence
    start = step = self.trainer.step
    self._started = (self._clock(), start)
    self.writer.write_record({"kind": run_dir.START_RECORD, "step": start,
                              "time": time.time()})
    result = RunResult(step=start, checkpoint=restored,
                       model=self.trainer.model)
    last_save = time.time()
    if restored and self._waits_for_evaluator(start):
      # Saved for the evaluator before its error was observed: observe it
      # now, as the run that saved it did next.
      self._observe_evaluator(start)
    with _SignalCatcher() as signals:
      while step < c.train_steps:
        step = self._train_interval(step)
        if (c.evaluate and c.eval_every_steps
            and step % c.eval_every_steps == 0 and step < c.train_steps):
          result.last_eval = self.evaluate(step)
        if step >= c.train_steps:
          break  # The end saves, evaluates and exports, signal or not.
        due_save = ((c.checkpoint_every_steps
                     and step % c.checkpoint_every_steps == 0)
                    or time.time() - last_save >= c.checkpoint_every_secs
                    or signals.caught is not None
                    or self._waits_for_evaluator(step))
        # Every worker takes part in a save; their clocks and signals are
        # their own, so they agree first.
        stopping = strategy_lib.any_worker(self.trainer.strategy,
                                           signals.caught is not None)
        if strategy_lib.any_worker(self.trainer.strategy, bool(due_save)):
          result.checkpoint = self.checkpointer.save(step)
          last_save = time.time()
        if stopping:
          # Every worker saved this step and stops with it; the ones that
          # were not signalled stop as if they had been.
          result.interrupted_by = signals.caught or signal.SIGTERM
          why = (f"by signal {signals.caught}" if signals.caught is not None
                 else "because another worker was stopped by a signal")
          self.progress.message(
              f"Stopped {why} at step {step}; saved {result.checkpoint}. "
              "Run the same command to resume.", every_worker=True)
          result.step = step
          self.writer.flush()
          return result
        if self._waits_for_evaluator(step):
          self._observe_evaluator(step)
      if c.evaluate:
        result.last_eval = self.evaluate(step)
      if step > start or not restored:
        result.checkpoint = self.checkpointer.save(step)
        for action in self.actions:
          action.on_end(step)
    self.writer.flush()
    result.step = step
    return result
