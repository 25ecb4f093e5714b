"""The training loop in process: resumption equals an uninterrupted run, logs, best model."""

import io
import json
import os

import numpy as np
import tensorflow as tf

from tf_resnet.data import pipeline
from tf_resnet.model import zoo
from tf_resnet.training import config as config_lib
from tf_resnet.training import loop
from tf_resnet.training import strategy as strategy_lib

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


def _records(model_dir: str, kind: str) -> list[dict]:
  with open(os.path.join(model_dir, loop.METRICS_FILE)) as f:
    return [r for r in map(json.loads, f) if r["kind"] == kind]


class LoopTest(tf.test.TestCase):

  def test_resumed_run_equals_uninterrupted_run(self):
    straight_dir = os.path.join(self.get_temp_dir(), "straight")
    split_dir = os.path.join(self.get_temp_dir(), "split")
    straight = loop.train(_config(straight_dir, 20), io.StringIO())
    first = loop.train(_config(split_dir, 10), io.StringIO())
    self.assertEqual(first.step, 10)
    out = io.StringIO()
    second = loop.train(_config(split_dir, 20), out)
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
    result = loop.train(_config(model_dir, 20), out)
    text = out.getvalue()
    for step in (5, 10, 15, 20):
      self.assertIn(f"step {step}/20 loss ", text)
    self.assertIn("img/s ETA", text)
    evals = _records(model_dir, "eval")
    self.assertEqual([r["step"] for r in evals], [10, 20])
    self.assertEqual(evals[-1]["examples"], 64)
    self.assertEqual(result.last_eval.top1_error, evals[-1]["top1_error"])
    best = tf.train.latest_checkpoint(os.path.join(model_dir, loop.BEST_DIR))
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
                     monitor_test=True,
                     data=config_lib.DataConfig(dataset="digits", holdout=100,
                                                stats_max_images=200))
    result = loop.train(config, io.StringIO())
    evals, tests = _records(model_dir, "eval"), _records(model_dir, "test")
    self.assertEqual([r["step"] for r in evals], [5, 10])
    self.assertEqual([r["step"] for r in tests], [5, 10])
    # The holdout's 100 images; the test split's 360 (digits' 20%).
    self.assertEqual({r["examples"] for r in evals}, {100})
    self.assertEqual({r["examples"] for r in tests}, {360})
    self.assertEqual(result.last_eval.top1_error, evals[-1]["top1_error"])
    self.assertTrue(os.path.isdir(os.path.join(model_dir, "test")))

  def test_finished_run_is_not_retrained(self):
    model_dir = os.path.join(self.get_temp_dir(), "done")
    loop.train(_config(model_dir, 5), io.StringIO())
    again = loop.train(_config(model_dir, 5), io.StringIO())
    self.assertEqual(again.step, 5)
    self.assertLen(_records(model_dir, "train"), 1)


if __name__ == "__main__":
  tf.test.main()
