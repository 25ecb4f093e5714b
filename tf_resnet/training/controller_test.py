"""The Controller's cadence, decisions and stops, with a scripted Trainer."""

import io
import math
import os
import signal
import types

import tensorflow as tf

from tf_resnet.training import actions
from tf_resnet.training import controller as controller_lib
from tf_resnet.training import evaluation
from tf_resnet.training import progress
from tf_resnet.training import trainer as trainer_lib
from tf_resnet.training import writers


class _Trainer:
  """Counts steps; scripted errors; sends itself a signal when told to."""

  def __init__(self, errors, signal_at=None, plateau=None, clock=None):
    self.step = 0
    self.clock = clock
    self.strategy = tf.distribute.get_strategy()
    self.model = object()
    self.config = types.SimpleNamespace(
        input=types.SimpleNamespace(global_batch_size=4),
        schedule=types.SimpleNamespace(learning_rate=0.1))
    self.plateau = plateau
    self.warmup = None
    self.best_error = tf.Variable(math.inf)
    self.calls, self.evaluated = [], []
    self._errors = list(errors)
    self._signal_at = signal_at

  def train(self, num_steps):
    self.calls.append((self.step, num_steps))
    if self._signal_at is not None and self.step < self._signal_at <= (
        self.step + num_steps):
      os.kill(os.getpid(), signal.SIGTERM)  # Arrives mid-call.
    self.step += num_steps
    if self.clock is not None:
      self.clock.now += num_steps  # A second a step.
    return trainer_lib.TrainMetrics(step=self.step, loss=1.0,
                                    train_error=0.5, learning_rate=0.1,
                                    images_per_sec=100.0, seconds=0.1)

  def evaluate(self, split):
    self.evaluated.append((self.step, split))
    if self.clock is not None:
      self.clock.now += 5  # An evaluation takes five steps' time.
    error = self._errors.pop(0)
    return evaluation.EvalResult(error, error / 2, 10)


class _Saver:

  def __init__(self):
    self.saved = []
    self.latest = None

  def save(self, step):
    self.saved.append(step)
    self.latest = f"ckpt-{step}"
    return self.latest


class _Recorder(actions.Action):

  def __init__(self):
    self.validations, self.ends = [], []

  def on_validation(self, step, result, improved):
    self.validations.append((step, result.top1_error, improved))

  def on_end(self, step):
    self.ends.append(step)


class _Clock:

  def __init__(self, now=100.0):
    self.now = now

  def time(self):
    return self.now


def _run(trainer, *, validation="holdout", restored=None, saver=None,
         validation_errors=None, **cadence):
  saver, recorder, out = saver or _Saver(), _Recorder(), io.StringIO()
  values = dict(train_steps=10, steps_per_loop=3)
  values.update(cadence)
  controller = controller_lib.Controller(
      trainer, cadence=controller_lib.Cadence(**values), checkpointer=saver,
      writer=writers.create_writer("/nonexistent", just_logging=True),
      progress=progress.Progress(values["train_steps"], out),
      validation_split=validation, actions=[recorder],
      clock=(trainer.clock or _Clock()).time,
      validation_errors=validation_errors)
  return controller.run(restored), saver, recorder, out.getvalue()


