"""The training step against a straightforward reference, across devices and precisions."""

import numpy as np
import tensorflow as tf

from tf_resnet.data import transforms
from tf_resnet.model import resnet
from tf_resnet.training import optimizer as optimizer_lib
from tf_resnet.training import strategy as strategy_lib
from tf_resnet.training import task as task_lib

strategy_lib.split_cpu(2)

BATCH = 8


def _batch(seed: int = 0):
  rng = np.random.RandomState(seed)
  images = rng.normal(size=[BATCH, 32, 32, 3]).astype(np.float32)
  labels = rng.randint(0, 10, [BATCH]).astype(np.int32)
  return tf.constant(images), tf.constant(labels)


def _build(strategy, weights=None, precision="float32", sync=False,
           lr=0.1, weight_decay=1e-3):
  with strategy.scope():
    net = resnet.cifar_resnet(8, shortcut="B", sync_batch_norm=sync)
    if weights is not None:
      for v, w in zip(net.variables, weights):
        v.assign(w)
    variables = net.trainable_variables
    opt = optimizer_lib.SGDMomentum(
        variables, momentum=0.9, weight_decay=weight_decay,
        decay_variables=task_lib.decayed_variables(net))
    task = task_lib.Task(net, opt, lambda step: tf.constant(lr),
                         variables=variables, global_batch_size=BATCH,
                         precision=precision)
  return net, task


def _values(net):
  return [v.numpy() for v in net.variables]


class DecayTest(tf.test.TestCase):

  def test_decay_covers_convolution_and_fc_kernels_only(self):
    net = resnet.cifar_resnet(8, shortcut="B")
    names = [v.name for v in task_lib.decayed_variables(net)]
    # Stem, 3 stages x 2 convolutions, 2 projections, the classifier.
    self.assertLen(names, 1 + 6 + 2 + 1)
    self.assertTrue(all(n.endswith("/kernel:0") for n in names), names)
    self.assertIn("cifar_resnet8/head/fc/kernel:0", names)
    penalty = task_lib.weight_decay_penalty(task_lib.decayed_variables(net),
                                            1e-4)
    expected = 0.5 * 1e-4 * sum(float(np.sum(v.numpy()**2))
                                for v in task_lib.decayed_variables(net))
    self.assertAllClose(penalty, expected, rtol=1e-5)


class StepTest(tf.test.TestCase):

  def test_step_equals_a_straightforward_reference(self):
    # Reference: the paper's objective written out (mean cross-entropy plus
    # 0.5 * wd * ||w||^2 over kernels), its gradient by autodiff, and
    # Caffe's momentum update in NumPy.
    strategy = tf.distribute.get_strategy()
    net, task = _build(strategy)
    reference = resnet.cifar_resnet(8, shortcut="B")
    for v, w in zip(reference.variables, _values(net)):
      v.assign(w)
    velocity = [np.zeros(v.shape, np.float32)
                for v in reference.trainable_variables]
    decayed = {v.ref() for v in task_lib.decayed_variables(reference)}
    for step in range(2):
      images, labels = _batch(step)
      task.train_step((images, labels))
      with tf.GradientTape() as tape:
        logits = reference(images, is_training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=labels, logits=logits)) + 0.5 * 1e-3 * tf.add_n(
                [tf.reduce_sum(v**2) for v in reference.trainable_variables
                 if v.ref() in decayed])
      grads = tape.gradient(loss, reference.trainable_variables)
      for i, (v, g) in enumerate(zip(reference.trainable_variables, grads)):
        velocity[i] = 0.9 * velocity[i] + 0.1 * g.numpy()
        v.assign(v.numpy() - velocity[i])
    for ours, theirs in zip(net.variables, reference.variables):
      self.assertAllClose(ours, theirs, atol=2e-5, rtol=1e-4)
    self.assertEqual(int(task.step), 2)

  def test_eager_equals_function(self):
    strategy = tf.distribute.get_strategy()
    eager_net, eager = _build(strategy)
    graph_net, graph = _build(strategy, _values(eager_net))
    step = tf.function(graph.train_step)
    for i in range(2):
      a = eager.train_step(_batch(i))
      b = step(_batch(i))
      self.assertAllClose(a["loss"], b["loss"], rtol=1e-5)
    for x, y in zip(eager_net.variables, graph_net.variables):
      self.assertAllClose(x, y, atol=1e-5, rtol=1e-5)

  def test_metrics_count_errors(self):
    net, task = _build(tf.distribute.get_strategy(), lr=0.0)
    images, labels = _batch(3)
    logits = net(images, is_training=True)
    out = task.train_step((images, labels))
    expected = np.sum(np.argmax(logits.numpy(), -1) != labels.numpy())
    self.assertEqual(float(out["errors"]), expected)
    self.assertEqual(float(out["examples"]), BATCH)
    self.assertEqual(float(out["nonfinite"]), 0.0)


