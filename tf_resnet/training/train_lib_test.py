"""train_lib.train in process: resuming equals an uninterrupted run; logs, best model, decisions."""

import dataclasses
import glob
import io
import json
import os

import numpy as np
import tensorflow as tf

from tf_resnet.data import pipeline
from tf_resnet.data import stats as stats_lib
from tf_resnet.model import zoo
from tf_resnet.training import config as config_lib
from tf_resnet.training import run_dir
from tf_resnet.training import strategy as strategy_lib
from tf_resnet.training import train_lib

strategy_lib.split_cpu(2)


def _config(model_dir: str, steps: int, **kwargs) -> config_lib.TrainConfig:
  values = dict(
      model=zoo.ModelConfig(family="cifar", depth=8, num_classes=10),
      data=config_lib.DataConfig(dataset="digits", stats_max_images=200),
      input=pipeline.InputConfig(global_batch_size=16, seed=4),
      schedule=config_lib.ScheduleConfig(kind="steps", boundaries=(15,)),
      model_dir=model_dir, train_steps=steps, steps_per_loop=5,
      eval_every_steps=10, eval_examples=64)
  values.update(kwargs)
  return config_lib.TrainConfig(**values)


_HOLDOUT_100 = config_lib.DataConfig(dataset="digits", holdout=100,
                                    stats_max_images=200)


def _train(config: config_lib.TrainConfig, out=None, **kwargs):
  return train_lib.train(config, progress_stream=out or io.StringIO(),
                         **kwargs)


def _records(model_dir: str, kind: str) -> list[dict]:
  with open(os.path.join(model_dir, run_dir.METRICS_FILE)) as f:
    return [r for r in map(json.loads, f) if r["kind"] == kind]