class ControllerTest(tf.test.TestCase):

  def test_intervals_stop_at_every_event(self):
    trainer = _Trainer(errors=[0.5, 0.4, 0.45, 0.3])
    result, saver, recorder, _ = _run(trainer, eval_every_steps=4,
                                      checkpoint_every_steps=5)
    # steps_per_loop 3, evaluations at 4 and 8, checkpoints at 5, the end.
    self.assertEqual(trainer.calls, [(0, 3), (3, 1), (4, 1), (5, 3), (8, 2)])
    self.assertEqual(trainer.evaluated, [(4, "holdout"), (8, "holdout"),
                                         (10, "holdout")])
    self.assertEqual(saver.saved, [5, 10])
    self.assertEqual(recorder.validations, [(4, 0.5, True), (8, 0.4, True),
                                            (10, 0.45, False)])
    self.assertEqual(recorder.ends, [10])
    self.assertEqual((result.step, result.checkpoint), (10, "ckpt-10"))
    self.assertAllClose(trainer.best_error, 0.4)

  def test_the_eta_is_the_pace_since_the_start_evaluations_included(self):
    # A second a step, five per evaluation: after 5 steps (5 s) 15 are left
    # at 1 s each; after 10 (15 s, one evaluation) 10 at 1.5 s; after 15
    # (25 s) 5 at 5/3 s. Not the interval's training rate (0.04 s a step).
    trainer = _Trainer(errors=[0.5, 0.4, 0.3, 0.2], clock=_Clock())
    *_, text = _run(trainer, train_steps=20, steps_per_loop=5,
                    eval_every_steps=5)
    self.assertEqual([line.split("ETA ")[1] for line in text.splitlines()
                      if "ETA" in line],
                     ["0:00:15", "0:00:15", "0:00:08", "0:00:00"])

  def test_without_validation_split_nothing_is_decided(self):
    plateau = types.SimpleNamespace(observed=[])
    plateau.observe_validation_error = lambda e: plateau.observed.append(e)
    trainer = _Trainer(errors=[0.5, 0.4, 0.3], plateau=plateau)
    _, _, recorder, _ = _run(trainer, validation=None, eval_every_steps=4)
    self.assertEqual([s for _, s in trainer.evaluated], ["test"] * 3)
    self.assertEqual(plateau.observed, [])
    self.assertEqual(recorder.validations, [])
    self.assertEqual(recorder.ends, [10])
    self.assertEqual(float(trainer.best_error), math.inf)

  def test_without_evaluations_the_plateau_takes_the_evaluators_errors(self):
    # Mode `train`: at each evaluation step the checkpoint is saved first
    # (the evaluator evaluates it), then its error goes to the plateau.
    plateau = types.SimpleNamespace(observed=[])
    plateau.observe_validation_error = (
        lambda e: plateau.observed.append(e) and False)
    trainer = _Trainer(errors=[], plateau=plateau)
    saver, asked = _Saver(), []

    def evaluators_error(step):
      asked.append((step, list(saver.saved)))
      return step / 100

    _, _, recorder, _ = _run(trainer, saver=saver, eval_every_steps=4,
                             evaluate=False,
                             validation_errors=evaluators_error)
    self.assertEqual(trainer.evaluated, [])
    self.assertEqual(asked, [(4, [4]), (8, [4, 8])])
    self.assertEqual(plateau.observed, [0.04, 0.08])
    self.assertEqual(saver.saved, [4, 8, 10])
    self.assertEqual((recorder.validations, recorder.ends), ([], [10]))

  def test_resumed_at_an_evaluation_step_the_plateau_takes_its_error_first(
      self):
    # Its checkpoint was saved before the error was observed.
    plateau = types.SimpleNamespace(observed=[])
    plateau.observe_validation_error = (
        lambda e: plateau.observed.append(e) and False)
    trainer = _Trainer(errors=[], plateau=plateau)
    trainer.step = 8
    asked = []

    def evaluators_error(step):
      asked.append((step, list(trainer.calls)))
      return 0.5

    _run(trainer, restored="ckpt-8", train_steps=14, eval_every_steps=4,
         evaluate=False, validation_errors=evaluators_error)
    self.assertEqual(asked, [(8, []), (12, [(8, 3), (11, 1)])])
    self.assertEqual(plateau.observed, [0.5, 0.5])

  def test_a_signal_saves_and_stops_between_calls(self):
    trainer = _Trainer(errors=[], signal_at=5)
    result, saver, recorder, text = _run(trainer)
    self.assertEqual(result.interrupted_by, signal.SIGTERM)
    self.assertEqual((result.step, saver.saved), (6, [6]))
    self.assertEqual(recorder.ends, [])
    self.assertIn("Stopped by signal 15 at step 6; saved ckpt-6", text)

  def test_a_signal_in_the_last_interval_finishes_the_run(self):
    trainer = _Trainer(errors=[0.2], signal_at=10)
    result, saver, recorder, _ = _run(trainer)
    self.assertIsNone(result.interrupted_by)
    self.assertEqual((result.step, saver.saved), (10, [10]))
    self.assertEqual(trainer.evaluated, [(10, "holdout")])
    self.assertEqual(recorder.ends, [10])


if __name__ == "__main__":
  tf.test.main()