class DistributedStepTest(tf.test.TestCase):

  def test_two_replicas_equal_one_device(self):
    # With synchronized batch normalization, two replicas of half the batch
    # compute exactly what one device computes on the whole batch.
    one_net, one = _build(tf.distribute.get_strategy(), sync=True)
    initial = _values(one_net)
    mirrored = strategy_lib.mirrored(("/cpu:0", "/cpu:1"))
    two_net, two = _build(mirrored, _values(one_net), sync=True)
    batches = [_batch(i) for i in range(3)]
    dataset = mirrored.distribute_datasets_from_function(
        lambda ctx: tf.data.Dataset.from_tensor_slices(
            tuple(tf.concat([b[k] for b in batches], 0) for k in (0, 1))
        ).batch(ctx.get_per_replica_batch_size(BATCH)))
    iterator = iter(dataset)

    @tf.function
    def step(inputs):
      out = mirrored.run(two.train_step, args=(inputs,))
      return mirrored.reduce(tf.distribute.ReduceOp.SUM, out["loss"], None)

    one_step = tf.function(one.train_step)
    for batch in batches:
      self.assertAllClose(step(next(iterator)), one_step(batch)["loss"],
                          rtol=1e-5)
    # Half-batch convolutions sum their gradients in another order than the
    # whole batch's (oneDNN's blocked reductions; one device is bitwise
    # deterministic), and a batch-norm offset's gradient is a sum with heavy
    # cancellation. Compare what training changed: after three steps the two
    # updates agree to 1% of their size, while the losses above agree to 1e-5.
    for start, a, b in zip(initial, one_net.variables, two_net.variables):
      change = np.asarray(a) - start
      self.assertLessEqual(np.linalg.norm(np.asarray(b) - np.asarray(a)),
                           1e-2 * np.linalg.norm(change) + 1e-6, a.name)


