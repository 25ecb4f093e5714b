"""Tests of the learning-rate schedules against hand-computed sequences."""

import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_resnet.training import schedules
from tf_resnet.training import strategy

# Two logical CPUs for the MirroredStrategy test, before any op (pytest's
# conftest.py has already made the same split; under Bazel this file is its
# own process).
_DEVICES = strategy.split_cpu(2)


def _cifar() -> schedules.PiecewiseConstant:
  return schedules.PiecewiseConstant(0.1, (32000, 48000))


class PiecewiseConstantTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      (0, 0.1),
      (31999, 0.1),
      (32000, 0.01),
      (47999, 0.01),
      (48000, 0.001),
      (64000, 0.001),
  )
  def test_cifar_boundaries(self, step, expected):
    schedule = _cifar()
    for step_value in (step, tf.constant(step, tf.int64),
                       tf.constant(step, tf.int32)):
      learning_rate = schedule(step_value)
      self.assertEqual(learning_rate.dtype, tf.float32)
      self.assertAllClose(learning_rate, expected, rtol=1e-7)

  def test_inside_function_without_retracing(self):
    schedule = _cifar()
    function = tf.function(schedule.__call__)
    step = tf.Variable(0, dtype=tf.int64)
    rates = []
    for value in (0, 31999, 32000, 48000):
      step.assign(value)
      rates.append(function(step).numpy())
    self.assertAllClose(rates, [0.1, 0.1, 0.01, 0.001], rtol=1e-7)
    self.assertEqual(function.experimental_get_tracing_count(), 1)

  def test_no_boundaries_is_constant(self):
    schedule = schedules.PiecewiseConstant(0.05, ())
    self.assertAllClose(schedule(10**9), 0.05)

  def test_factor(self):
    schedule = schedules.PiecewiseConstant(1.0, (10, 20), factor=0.5)
    self.assertAllClose([schedule(s) for s in (9, 10, 19, 20)],
                        [1.0, 0.5, 0.5, 0.25])

  def test_bad_arguments(self):
    with self.assertRaisesRegex(
        ValueError, r"`boundaries` must be strictly increasing, not "
        r"\(48000, 32000\)"):
      schedules.PiecewiseConstant(0.1, (48000, 32000))
    with self.assertRaisesRegex(ValueError,
                                "`boundaries` must be strictly increasing"):
      schedules.PiecewiseConstant(0.1, (100, 100))
    with self.assertRaisesRegex(
        ValueError, "`boundaries` must be non-negative integers"):
      schedules.PiecewiseConstant(0.1, (-1, 100))
    with self.assertRaisesRegex(
        ValueError, "`boundaries` must be non-negative integers"):
      schedules.PiecewiseConstant(0.1, (1.5,))
    with self.assertRaisesRegex(ValueError,
                                r"`factor` must be in \(0, 1\), not 1.0"):
      schedules.PiecewiseConstant(0.1, (10,), factor=1.0)
    with self.assertRaisesRegex(ValueError,
                                r"`factor` must be in \(0, 1\), not 0.0"):
      schedules.PiecewiseConstant(0.1, (10,), factor=0.0)
    with self.assertRaisesRegex(
        ValueError, "`base_lr` must be a positive number, not 0.0"):
      schedules.PiecewiseConstant(0.0, (10,))


