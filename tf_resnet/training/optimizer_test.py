"""Tests of SGD with momentum: hand computations, checkpoints, strategies."""

import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_resnet.training import optimizer
from tf_resnet.training import strategy

# Two logical CPUs for the MirroredStrategy tests, before any op (pytest's
# conftest.py has already made the same split; under Bazel this file is its
# own process).
_DEVICES = strategy.split_cpu(2)


def _mirrored() -> tf.distribute.MirroredStrategy:
  return strategy.mirrored(tuple(_DEVICES))


def _apply_steps(opt, gradients_per_step, learning_rates):
  for gradients, learning_rate in zip(gradients_per_step, learning_rates):
    opt.apply([tf.constant(g, tf.float32) for g in gradients], learning_rate)


class HandComputedTest(tf.test.TestCase, parameterized.TestCase):

  def test_learning_rate_scales_the_gradient_before_the_velocity(self):
    # momentum 0.9, no decay, w0 = [1, -2]:
    #   g1 = [1, 2],  lr 0.1:  v1 = [0.1, 0.2],  w1 = [0.9, -2.2]
    #   g2 = [1, 2],  lr 0.01: v2 = 0.9 v1 + 0.01 g2 = [0.1, 0.2],
    #                          w2 = [0.8, -2.4]
    #   g3 = [-1, 0], lr 0.01: v3 = 0.9 v2 + 0.01 g3 = [0.08, 0.18],
    #                          w3 = [0.72, -2.58]
    # PyTorch's form (v <- 0.9 v + g, w <- w - lr v) would give
    # w2 = w1 - 0.01 [1.9, 3.8] = [0.881, -2.238] instead.
    w = tf.Variable([1.0, -2.0])
    opt = optimizer.SGDMomentum([w], momentum=0.9, weight_decay=0.0)
    _apply_steps(opt, [[[1.0, 2.0]]], [0.1])
    self.assertAllClose(opt.velocities[0], [0.1, 0.2])
    self.assertAllClose(w, [0.9, -2.2])
    _apply_steps(opt, [[[1.0, 2.0]]], [0.01])
    self.assertAllClose(opt.velocities[0], [0.1, 0.2])
    self.assertAllClose(w, [0.8, -2.4])
    _apply_steps(opt, [[[-1.0, 0.0]]], [tf.constant(0.01)])
    self.assertAllClose(opt.velocities[0], [0.08, 0.18])
    self.assertAllClose(w, [0.72, -2.58])
    self.assertEqual(opt.iterations.numpy(), 3)

  @parameterized.named_parameters(
      # a = [1, -2] decayed, b = [3, 4] decayed only with the default; momentum
      # 0.5, weight decay 0.5, lr 0.1.
      # Step 1, zero gradients: v_a = 0.1 * 0.5 a = [0.05, -0.1],
      #   a1 = [0.95, -1.9]; b1 = b, or b - 0.05 b = [2.85, 3.8] if decayed.
      # Step 2, gradients [1, 1]: v_a = 0.5 [0.05, -0.1]
      #   + 0.1 ([1, 1] + 0.5 [0.95, -1.9]) = [0.1725, -0.045],
      #   a2 = [0.7775, -1.855]; undecayed b: v_b = [0.1, 0.1], b2 = [2.9, 3.9];
      #   decayed b: v_b = 0.5 [0.15, 0.2] + 0.1 ([1, 1] + 0.5 [2.85, 3.8])
      #   = [0.3175, 0.39], b2 = [2.5325, 3.41].
      ("only_a", "a", [2.9, 3.9]),
      ("all_by_default", None, [2.5325, 3.41]),
  )
  def test_weight_decay_only_on_decay_variables(self, decay, expected_b):
    a = tf.Variable([1.0, -2.0], name="a")
    b = tf.Variable([3.0, 4.0], name="b")
    opt = optimizer.SGDMomentum(
        [a, b], momentum=0.5, weight_decay=0.5,
        decay_variables=None if decay is None else [a])
    _apply_steps(opt, [[[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]],
                 [0.1, 0.1])
    self.assertAllClose(a, [0.7775, -1.855])
    self.assertAllClose(b, expected_b)

  def test_learning_rate_multipliers_scale_each_variables_rate(self):
    # Caffe's lr_mult. momentum 0.5, decay 0.5 on both, lr 0.1, a x1, b x10:
    #   a: g = 1 + 0.5 * 2 = 2; v = 0.1 * 2 = 0.2;    a = 2 - 0.2 = 1.8
    #   b: g = 1 + 0.5 * 2 = 2; v = 1.0 * 2 = 2.0;    b = 2 - 2.0 = 0.0
    #   step 2, a: g = 1 + 0.9 = 1.9; v = 0.5 * 0.2 + 0.1 * 1.9 = 0.29
    #   step 2, b: g = 1 + 0.0 = 1.0; v = 0.5 * 2.0 + 1.0 * 1.0 = 2.0
    a = tf.Variable([2.0], name="a")
    b = tf.Variable([2.0], name="b")
    opt = optimizer.SGDMomentum([a, b], momentum=0.5, weight_decay=0.5,
                                learning_rate_multipliers=[1.0, 10.0])
    _apply_steps(opt, [[[1.0], [1.0]]] * 2, [0.1, 0.1])
    self.assertAllClose(a, [1.8 - 0.29])
    self.assertAllClose(b, [0.0 - 2.0])

  def test_zero_momentum_is_plain_sgd(self):
    w = tf.Variable([1.0, 1.0])
    opt = optimizer.SGDMomentum([w], momentum=0.0, weight_decay=0.0)
    _apply_steps(opt, [[[1.0, -1.0]], [[1.0, -1.0]]], [0.5, 0.25])
    self.assertAllClose(w, [0.25, 1.75])


class SkipTest(tf.test.TestCase):

  def test_should_apply_false_leaves_everything_unchanged(self):
    w = tf.Variable([1.0, -2.0])
    opt = optimizer.SGDMomentum([w], momentum=0.9, weight_decay=0.1)
    opt.apply([tf.constant([1.0, 1.0])], 0.5)  # v = 0.5 * (g + 0.1 w)
    v = opt.velocities[0].numpy()
    self.assertAllClose(v, [0.55, 0.4])
    opt.apply([tf.constant([float("inf"), 1.0])], 0.5,
              should_apply=tf.constant(False))
    self.assertAllClose(opt.velocities[0], v)
    self.assertAllClose(w, [0.45, -2.4])
    self.assertEqual(int(opt.iterations), 1)
    opt.apply([tf.constant([0.0, 0.0])], 0.5, should_apply=tf.constant(True))
    # v = 0.9 v + 0.5 * 0.1 w
    expected_v = 0.9 * v + 0.05 * np.array([0.45, -2.4])
    self.assertAllClose(opt.velocities[0], expected_v)
    self.assertAllClose(w, np.array([0.45, -2.4]) - expected_v)
    self.assertEqual(int(opt.iterations), 2)


class SlotsTest(tf.test.TestCase):

  def test_slots_are_named_after_variables_and_not_trainable(self):
    with tf.name_scope("linear"):
      kernel = tf.Variable(tf.ones([3, 2]), name="kernel")
      bias = tf.Variable(tf.zeros([2], tf.float64), name="bias")
    opt = optimizer.SGDMomentum([kernel, bias], name="sgd")
    self.assertEqual([v.name for v in opt.velocities],
                     ["sgd/velocity/linear/kernel:0",
                      "sgd/velocity/linear/bias:0"])
    self.assertEqual(opt.iterations.name, "sgd/iterations:0")
    self.assertEqual(opt.velocities[1].dtype, tf.float64)
    self.assertAllEqual(opt.velocities[0], np.zeros([3, 2]))
    self.assertEmpty(opt.trainable_variables)
    # The optimizer owns its slots and counter, not the model's variables.
    self.assertLen(opt.variables, 3)
    self.assertNotIn(kernel.ref(), {v.ref() for v in opt.variables})


class FunctionAndCheckpointTest(tf.test.TestCase):

  def _problem(self):
    w = tf.Variable([[0.5, -1.0], [2.0, 0.25]], name="w")
    b = tf.Variable([0.1, -0.1], name="b")
    opt = optimizer.SGDMomentum([w, b], decay_variables=[w],
                                weight_decay=0.01)
    return w, b, opt

  def _gradients(self, step):
    rng = np.random.default_rng(step)
    return [tf.constant(rng.normal(size=[2, 2]), tf.float32),
            tf.constant(rng.normal(size=[2]), tf.float32)]

  def test_eager_equals_function_without_retracing(self):
    learning_rates = [0.1, 0.1, 0.01]
    w, b, opt = self._problem()
    for i, learning_rate in enumerate(learning_rates):
      opt.apply(self._gradients(i), learning_rate)
    eager = [w.numpy(), b.numpy()]

    w, b, opt = self._problem()
    apply = tf.function(opt.apply)
    for i, learning_rate in enumerate(learning_rates):
      apply(self._gradients(i), tf.constant(learning_rate))
    self.assertAllClose([w.numpy(), b.numpy()], eager, atol=1e-7)
    self.assertEqual(apply.experimental_get_tracing_count(), 1)
    self.assertEqual(opt.iterations.numpy(), 3)

  def test_checkpoint_round_trip_continues_identically(self):
    learning_rates = [0.1, 0.1, 0.01, 0.01]
    w, b, opt = self._problem()
    for i in range(2):
      opt.apply(self._gradients(i), learning_rates[i])
    path = tf.train.Checkpoint(w=w, b=b, optimizer=opt).save(
        os.path.join(self.get_temp_dir(), "ckpt"))
    for i in range(2, 4):
      opt.apply(self._gradients(i), learning_rates[i])
    uninterrupted = [w.numpy(), b.numpy()]

    w, b, opt = self._problem()
    tf.train.Checkpoint(w=w, b=b, optimizer=opt).restore(
        path).assert_consumed()
    self.assertEqual(opt.iterations.numpy(), 2)
    self.assertNotAllClose(opt.velocities[0], np.zeros([2, 2]))
    for i in range(2, 4):
      opt.apply(self._gradients(i), learning_rates[i])
    self.assertAllEqual(w, uninterrupted[0])
    self.assertAllEqual(b, uninterrupted[1])


# A linear model y = x W trained on a global batch of 4 with the mean squared
# error, the loss of each replica scaled by the global batch.
_X = np.array([[1.0, 2.0, 0.0], [0.5, -1.0, 1.0], [-2.0, 0.0, 1.5],
               [0.0, 1.0, -1.0]], np.float32)
_Y = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 2.0], [0.5, 0.5]], np.float32)
_W0 = np.array([[0.1, -0.2], [0.3, 0.0], [-0.1, 0.2]], np.float32)
_GLOBAL_BATCH = 4
_LEARNING_RATES = (0.1, 0.1, 0.01)
_MOMENTUM = 0.9
_WEIGHT_DECAY = 0.01