class LoopTest(tf.test.TestCase):

  def test_resumed_run_equals_uninterrupted_run(self):
    straight_dir = os.path.join(self.get_temp_dir(), "straight")
    split_dir = os.path.join(self.get_temp_dir(), "split")
    straight = _train(_config(straight_dir, 20))
    first = _train(_config(split_dir, 10))
    self.assertEqual(first.step, 10)
    out = io.StringIO()
    second = _train(_config(split_dir, 20), out)
    self.assertIn("Resumed from", out.getvalue())
    self.assertIn("at step 10", out.getvalue())
    self.assertEqual(second.step, 20)
    # Same data order, same augmentation, same schedule (the boundary at 15
    # lies after the restart), same optimizer slots: same weights.
    for a, b in zip(straight.model.variables, second.model.variables):
      self.assertAllClose(a, b, atol=1e-5, rtol=1e-5, msg=a.name)
    self.assertEqual([r["step"] for r in _records(split_dir, "train")],
                     [5, 10, 15, 20])
    lrs = [r["learning_rate"] for r in _records(straight_dir, "train")]
    self.assertAllClose(lrs, [0.1, 0.1, 0.1, 0.01])

  def test_logs_progress_evaluations_and_best_checkpoint(self):
    model_dir = os.path.join(self.get_temp_dir(), "logs")
    out = io.StringIO()
    result = _train(_config(model_dir, 20, data=_HOLDOUT_100), out)
    text = out.getvalue()
    for step in (5, 10, 15, 20):
      self.assertIn(f"step {step}/20 loss ", text)
    self.assertIn("img/s ETA", text)
    evals = _records(model_dir, "eval")
    self.assertEqual([r["step"] for r in evals], [10, 20])
    self.assertEqual(evals[-1]["examples"], 64)
    self.assertEqual(_records(model_dir, "test"), [])
    self.assertEqual(result.last_eval.top1_error, evals[-1]["top1_error"])
    best = tf.train.latest_checkpoint(os.path.join(model_dir, run_dir.BEST_DIR))
    best_step = min(evals, key=lambda r: r["top1_error"])["step"]
    self.assertEndsWith(best, f"ckpt-{best_step}")
    self.assertEqual(tf.train.latest_checkpoint(model_dir),
                     os.path.join(model_dir, "ckpt-20"))
    self.assertTrue(os.path.exists(os.path.join(model_dir, "stats.json")))
    losses = [r["loss"] for r in _records(model_dir, "train")]
    self.assertTrue(np.all(np.isfinite(losses)))

  def test_monitor_test_logs_both_splits_and_decides_on_validation(self):
    model_dir = os.path.join(self.get_temp_dir(), "monitor")
    config = _config(model_dir, 10, eval_every_steps=5, eval_examples=None,
                     monitor_test=True, data=_HOLDOUT_100)
    result = train_lib.train(config, progress_stream=io.StringIO())
    evals, tests = _records(model_dir, "eval"), _records(model_dir, "test")
    self.assertEqual([r["step"] for r in evals], [5, 10])
    self.assertEqual([r["step"] for r in tests], [5, 10])
    # The holdout's 100 images; the test split's 360 (digits' 20%).
    self.assertEqual({r["examples"] for r in evals}, {100})
    self.assertEqual({r["examples"] for r in tests}, {360})
    self.assertEqual(result.last_eval.top1_error, evals[-1]["top1_error"])
    self.assertTrue(os.path.isdir(os.path.join(model_dir, "test")))

  def test_statistics_follow_the_weights_a_run_starts_from(self):
    source = os.path.join(self.get_temp_dir(), "source")
    _train(_config(source, 5))
    from_source = stats_lib.Statistics.load(
        os.path.join(source, run_dir.STATS_FILE))
    odd = dataclasses.replace(
        from_source, mean_image=np.full_like(from_source.mean_image, 7.0))

    # Killed before its first checkpoint with its own statistics: the rerun
    # from the source's weights takes the source's.
    fresh = os.path.join(self.get_temp_dir(), "fresh")
    os.makedirs(fresh)
    with open(os.path.join(fresh, run_dir.CONFIG_FILE), "w") as f:
      f.write(_config(fresh, 5).to_json())  # No --init_from.
    odd.save(os.path.join(fresh, run_dir.STATS_FILE))
    out = io.StringIO()
    _train(_config(fresh, 1, init_from=source), out)
    self.assertIn(f"Using the mean image and RGB components of {source}",
                  out.getvalue())
    self.assertAllEqual(stats_lib.Statistics.load(os.path.join(
        fresh, run_dir.STATS_FILE)).mean_image, from_source.mean_image)

    # Once a checkpoint holds weights trained with them, they stay, whatever
    # this command's --init_from (here none).
    odd.save(os.path.join(fresh, run_dir.STATS_FILE))
    _train(_config(fresh, 2))
    self.assertAllEqual(stats_lib.Statistics.load(os.path.join(
        fresh, run_dir.STATS_FILE)).mean_image, odd.mean_image)

  def test_finished_run_is_not_retrained(self):
    model_dir = os.path.join(self.get_temp_dir(), "done")
    _train(_config(model_dir, 5))
    again = _train(_config(model_dir, 5))
    self.assertEqual(again.step, 5)
    self.assertLen(_records(model_dir, "train"), 1)

  def test_without_validation_split_nothing_is_selected_on_test(self):
    # The paper selects on a 45k/5k split; the test set only reports.
    plateau = config_lib.ScheduleConfig(kind="plateau", patience=0,
                                        threshold=0.5)
    lrs = {}
    for holdout in (100, 0):
      model_dir = os.path.join(self.get_temp_dir(), f"holdout_{holdout}")
      out = io.StringIO()
      result = _train(_config(
          model_dir, 15, schedule=plateau, eval_every_steps=5,
          data=config_lib.DataConfig(dataset="digits", holdout=holdout,
                                     stats_max_images=200)), out)
      lrs[holdout] = [r["learning_rate"]
                      for r in _records(model_dir, "train")]
    # With patience 0 and a 50-point threshold, the second validation (step
    # 10) cuts the rate...
    self.assertAllClose(lrs[100], [0.1, 0.1, 0.01])
    # ... and the test split never does.
    self.assertAllClose(lrs[0], [0.1, 0.1, 0.1])
    self.assertIn("No validation split", out.getvalue())
    self.assertIn("plateau schedule keeps its rate", out.getvalue())
    self.assertEqual(_records(model_dir, "eval"), [])
    tests = _records(model_dir, "test")
    self.assertEqual([r["step"] for r in tests], [5, 10, 15])
    self.assertEqual(result.last_eval.top1_error, tests[-1]["top1_error"])
    self.assertFalse(os.path.exists(os.path.join(model_dir,
                                                 run_dir.BEST_DIR)))
    with self.assertRaisesRegex(ValueError, "--export_best selects on the "
                                "validation error and there is no "
                                "validation split: pass --holdout=N"):
      _train(_config(os.path.join(self.get_temp_dir(), "export_best"), 5,
                     export_dir=self.get_temp_dir(), export_best=True))

  def test_resuming_refuses_changed_data_or_schedule_unless_allowed(self):
    model_dir = os.path.join(self.get_temp_dir(), "changes")
    _train(_config(model_dir, 5, data=_HOLDOUT_100))
    for change, name in (
        (dict(data=config_lib.DataConfig(dataset="digits", holdout=200,
                                          stats_max_images=200)),
         "data.holdout: 100 -> 200"),
        (dict(schedule=config_lib.ScheduleConfig(
            kind="steps", boundaries=(15,), warmup_learning_rate=0.01)),
         "schedule.warmup_learning_rate: None -> 0.01"),
        (dict(input=pipeline.InputConfig(global_batch_size=32, seed=4)),
         "input.global_batch_size: 16 -> 32")):
      with self.subTest(name):
        with self.assertRaises(train_lib.TrainingError) as ctx:
          _train(_config(model_dir, 10, **{"data": _HOLDOUT_100, **change}))
        self.assertIn(name, str(ctx.exception))
        self.assertIn("--allow_config_change", str(ctx.exception))
    with open(os.path.join(model_dir, run_dir.CONFIG_FILE)) as f:
      self.assertEqual(json.load(f)["data"]["holdout"], 100)  # Kept.
    # Cadence and length may change; each change is said.
    out = io.StringIO()
    result = _train(_config(model_dir, 10, data=_HOLDOUT_100,
                            eval_every_steps=5), out)
    self.assertEqual(result.step, 10)
    self.assertIn("Resuming with train_steps changed: 5 -> 10", out.getvalue())
    self.assertIn("Resuming with eval_every_steps changed: 10 -> 5",
                  out.getvalue())
    out = io.StringIO()
    allowed = _train(_config(model_dir, 15, data=_HOLDOUT_100,
                             input=pipeline.InputConfig(global_batch_size=32,
                                                        seed=4)),
                     out, allow_config_change=True)
    self.assertEqual(allowed.step, 15)
    self.assertIn("input.global_batch_size changed: 16 -> 32", out.getvalue())

  def test_a_damaged_checkpoint_is_moved_aside_and_the_run_resumes(self):
    model_dir = os.path.join(self.get_temp_dir(), "damaged")
    _train(_config(model_dir, 15, checkpoint_every_steps=5,
                   keep_checkpoints=5))
    newest = os.path.join(model_dir, "ckpt-15")
    (data,) = glob.glob(newest + ".data-*")
    half = os.path.getsize(data) // 2
    with open(data, "r+b") as f:
      f.truncate(half)
    out = io.StringIO()
    result = _train(_config(model_dir, 20, checkpoint_every_steps=5,
                            keep_checkpoints=5), out)
    text = out.getvalue()
    self.assertIn(f"skipped damaged checkpoint(s) {newest}", text)
    self.assertIn(f"Resuming from {model_dir}/ckpt-10", text)
    self.assertIn(f"Resumed from {model_dir}/ckpt-10 at step 10", text)
    self.assertEqual(result.step, 20)
    # Kept, never deleted, and never overwritten by the new ckpt-15.
    (aside,) = glob.glob(os.path.join(model_dir, run_dir.DAMAGED_DIR, "*",
                                      os.path.basename(data)))
    self.assertEqual(os.path.getsize(aside), half)
    self.assertEqual(tf.train.latest_checkpoint(model_dir),
                     os.path.join(model_dir, "ckpt-20"))
    # The new ckpt-15 is whole.
    self.assertIsNone(run_dir.checkpoint_problem(newest))

  def test_no_readable_checkpoint_is_a_clear_error(self):
    model_dir = os.path.join(self.get_temp_dir(), "all_damaged")
    _train(_config(model_dir, 5))
    for data in glob.glob(os.path.join(model_dir, "ckpt-*.data-*")):
      with open(data, "r+b") as f:
        f.truncate(10)
    for _ in range(2):  # A rerun refuses again, never starts afresh.
      with self.assertRaisesRegex(train_lib.TrainingError,
                                  "no checkpoint in .* can be read: .*ckpt-5"):
        _train(_config(model_dir, 10))
    self.assertFalse(os.path.exists(os.path.join(model_dir, "ckpt-10.index")))