class WarmupTest(tf.test.TestCase):

  def test_ends_on_the_first_error_below_the_threshold(self):
    warmup = schedules.Warmup(_cifar())
    self.assertTrue(warmup.warming_up.numpy())
    self.assertAllClose(warmup(0), 0.01)
    self.assertFalse(warmup.observe_train_error(0.9))
    self.assertAllClose(warmup(100), 0.01)
    # "Below 80%" is strict.
    self.assertFalse(warmup.observe_train_error(0.8))
    self.assertAllClose(warmup(200), 0.01)
    self.assertTrue(warmup.observe_train_error(tf.constant(0.79)))
    self.assertFalse(warmup.warming_up.numpy())
    self.assertAllClose(warmup(400), 0.1)
    # It never restarts, and then follows the wrapped schedule.
    self.assertFalse(warmup.observe_train_error(0.95))
    self.assertAllClose(warmup(401), 0.1)
    self.assertAllClose(warmup(32000), 0.01)

  def test_max_warmup_steps_ends_it_regardless(self):
    warmup = schedules.Warmup(_cifar(), max_warmup_steps=500)
    self.assertFalse(warmup.observe_train_error(0.9))
    self.assertAllClose(warmup(499), 0.01)
    self.assertAllClose(warmup(500), 0.1)
    self.assertAllClose(warmup(tf.constant(10000, tf.int64)), 0.1)

  def test_disabled_follows_the_schedule(self):
    warmup = schedules.Warmup(_cifar(), enabled=False)
    self.assertFalse(warmup.warming_up.numpy())
    self.assertAllClose(warmup(0), 0.1)
    self.assertFalse(warmup.observe_train_error(0.1))

  def test_function_reads_the_state_at_each_call(self):
    warmup = schedules.Warmup(_cifar(), warmup_lr=0.02,
                              until_train_error_below=0.5)
    function = tf.function(warmup.__call__)
    step = tf.constant(10, tf.int64)
    self.assertAllClose(function(step), 0.02)
    warmup.observe_train_error(0.4)
    self.assertAllClose(function(step), 0.1)
    self.assertEqual(function.experimental_get_tracing_count(), 1)

  def test_observe_is_host_side(self):
    warmup = schedules.Warmup(_cifar())
    with self.assertRaisesRegex(
        RuntimeError, "`observe_train_error` runs eagerly on the host"):
      tf.function(warmup.observe_train_error)(tf.constant(0.5))

  def test_checkpoint_round_trip(self):
    warmup = schedules.Warmup(_cifar())
    warmup.observe_train_error(0.7)
    path = tf.train.Checkpoint(schedule=warmup).save(
        os.path.join(self.get_temp_dir(), "ckpt"))
    restored = schedules.Warmup(_cifar())
    self.assertAllClose(restored(0), 0.01)
    tf.train.Checkpoint(schedule=restored).restore(path).assert_consumed()
    self.assertFalse(restored.warming_up.numpy())
    self.assertAllClose(restored(0), 0.1)
    # Ended for good: a high error does not restart it.
    self.assertFalse(restored.observe_train_error(0.9))
    self.assertAllClose(restored(0), 0.1)

  def test_bad_arguments(self):
    with self.assertRaisesRegex(
        ValueError, r"`until_train_error_below` must be in \(0, 1\], not 80"):
      schedules.Warmup(_cifar(), until_train_error_below=80)
    with self.assertRaisesRegex(
        ValueError, "`warmup_lr` must be a positive number, not -0.01"):
      schedules.Warmup(_cifar(), warmup_lr=-0.01)
    with self.assertRaisesRegex(
        ValueError,
        "`max_warmup_steps` must be a positive integer or None, not 0"):
      schedules.Warmup(_cifar(), max_warmup_steps=0)


# Patience 2, threshold 0.001, from 0.1: each validation error and the
# learning rate after it is observed. An improvement is an error below the
# best by more than 0.001.
_PLATEAU = (
    (0.50, 0.1),  # Improvement (the first error always is).
    (0.40, 0.1),  # Improvement.
    (0.3995, 0.1),  # Within the threshold of 0.40: 1 without.
    (0.3992, 0.1),  # 2 without.
    (0.3991, 0.01),  # 3 without: reduced; the count restarts.
    (0.35, 0.01),  # Improvement.
    (0.3495, 0.01),  # 1 without; 0.35 stays the best.
    (0.3488, 0.01),  # Below 0.35 - 0.001: improvement.
    (0.36, 0.01),  # 1 without.
    (0.37, 0.01),  # 2 without.
    (0.38, 0.001),  # 3 without: reduced.
    (0.20, 0.001),  # Improvement.
)
_REDUCED_AT = (4, 10)


def _plateau(**kwargs) -> schedules.ReduceOnPlateau:
  return schedules.ReduceOnPlateau(0.1, patience=2, threshold=0.001, **kwargs)


