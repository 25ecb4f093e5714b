"""Tests of reading run logs back: curves, completeness, timing, bad logs."""

import json
import os
import tempfile

from absl.testing import absltest

from tf_resnet.reporting import logs
from tf_resnet.reporting import testing


class ReadRunTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.root = tempfile.mkdtemp()

  def test_curves_and_final_numbers_are_the_logged_ones(self):
    d = testing.write_run(
        os.path.join(self.root, "r"), architecture="plain", depth=56,
        train=[(50, 0.8, 100.0, 1005.0), (100, 0.6, 50.0, 1015.0),
               (150, 0.5, 100.0, 1030.0)],
        evals=[(100, 0.55, 1020.0)], tests=[(100, 0.57, 1025.0)])
    run = logs.read_run(d)
    self.assertEqual(run.name, "plain-56")
    self.assertEqual(run.train_error.steps, (50, 100, 150))
    self.assertEqual(run.train_error.values, (0.8, 0.6, 0.5))
    self.assertEqual(run.validation_error.steps, (100,))
    self.assertEqual(run.validation_error.last, 0.55)
    self.assertEqual(run.test_error.last, 0.57)
    self.assertEqual((run.steps_done, run.planned_steps), (150, 300))
    self.assertFalse(run.finished)
    self.assertFalse(run.resumed)
    # 50 steps of batch 10 at 100, 50 and 100 images/s: 5 + 10 + 5 s.
    self.assertAlmostEqual(run.train_seconds, 20.0)
    # Started 5 s (50 steps at 100 img/s) before the first line at 1005.
    self.assertAlmostEqual(run.elapsed_seconds, 1030.0 - 1000.0)

  def test_a_finished_run(self):
    d = testing.write_run(os.path.join(self.root, "r"), train_steps=100,
                          train=[(50, 0.5, 10.0, 1.0), (100, 0.4, 10.0, 2.0)])
    self.assertTrue(logs.read_run(d).finished)

  def test_a_resumed_run_keeps_the_later_lines_and_says_so(self):
    # Killed after step 150 with a checkpoint at 100: 150 is logged again.
    d = testing.write_run(
        os.path.join(self.root, "r"),
        train=[(50, 0.8, 100.0, 5.0), (100, 0.7, 100.0, 10.0),
               (150, 0.6, 100.0, 15.0), (150, 0.65, 100.0, 100.0),
               (200, 0.5, 100.0, 105.0)])
    run = logs.read_run(d)
    self.assertTrue(run.resumed)
    self.assertEqual(run.train_error.steps, (50, 100, 150, 200))
    self.assertEqual(run.train_error.values, (0.8, 0.7, 0.65, 0.5))
    self.assertAlmostEqual(run.train_seconds, 25.0)  # Five 50-step lines.

  def test_time_stopped_between_processes_is_not_elapsed(self):
    # The first process logged 50..150 and was killed; the checkpoint was at
    # 100; the second began there over an hour later.
    d = testing.write_run(
        os.path.join(self.root, "r"), starts=[(0, 1000.0), (100, 5000.0)],
        train=[(50, 0.8, 100.0, 1005.0), (100, 0.7, 100.0, 1010.0),
               (150, 0.6, 100.0, 1015.0), (150, 0.65, 100.0, 5005.0),
               (200, 0.5, 100.0, 5010.0)],
        evals=[(100, 0.55, 1012.0)])
    run = logs.read_run(d)
    self.assertTrue(run.resumed)
    self.assertEqual(run.train_error.values, (0.8, 0.7, 0.65, 0.5))
    # 15 s then 10 s, each from its process's start to its last line.
    self.assertAlmostEqual(run.elapsed_seconds, 25.0)
    # Steps 0-150 then 100-200, 50 steps of batch 10 at 100 images/s a line.
    self.assertAlmostEqual(run.train_seconds, 25.0)

  def test_a_process_that_logged_nothing_adds_no_time(self):
    d = testing.write_run(
        os.path.join(self.root, "r"), starts=[(0, 10.0), (0, 500.0)],
        train=[(50, 0.8, 100.0, 505.0)])
    run = logs.read_run(d)
    self.assertAlmostEqual(run.elapsed_seconds, 5.0)
    self.assertTrue(run.resumed)

  def test_a_log_begun_without_start_lines_and_resumed_with_them(self):
    # An older process (no start line; its start estimated from its first
    # line's speed: 5 s before it) then a newer one from step 100.
    d = testing.write_run(
        os.path.join(self.root, "r"), starts=[(100, 100.0)],
        train=[(50, 0.8, 100.0, 5.0), (100, 0.7, 100.0, 10.0),
               (150, 0.6, 100.0, 15.0), (150, 0.65, 100.0, 105.0),
               (200, 0.5, 100.0, 110.0)])
    run = logs.read_run(d)
    self.assertTrue(run.resumed)
    self.assertAlmostEqual(run.elapsed_seconds, 15.0 + 10.0)
    self.assertAlmostEqual(run.train_seconds, 25.0)

  def test_without_a_holdout_the_validation_split_was_the_test_split(self):
    d = testing.write_run(os.path.join(self.root, "r"), holdout=0,
                          train=[(50, 0.5, 10.0, 1.0)],
                          evals=[(50, 0.45, 2.0)])
    run = logs.read_run(d)
    self.assertEqual(run.test_error, run.validation_error)

  def test_a_partial_last_line_is_ignored(self):
    d = testing.write_run(os.path.join(self.root, "r"),
                          train=[(50, 0.5, 10.0, 1.0)],
                          tail='{"kind": "train", "step": 1')
    self.assertEqual(logs.read_run(d).steps_done, 50)

  def test_an_evaluators_lines_are_curves_but_not_time(self):
    # A trainer in mode `train` (no evaluations of its own) and an evaluator
    # that wrote its own file, the last line cut short by a kill.
    d = testing.write_run(
        os.path.join(self.root, "r"), starts=[(0, 1000.0)],
        train=[(50, 0.8, 100.0, 1005.0), (100, 0.7, 100.0, 1010.0)])
    with open(os.path.join(d, "evaluator_metrics.jsonl"), "w") as f:
      for step, error, time in ((50, 0.75, 1200.0), (100, 0.6, 1300.0)):
        for kind, value in (("eval", error), ("test", error + 0.01)):
          f.write(json.dumps({"kind": kind, "step": step, "time": time,
                              "top1_error": value, "top5_error": 0.1,
                              "examples": 50.0}) + "\n")
        f.write(json.dumps({"kind": "evaluated", "step": step, "time": time,
                            "checkpoint": f"{d}/ckpt-{step}"}) + "\n")
      f.write('{"kind": "eval", "st')
    run = logs.read_run(d)
    self.assertEqual(run.validation_error.steps, (50, 100))
    self.assertEqual(run.validation_error.values, (0.75, 0.6))
    self.assertEqual(run.test_error.values, (0.76, 0.61))
    self.assertAlmostEqual(run.elapsed_seconds, 10.0)

  def test_bad_logs_are_named(self):
    with self.assertRaisesRegex(logs.RunLogError, "config.json does not exist"):
      logs.read_run(self.root)
    d = testing.write_run(os.path.join(self.root, "r"),
                          train=[(50, 0.5, 10.0, 1.0)])
    with open(os.path.join(d, "metrics.jsonl"), "a") as f:
      f.write("not json\n")
    with self.assertRaisesRegex(logs.RunLogError, r"metrics.jsonl:2 is not"):
      logs.read_run(d)
    d = testing.write_run(os.path.join(self.root, "empty"))
    with self.assertRaisesRegex(logs.RunLogError, "no training record"):
      logs.read_run(d)
    with open(os.path.join(d, "config.json"), "w") as f:
      f.write("{}")
    with self.assertRaisesRegex(logs.RunLogError, "not a tf_resnet.train"):
      logs.read_run(d)


if __name__ == "__main__":
  absltest.main()
