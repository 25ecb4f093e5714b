"""The evaluator in process: modes from TF_CONFIG, its log, catching up, refusals.

(The binaries side by side, killed and restarted: tests/continuous_eval_main_test.py.)
"""

import glob
import io
import json
import os
import shutil
import tempfile
import threading

from absl.testing import parameterized
import tensorflow as tf

from tf_resnet.data import pipeline
from tf_resnet.data import sources
from tf_resnet.model import zoo
from tf_resnet.training import cluster
from tf_resnet.training import config as config_lib
from tf_resnet.training import continuous_eval
from tf_resnet.training import errors
from tf_resnet.training import evaluation
from tf_resnet.training import run_dir
from tf_resnet.training import train_lib

# As Kubeflow's TFJob writes it (tf_resnet/training/cluster_test.py).
_CLUSTER = {"worker": ["r-worker-0.ns.svc:2222", "r-worker-1.ns.svc:2222"],
            "evaluator": ["r-evaluator-0.ns.svc:2222"]}
_NO_EVALUATOR = {"worker": _CLUSTER["worker"]}


def _task(task_type, index=0, spec=None):
  return cluster.parse(json.dumps({
      "cluster": _CLUSTER if spec is None else spec,
      "task": {"type": task_type, "index": index}, "environment": "cloud"}))


def _config(model_dir: str, **kwargs) -> config_lib.TrainConfig:
  values = dict(
      model=zoo.ModelConfig(family="cifar", depth=8, num_classes=10),
      data=config_lib.DataConfig(dataset="digits", holdout=64,
                                 stats_max_images=200),
      input=pipeline.InputConfig(global_batch_size=16, seed=1),
      schedule=config_lib.ScheduleConfig(kind="steps", boundaries=(15,)),
      model_dir=model_dir, train_steps=20, steps_per_loop=5,
      checkpoint_every_steps=5, keep_checkpoints=10, eval_every_steps=5,
      monitor_test=True, mode="train")
  values.update(kwargs)
  return config_lib.TrainConfig(**values)


def _lines(model_dir: str, name: str) -> list[dict]:
  path = os.path.join(model_dir, name)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f]


def _kinds(records, kind):
  return [r for r in records if r["kind"] == kind]


class _Clock:
  """Scripted time: every sleep moves it on."""

  def __init__(self):
    self.now = 0.0

  def time(self):
    return self.now

  def sleep(self, secs):
    self.now += secs


class ModeTest(parameterized.TestCase):

  @parameterized.parameters(
      (None, None, "train_and_eval"),
      ("train", None, "train"),
      ("continuous_eval", None, "continuous_eval"),
      # TF_CONFIG alone decides, as tf.estimator and Model Garden did.
      (None, ("evaluator",), "continuous_eval"),
      ("continuous_eval", ("evaluator",), "continuous_eval"),
      (None, ("worker", 1), "train"),
      ("train", ("worker", 0), "train"),
      (None, ("worker", 0, _NO_EVALUATOR), "train_and_eval"),
      ("train", ("worker", 0, _NO_EVALUATOR), "train"),
  )
  def test_mode(self, flag, task, expected):
    self.assertEqual(continuous_eval.resolve_mode(
        flag, _task(*task) if task else None), expected)

  @parameterized.parameters(
      ("train", ("evaluator",), "task is the cluster's evaluator"),
      ("train_and_eval", ("worker", 1), "has an evaluator task"),
      ("continuous_eval", ("worker", 1), "worker 1: a cluster's evaluator"),
      ("continuous_eval", ("worker", 0, _NO_EVALUATOR),
       "worker 0: a cluster's evaluator"),
  )
  def test_mode_against_tf_config(self, flag, task, message):
    with self.assertRaisesRegex(cluster.ClusterError, message):
      continuous_eval.resolve_mode(flag, _task(*task))


class EvaluateContinuouslyTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # One trained run (mode `train`: no evaluations, checkpoints at 5, 10,
    # 15 and 20), copied by the tests that change it.
    cls.root = tempfile.mkdtemp()
    cls.trained = os.path.join(cls.root, "trained")
    result = train_lib.train(_config(cls.trained),
                             progress_stream=io.StringIO())
    assert result.last_eval is None, result

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def _run(self, name: str) -> str:
    model_dir = os.path.join(self.get_temp_dir(), name)
    shutil.copytree(self.trained, model_dir)
    return model_dir

  def _evaluate(self, model_dir: str, **kwargs):
    out = io.StringIO()
    clock = _Clock()
    kwargs.setdefault("timeout_secs", 30)
    result = continuous_eval.evaluate_continuously(
        model_dir, progress_stream=out, clock=clock.time, sleep=clock.sleep,
        **kwargs)
    return result, out.getvalue()

  def test_the_trainer_in_mode_train_does_not_evaluate(self):
    records = _lines(self.trained, run_dir.METRICS_FILE)
    self.assertEqual([r["step"] for r in _kinds(records, "train")],
                     [5, 10, 15, 20])
    self.assertEqual(_kinds(records, "eval") + _kinds(records, "test"), [])
    self.assertFalse(os.path.exists(os.path.join(self.trained, "best")))
    self.assertEqual([run_dir.checkpoint_number(p)
                      for p in run_dir.checkpoints(self.trained)],
                     [20, 15, 10, 5])

  def test_every_checkpoint_once_then_the_best_and_the_end(self):
    model_dir = self._run("all")
    result, out = self._evaluate(model_dir)
    self.assertEqual(result.evaluated, [5, 10, 15, 20])
    self.assertEqual(result.final_step, 20)
    records = _lines(model_dir, run_dir.EVALUATOR_METRICS_FILE)
    evals = _kinds(records, "eval")
    self.assertEqual([r["step"] for r in evals], [5, 10, 15, 20])
    self.assertEqual([r["step"] for r in _kinds(records, "test")],
                     [5, 10, 15, 20])
    self.assertEqual([r["examples"] for r in evals], [64.0] * 4)
    # The best is the first of the lowest validation errors.
    errors = [r["top1_error"] for r in evals]
    best_step = evals[errors.index(min(errors))]["step"]
    self.assertEqual(result.best_checkpoint,
                     os.path.join(model_dir, "best", f"ckpt-{best_step}"))
    self.assertIn("step 5: holdout top-1 error", out)
    # TensorBoard's curves, beside the trainer's.
    self.assertNotEmpty(glob.glob(os.path.join(model_dir, "eval", "*")))
    # The trainer's log is untouched.
    self.assertEqual(_lines(model_dir, run_dir.METRICS_FILE),
                     _lines(self.trained, run_dir.METRICS_FILE))

  def test_the_errors_are_the_checkpoints_on_the_holdout(self):
    model_dir = self._run("same")
    self._evaluate(model_dir)
    # The checkpoint restored as tf_resnet.evaluate does, scored directly.
    trained = run_dir.load(model_dir)
    model, step, _ = run_dir.restore(trained, os.path.join(model_dir,
                                                           "ckpt-10"))
    source = sources.parse(trained.data.dataset, family=trained.model.family,
                           holdout=trained.data.holdout)
    dataset = pipeline.eval_dataset(source, trained.statistics,
                                    trained.input, split="holdout",
                                    batch_size=7)
    expected = evaluation.Evaluator(model, "center").evaluate(dataset)
    record = [r for r in _lines(model_dir, run_dir.EVALUATOR_METRICS_FILE)
              if r["kind"] == "eval" and r["step"] == step][0]
    self.assertAllClose([record["top1_error"], record["top5_error"]],
                        [expected.top1_error, expected.top5_error])

  def test_a_restart_evaluates_only_what_is_not_recorded(self):
    model_dir = self._run("restart")
    state = os.path.join(model_dir, "checkpoint")
    with open(state) as f:
      full = f.read()
    # As if the trainer were at step 10, with a kill cutting the
    # evaluator's last line short after its first run.
    with open(state, "w") as f:
      f.write('model_checkpoint_path: "ckpt-10"\n'
              'all_model_checkpoint_paths: "ckpt-5"\n'
              'all_model_checkpoint_paths: "ckpt-10"\n')
    with self.assertRaisesRegex(errors.TaskSilent,
                                "no new checkpoint .* after step 10 of 20"):
      self._evaluate(model_dir, timeout_secs=5)
    with open(os.path.join(model_dir, run_dir.EVALUATOR_METRICS_FILE),
              "a") as f:
      f.write('{"kind": "eval", "step": 15, "ti')
    with open(state, "w") as f:
      f.write(full)
    result, out = self._evaluate(model_dir)
    self.assertIn("2 were evaluated before, up to step 10", out)
    self.assertEqual(result.evaluated, [15, 20])
    records = _lines(model_dir, run_dir.EVALUATOR_METRICS_FILE)
    self.assertEqual([r["step"] for r in _kinds(records, "evaluated")],
                     [5, 10, 15, 20])
    # A third run finds the run evaluated to its end.
    result, _ = self._evaluate(model_dir, timeout_secs=0)
    self.assertEqual(result.evaluated, [])

  def test_a_deleted_checkpoint_is_skipped(self):
    model_dir = self._run("deleted")
    for name in glob.glob(os.path.join(model_dir, "ckpt-10.*")):
      os.remove(name)
    result, out = self._evaluate(model_dir)
    self.assertEqual(result.evaluated, [5, 15, 20])
    self.assertEqual([p for p, _ in result.skipped],
                     [os.path.join(model_dir, "ckpt-10")])
    self.assertIn("Skipped", out)

  def test_waits_for_the_run_and_gives_up_naming_it(self):
    empty = os.path.join(self.get_temp_dir(), "empty")
    with self.assertRaisesRegex(errors.TaskSilent,
                                "for 7 s: waited for the run's config.json"):
      self._evaluate(empty, timeout_secs=7)

  def test_the_plateau_decides_on_the_evaluators_errors_as_in_the_loop(self):
    # One run evaluated in its loop; the same in mode `train` beside an
    # evaluator (a thread): the same errors at the same steps, so the same
    # learning rates and losses. Patience 1 and a threshold no error can
    # beat: the rate falls at the third evaluation (step 15).
    plateau = dict(schedule=config_lib.ScheduleConfig(
        kind="plateau", patience=1, threshold=0.5, min_learning_rate=1e-4),
                   monitor_test=False)
    in_loop = os.path.join(self.get_temp_dir(), "plateau_in_loop")
    train_lib.train(_config(in_loop, mode="train_and_eval", **plateau),
                    progress_stream=io.StringIO())
    beside = os.path.join(self.get_temp_dir(), "plateau_beside")
    failures = []

    def evaluator():
      try:
        continuous_eval.evaluate_continuously(
            beside, timeout_secs=120, poll_secs=0.05,
            progress_stream=io.StringIO())
      except Exception as e:  # pylint: disable=broad-except
        failures.append(e)

    thread = threading.Thread(target=evaluator)
    thread.start()
    out = io.StringIO()
    train_lib.train(_config(beside, **plateau), progress_stream=out,
                    evaluator_timeout_secs=120)
    thread.join()
    self.assertEqual(failures, [])
    self.assertIn("learning rate now 0.01", out.getvalue())

    def logged(model_dir, kind, key):
      return [(r["step"], r[key]) for r in _kinds(
          _lines(model_dir, run_dir.METRICS_FILE)
          + _lines(model_dir, run_dir.EVALUATOR_METRICS_FILE), kind)]

    rates = logged(in_loop, "train", "learning_rate")
    self.assertAllClose([r for _, r in rates], [0.1, 0.1, 0.1, 0.01])
    self.assertEqual(logged(beside, "train", "learning_rate"), rates)
    self.assertEqual(logged(beside, "train", "loss"),
                     logged(in_loop, "train", "loss"))
    self.assertEqual(logged(beside, "eval", "top1_error"),
                     logged(in_loop, "eval", "top1_error"))

  def test_a_trainer_without_its_evaluator_says_what_it_waits_for(self):
    model_dir = os.path.join(self.get_temp_dir(), "plateau_alone")
    config = _config(model_dir, schedule=config_lib.ScheduleConfig(
        kind="plateau"))
    with self.assertRaisesRegex(
        errors.TaskSilent,
        "no validation error of the checkpoint at step 5 from an evaluator"):
      train_lib.train(config, progress_stream=io.StringIO(),
                      evaluator_timeout_secs=0)
    # It saved that checkpoint for the evaluator first.
    self.assertEqual(run_dir.checkpoint_number(
        tf.train.latest_checkpoint(model_dir)), 5)

  def test_a_run_that_evaluates_in_its_loop_is_refused(self):
    model_dir = self._run("in_loop")
    config_path = os.path.join(model_dir, run_dir.CONFIG_FILE)
    with open(config_path) as f:
      config = json.load(f)
    config["mode"] = "train_and_eval"
    with open(config_path, "w") as f:
      json.dump(config, f)
    with self.assertRaisesRegex(continuous_eval.EvaluatorError,
                                "evaluates in the training loop"):
      self._evaluate(model_dir)
    self.assertEqual(_lines(model_dir, run_dir.EVALUATOR_METRICS_FILE), [])


if __name__ == "__main__":
  tf.test.main()