def _numpy_reference() -> np.ndarray:
  """Three steps on the full batch, in float64 numpy."""
  w = _W0.astype(np.float64)
  v = np.zeros_like(w)
  for learning_rate in _LEARNING_RATES:
    # d/dW of sum_i mean_j (x_i W - y_i)_j^2 / 4.
    gradient = _X.T @ (2.0 * (_X @ w - _Y) / _Y.shape[1]) / _GLOBAL_BATCH
    v = _MOMENTUM * v + learning_rate * (gradient + _WEIGHT_DECAY * w)
    w = w - v
  return w


def _train(distribution: tf.distribute.Strategy):
  """Three steps of the linear model under `distribution`."""
  with distribution.scope():
    w = tf.Variable(_W0, name="linear/kernel")
    opt = optimizer.SGDMomentum([w], momentum=_MOMENTUM,
                                weight_decay=_WEIGHT_DECAY)
  per_replica = _GLOBAL_BATCH // distribution.num_replicas_in_sync

  def batch(context):
    start = context.replica_id_in_sync_group * per_replica
    return (tf.constant(_X[start:start + per_replica]),
            tf.constant(_Y[start:start + per_replica]))

  def step_fn(inputs, learning_rate):
    x, y = inputs
    with tf.GradientTape() as tape:
      per_example = tf.reduce_mean(tf.square(tf.matmul(x, w) - y), axis=1)
      loss = tf.reduce_sum(per_example) / _GLOBAL_BATCH
    gradients = tape.gradient(loss, [w])
    gradients = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, gradients)
    opt.apply(gradients, learning_rate)

  @tf.function
  def train_step(inputs, learning_rate):
    distribution.run(step_fn, args=(inputs, learning_rate))

  inputs = distribution.experimental_distribute_values_from_function(batch)
  for learning_rate in _LEARNING_RATES:
    train_step(inputs, tf.constant(learning_rate))
  return w, opt