class ReduceOnPlateauTest(tf.test.TestCase):

  def test_hand_computed_sequence(self):
    schedule = _plateau()
    self.assertAllClose(schedule(0), 0.1)
    reduced, rates = [], []
    for i, (error, _) in enumerate(_PLATEAU):
      if schedule.observe_validation_error(error):
        reduced.append(i)
      rates.append(schedule(i).numpy())
    self.assertEqual(tuple(reduced), _REDUCED_AT)
    self.assertAllClose(rates, [rate for _, rate in _PLATEAU], rtol=1e-7)
    self.assertEqual(schedule.num_reductions.numpy(), 2)
    self.assertAllClose(schedule.best_error, 0.20)

  def test_min_lr_and_zero_patience(self):
    schedule = schedules.ReduceOnPlateau(0.1, patience=0, threshold=0.0,
                                         min_lr=0.005)
    results = [(schedule.observe_validation_error(0.5), schedule(0).numpy())
               for _ in range(4)]
    self.assertEqual([r for r, _ in results], [False, True, True, False])
    self.assertAllClose([lr for _, lr in results], [0.1, 0.01, 0.005, 0.005])

  def test_function_reads_the_state_at_each_call(self):
    schedule = schedules.ReduceOnPlateau(0.1, patience=0, threshold=0.0)
    function = tf.function(schedule.__call__)
    step = tf.constant(0, tf.int64)
    self.assertAllClose(function(step), 0.1)
    schedule.observe_validation_error(0.5)
    schedule.observe_validation_error(0.5)
    self.assertAllClose(function(step), 0.01)
    self.assertEqual(function.experimental_get_tracing_count(), 1)

  def test_checkpoint_round_trip_continues_identically(self):
    # Saved after 7 evaluations: rate 0.01, best 0.35, 1 without improvement.
    saved_after = 7
    schedule = _plateau()
    for error, _ in _PLATEAU[:saved_after]:
      schedule.observe_validation_error(error)
    path = tf.train.Checkpoint(schedule=schedule).save(
        os.path.join(self.get_temp_dir(), "ckpt"))

    restored = _plateau()
    tf.train.Checkpoint(schedule=restored).restore(path).assert_consumed()
    self.assertAllClose(restored(0), 0.01)
    self.assertAllClose(restored.best_error, 0.35)
    self.assertEqual(restored.evaluations_since_improvement.numpy(), 1)
    self.assertEqual(restored.num_reductions.numpy(), 1)
    for i, (error, rate) in enumerate(_PLATEAU[saved_after:], saved_after):
      self.assertEqual(restored.observe_validation_error(error),
                       i in _REDUCED_AT)
      self.assertAllClose(restored(i), rate, rtol=1e-7)

  def test_warmup_over_plateau_checkpoints_both(self):
    warmup = schedules.Warmup(_plateau())
    warmup.observe_train_error(0.5)
    for error, _ in _PLATEAU[:5]:
      warmup.schedule.observe_validation_error(error)
    path = tf.train.Checkpoint(schedule=warmup).save(
        os.path.join(self.get_temp_dir(), "ckpt"))
    restored = schedules.Warmup(_plateau())
    tf.train.Checkpoint(schedule=restored).restore(path).assert_consumed()
    self.assertAllClose(restored(0), 0.01)  # The plateau's, not the warm-up's.
    self.assertEqual(restored.schedule.num_reductions.numpy(), 1)

  def test_observe_is_host_side(self):
    schedule = _plateau()
    with self.assertRaisesRegex(
        RuntimeError, "`observe_validation_error` runs eagerly on the host"):
      tf.function(schedule.observe_validation_error)(tf.constant(0.5))

  def test_bad_arguments(self):
    with self.assertRaisesRegex(
        ValueError, "`patience` must be a non-negative integer, not -1"):
      schedules.ReduceOnPlateau(0.1, patience=-1, threshold=0.001)
    with self.assertRaisesRegex(
        ValueError, "`patience` must be a non-negative integer, not 2.5"):
      schedules.ReduceOnPlateau(0.1, patience=2.5, threshold=0.001)
    with self.assertRaisesRegex(ValueError,
                                r"`factor` must be in \(0, 1\), not 10"):
      schedules.ReduceOnPlateau(0.1, factor=10, patience=2, threshold=0.001)
    with self.assertRaisesRegex(ValueError,
                                "`threshold` must be >= 0, not -0.001"):
      schedules.ReduceOnPlateau(0.1, patience=2, threshold=-0.001)
    with self.assertRaisesRegex(
        ValueError, r"`min_lr` must be in \[0, `base_lr`\] = \[0, 0.1\], "
        "not 0.2"):
      schedules.ReduceOnPlateau(0.1, patience=2, threshold=0.0, min_lr=0.2)
    with self.assertRaisesRegex(
        ValueError, "`base_lr` must be a positive number, not nan"):
      schedules.ReduceOnPlateau(np.nan, patience=2, threshold=0.0)


class DistributedTest(tf.test.TestCase):

  def test_mirrored_replicas_read_the_host_updates(self):
    # No collective ops here, so a MirroredStrategy of its own is safe.
    mirrored = strategy.mirrored(tuple(_DEVICES))
    with mirrored.scope():
      warmup = schedules.Warmup(_plateau())

    @tf.function
    def rates(step):
      return mirrored.experimental_local_results(
          mirrored.run(warmup, args=(step,)))

    step = tf.constant(0, tf.int64)
    self.assertAllClose(rates(step), [0.01, 0.01])
    warmup.observe_train_error(0.5)
    self.assertAllClose(rates(step), [0.1, 0.1])
    for error, _ in _PLATEAU[:5]:
      warmup.schedule.observe_validation_error(error)
    self.assertAllClose(rates(step), [0.01, 0.01])
    self.assertAllEqual(
        [v.numpy() for v in warmup.schedule.learning_rate.values],
        np.float32([0.01, 0.01]))


if __name__ == "__main__":
  tf.test.main()