class InputTransformTest(tf.test.TestCase):
  """A step on batches the input left unfinished: the training input's
  resampling on the accelerator (`pipeline.train_device_transform`)."""

  def setUp(self):
    super().setUp()
    # Small crops of small images, with the training input's own draws.
    rng = np.random.RandomState(3)
    self._mean = tf.constant(rng.uniform(60, 180, [32, 32, 3]), tf.float32)
    values = tf.constant([0.2, 0.02, 0.002])
    vectors = tf.constant(np.linalg.qr(rng.randn(3, 3))[0], tf.float32)
    images = [tf.constant(rng.randint(0, 256, shape).astype(np.uint8))
              for shape in ([30, 44, 3], [50, 40, 3]) * (BATCH // 2)]
    seeds = [tf.constant([5, i], tf.int64) for i in range(BATCH)]
    kwargs = dict(encoded=False, scale_range=(32, 40), crop=32)
    self._views = tf.stack([transforms.imagenet_train(
        image, seed, self._mean, values, vectors, **kwargs)
                            for image, seed in zip(images, seeds)])
    windows, boxes, shifts = zip(*[transforms.imagenet_train_window(
        image, seed, values, vectors, **kwargs)
                                   for image, seed in zip(images, seeds)])
    rows = max(w.shape[0] for w in windows)
    cols = max(w.shape[1] for w in windows)
    self._windows = (tf.stack([tf.pad(w, [[0, rows - w.shape[0]],
                                          [0, cols - w.shape[1]], [0, 0]])
                               for w in windows]),
                     tf.stack(boxes), tf.stack(shifts))
    self._labels = tf.constant(rng.randint(0, 10, [BATCH]).astype(np.int32))
    self._init = _values(resnet.cifar_resnet(8, shortcut="B"))

  def _transform(self, windows):
    return transforms.imagenet_train_from_windows(*windows, self._mean,
                                                  crop=32)

  def _task(self, transform=None):
    net, task = _build(tf.distribute.get_strategy(), self._init)
    task.input_transform = transform
    return net, task

  def test_step_on_windows_equals_step_on_views(self):
    host_net, host = self._task()
    device_net, device = self._task(self._transform)
    host_step = tf.function(host.train_step)
    device_step = tf.function(device.train_step)
    for _ in range(2):
      expected = host_step((self._views, self._labels))
      self.assertAllClose(device_step((self._windows, self._labels)),
                          expected, rtol=1e-5, atol=0)
    # Crops equal to float rounding make updates equal to a little more:
    # a batch-norm offset's gradient is a sum with heavy cancellation. The
    # two updates agree to 1% of their size.
    for start, a, b in zip(self._init, host_net.variables,
                           device_net.variables):
      change = np.asarray(a) - start
      self.assertLessEqual(np.linalg.norm(np.asarray(b) - np.asarray(a)),
                           1e-2 * np.linalg.norm(change) + 1e-6, a.name)

  def test_eager_function_and_xla_update_agree(self):
    losses = []
    for mode in ("eager", "function", "xla"):
      _, task = self._task(self._transform)
      if mode == "eager":
        step = task.train_step
      elif mode == "function":
        step = tf.function(task.train_step)
      else:  # As the Trainer runs --xla: crop_and_resize has no XLA kernel.
        update = tf.function(task.update, jit_compile=True)
        step = lambda inputs, task=task, update=update: update(
            task.prepare(inputs))
      losses.append([float(step((self._windows, self._labels))["loss"])
                     for _ in range(2)])
    self.assertAllClose(losses[1], losses[0], rtol=1e-5)
    self.assertAllClose(losses[2], losses[0], rtol=1e-4)


class PrecisionTest(tf.test.TestCase):

  def _losses(self, precision, steps=4, xla=False):
    net, task = _build(tf.distribute.get_strategy(), self._init,
                       precision=precision, lr=0.05)
    step = tf.function(task.train_step, jit_compile=xla)
    images, labels = _batch(7)
    return [float(step((images, labels))["loss"]) for _ in range(steps)], task

  def setUp(self):
    super().setUp()
    self._init = _values(resnet.cifar_resnet(8, shortcut="B"))

  def test_mixed_precision_tracks_float32(self):
    reference, _ = self._losses("float32")
    self.assertLess(reference[-1], reference[0])  # Fits the batch.
    for precision in ("mixed_float16", "mixed_bfloat16"):
      losses, task = self._losses(precision)
      self.assertTrue(np.all(np.isfinite(losses)), (precision, losses))
      self.assertAllClose(losses, reference, rtol=0.05, atol=0.05)
      if precision == "mixed_float16":
        self.assertEqual(float(task.loss_scale.scale), 2.0**15)

  def test_loss_scale_halves_on_overflow_and_skips_the_step(self):
    net, task = _build(tf.distribute.get_strategy(), self._init,
                       precision="mixed_float16")
    task.loss_scale.scale.assign(2.0**120)  # Overflows float16 gradients.
    before = _values(net)
    task.train_step(_batch(1))
    self.assertEqual(float(task.loss_scale.scale), 2.0**119)
    self.assertEqual(int(task.optimizer.iterations), 0)
    for a, b in zip(before, _values(net)):
      if a.dtype == np.float32 and a.ndim == 4:  # Kernels: untouched.
        self.assertAllEqual(a, b)

  def test_xla_equals_the_default_step(self):
    reference, _ = self._losses("float32", steps=2)
    compiled, _ = self._losses("float32", steps=2, xla=True)
    self.assertAllClose(compiled, reference, rtol=1e-4)


if __name__ == "__main__":
  tf.test.main()