class WorkerLostMessageTest(tf.test.TestCase):

  def test_tensorflow_graph_error_becomes_its_own_words_in_one_line(self):
    # The message of the UnavailableError a train_steps call raised when the
    # other worker stopped (as TensorFlow 2.21 formats a graph op's error).
    message = (
        "Graph execution error:\n\n"
        "Detected at node CollectiveReduceV2 defined at (most recent call "
        "last):\n"
        '  File "<frozen runpy>", line 198, in _run_module_as_main\n\n'
        '  File "/src/tf_resnet/train.py", line 342, in <module>\n'
        "    run()\n\n"
        "{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_"
        "device_/job:worker/replica:0/task:0/device:CPU:0}} Collective ops "
        "is aborted by: Error reported from /job:worker/task:1: The "
        "following tasks are unhealthy (stopped sending heartbeats):\n"
        "/job:worker/replica:0/task:1\n"
        "The tasks have crashed.\n"
        "The error could be from a previous operation. Restart your program "
        "to reset.\n"
        "\t [[{{node CollectiveReduceV2}}]] [Op:__inference_train_steps_1]")
    self.assertEqual(
        train_lib._first_words(message),  # pylint: disable=protected-access
        "Collective ops is aborted by: Error reported from /job:worker/"
        "task:1: The following tasks are unhealthy (stopped sending "
        "heartbeats): /job:worker/replica:0/task:1 The tasks have crashed.")


if __name__ == "__main__":
  tf.test.main()