class DistributedTest(tf.test.TestCase, parameterized.TestCase):

  def test_default_strategy_matches_numpy(self):
    w, opt = _train(tf.distribute.get_strategy())
    self.assertAllClose(w, _numpy_reference(), atol=1e-6)
    self.assertEqual(opt.iterations.numpy(), 3)

  def test_mirrored_matches_one_device(self):
    expected, _ = _train(tf.distribute.get_strategy())
    w, opt = _train(_mirrored())
    self.assertLen(w.values, 2)
    for copy in w.values:
      self.assertAllClose(copy, expected, atol=1e-6)
    velocity = opt.velocities[0]
    self.assertLen(velocity.values, 2)
    self.assertAllEqual(velocity.values[0], velocity.values[1])
    # One update per step, not one per replica.
    self.assertEqual(opt.iterations.numpy(), 3)

  def test_eager_replica_context_updates_every_copy_once(self):
    # Eagerly, with the same gradient on both replicas and so no all-reduce
    # (an eager collective could clash with other tests' traced ones).
    mirrored = _mirrored()
    with mirrored.scope():
      w = tf.Variable([1.0, -2.0])
      opt = optimizer.SGDMomentum([w], weight_decay=0.0)
    for learning_rate in (0.1, 0.01):
      mirrored.run(lambda lr: opt.apply([tf.constant([1.0, 2.0])], lr),
                   args=(learning_rate,))
    for copy in w.values:
      self.assertAllClose(copy, [0.8, -2.4])
    self.assertEqual(opt.iterations.numpy(), 2)

  def test_cross_replica_apply_updates_every_copy(self):
    mirrored = _mirrored()
    with mirrored.scope():
      w = tf.Variable([1.0, -2.0])
      opt = optimizer.SGDMomentum([w], weight_decay=0.0)
      opt.apply([tf.constant([1.0, 2.0])], 0.1)
    for copy in w.values:
      self.assertAllClose(copy, [0.9, -2.2])

  def test_optimizer_must_be_built_in_the_variables_strategy_scope(self):
    with _mirrored().scope():
      w = tf.Variable([1.0, -2.0], name="w")
    with self.assertRaisesRegex(
        ValueError, r"`variables` must be created under the scope of the "
        r"strategy the optimizer is built in \(_DefaultDistributionStrategy\), "
        r"but w:0 was not"):
      optimizer.SGDMomentum([w])

  def test_apply_under_another_strategy(self):
    w = tf.Variable([1.0, -2.0])
    opt = optimizer.SGDMomentum([w])
    with self.assertRaisesRegex(
        RuntimeError, "`apply` was called under MirroredStrategy, but the "
        "optimizer was built under _DefaultDistributionStrategy"):
      with _mirrored().scope():
        opt.apply([tf.constant([1.0, 2.0])], 0.1)


class BadArgumentsTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.w = tf.Variable([1.0, 2.0], name="w")
    self.b = tf.Variable([0.0], name="b")

  def test_constructor(self):
    with self.assertRaisesRegex(ValueError,
                                r"`momentum` must be in \[0, 1\), not 1.5"):
      optimizer.SGDMomentum([self.w], momentum=1.5)
    with self.assertRaisesRegex(ValueError,
                                r"`momentum` must be in \[0, 1\), not 1.0"):
      optimizer.SGDMomentum([self.w], momentum=1.0)
    with self.assertRaisesRegex(ValueError,
                                "`weight_decay` must be >= 0, not -0.1"):
      optimizer.SGDMomentum([self.w], weight_decay=-0.1)
    with self.assertRaisesRegex(ValueError, "`variables` must not be empty"):
      optimizer.SGDMomentum([])
    with self.assertRaisesRegex(
        ValueError, "`variables` must not repeat a variable, but w:0"):
      optimizer.SGDMomentum([self.w, self.b, self.w])
    with self.assertRaisesRegex(
        ValueError, "`variables` must be floating point, but step:0 is int64"):
      optimizer.SGDMomentum([tf.Variable(0, dtype=tf.int64, name="step")])

  def test_learning_rate_multipliers_one_per_variable(self):
    with self.assertRaisesRegex(
        ValueError, r"`learning_rate_multipliers` must be 2 non-negative "
        r"numbers, not \[1.0\]"):
      optimizer.SGDMomentum([self.w, self.b], learning_rate_multipliers=[1])
    with self.assertRaisesRegex(
        ValueError, r"`learning_rate_multipliers` must be 2 non-negative "
        r"numbers, not \[1.0, -1.0\]"):
      optimizer.SGDMomentum([self.w, self.b],
                            learning_rate_multipliers=[1, -1])

  def test_decay_variables_must_be_a_subset(self):
    # Same name and value, another variable: identity decides.
    twin = tf.Variable([1.0, 2.0], name="w")
    with self.assertRaisesRegex(
        ValueError, "`decay_variables` must be a subset of `variables`, but "
        "w:0 is not one of them"):
      optimizer.SGDMomentum([self.w, self.b], decay_variables=[twin])

  def test_apply(self):
    opt = optimizer.SGDMomentum([self.w, self.b])
    with self.assertRaisesRegex(
        ValueError, r"`gradients` must have one entry per variable \(2\), "
        "not 1"):
      opt.apply([tf.ones([2])], 0.1)
    with self.assertRaisesRegex(ValueError, "`gradients` has None for b:0"):
      opt.apply([tf.ones([2]), None], 0.1)
    with self.assertRaisesRegex(
        ValueError, r"`gradients` has shape \(3,\) for w:0, whose shape is "
        r"\(2,\)"):
      opt.apply([tf.ones([3]), tf.ones([1])], 0.1)
    with self.assertRaisesRegex(
        ValueError, "`gradients` has dtype float64 for b:0, whose dtype is "
        "float32"):
      opt.apply([tf.ones([2]), tf.ones([1], tf.float64)], 0.1)
    with self.assertRaisesRegex(ValueError,
                                "`learning_rate` must be >= 0, not -0.1"):
      opt.apply([tf.ones([2]), tf.ones([1])], -0.1)
    self.assertEqual(opt.iterations.numpy(), 0)


if __name__ == "__main__":
  tf.test.main()
