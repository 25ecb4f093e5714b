"""Input pipelines: order, determinism, resumption, sharding across replicas, test modes."""

import dataclasses
import os
import tempfile

import numpy as np
import tensorflow as tf

from tf_resnet.data import pipeline
from tf_resnet.data import sources
from tf_resnet.data import stats
from tf_resnet.data import transforms
from tf_resnet.testing import imagenet
from tf_resnet.training import strategy

strategy.split_cpu(2)


def _numbered_source(n: int = 20) -> sources.IndexedSource:
  """Image i is filled with the value i and labelled i, so batches can be read back."""
  images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones(
      [n, 32, 32, 3], np.uint8)
  labels = np.arange(n, dtype=np.int32)
  return sources.IndexedSource("numbered", "cifar", [str(i) for i in range(n)],
                               items={"train": images, "test": images},
                               labels={"train": labels, "test": labels},
                               encoded=False)


def _zero_stats(size: int = 32) -> stats.Statistics:
  return stats.Statistics(np.zeros([size, size, 3], np.float32),
                          np.asarray(stats.IMAGENET_EIGENVALUES, np.float32),
                          np.asarray(stats.IMAGENET_EIGENVECTORS, np.float32),
                          1, "imagenet")


def _take(ds, count):
  return [(x.numpy(), y.numpy()) for x, y in ds.take(count)]


class TrainOrderTest(tf.test.TestCase):

  def test_each_epoch_is_a_permutation(self):
    source = _numbered_source(20)
    config = pipeline.InputConfig(global_batch_size=4, seed=3)
    batches = _take(pipeline.train_dataset(source, _zero_stats(), config), 10)
    labels = np.concatenate([y for _, y in batches])
    self.assertCountEqual(labels[:20], range(20))
    self.assertCountEqual(labels[20:], range(20))
    self.assertNotAllEqual(labels[:20], labels[20:])  # Reshuffled.
    self.assertNotAllEqual(labels[:20], np.arange(20))

  def test_same_seed_same_batches_other_seed_others(self):
    source = _numbered_source()
    run = lambda seed: _take(pipeline.train_dataset(
        source, _zero_stats(), pipeline.InputConfig(4, seed=seed)), 3)
    first, again, other = run(1), run(1), run(2)
    for (xa, ya), (xb, yb) in zip(first, again):
      self.assertAllEqual(xa, xb)
      self.assertAllEqual(ya, yb)
    self.assertNotAllEqual(np.concatenate([y for _, y in first]),
                           np.concatenate([y for _, y in other]))

  def test_resuming_continues_the_epoch(self):
    source = _numbered_source()
    config = pipeline.InputConfig(global_batch_size=6, seed=5)
    whole = _take(pipeline.train_dataset(source, _zero_stats(), config), 6)
    resumed = _take(pipeline.train_dataset(source, _zero_stats(), config,
                                           start_step=4), 2)
    for (xa, ya), (xb, yb) in zip(whole[4:], resumed):
      self.assertAllEqual(ya, yb)
      self.assertAllEqual(xa, xb)  # Same augmentation too.

  def test_augmentation_is_per_example_and_recoverable(self):
    # Image i is constant i: a CIFAR training view is (i - 0) inside the
    # crop and 0 in the padding, never another example's value.
    source = _numbered_source()
    for x, y in _take(pipeline.train_dataset(
        source, _zero_stats(), pipeline.InputConfig(4)), 3):
      for image, label in zip(x, y):
        self.assertContainsSubset(set(np.unique(image)), {0.0, float(label)})


class ImageNetTrainTest(tf.test.TestCase):

  def test_batches_are_the_single_image_views(self):
    # The pipeline finishes the views (mean, colour noise) on whole batches:
    # the same numbers as `transforms.imagenet_train` on each example, with
    # its seed, for the example at its place in the input order.
    n, seed = 6, 3
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, [n, 240, 300, 3]).astype(np.uint8)
    source = sources.IndexedSource(
        "noise", "imagenet", ["a", "b"], items={"train": images},
        labels={"train": np.arange(n, dtype=np.int32) % 2}, encoded=False)
    statistics = stats.Statistics(
        rng.uniform(60, 180, [224, 224, 3]).astype(np.float32),
        np.asarray(stats.IMAGENET_EIGENVALUES, np.float32),
        np.asarray(stats.IMAGENET_EIGENVECTORS, np.float32), n, "imagenet")
    for colour in (True, False):
      config = pipeline.InputConfig(2, seed=seed, color_augmentation=colour)
      batches = _take(pipeline.train_dataset(source, statistics, config), 2)
      views = np.concatenate([x for x, _ in batches])
      for element, view in enumerate(views):
        index = int(pipeline.example_index(tf.constant(element, tf.int64), n,
                                           seed))
        expected = transforms.imagenet_train(
            tf.constant(images[index]), tf.constant([seed, element], tf.int64),
            statistics.mean_image,
            statistics.eigenvalues if colour else None,
            statistics.eigenvectors, encoded=False)
        self.assertAllEqual(view, expected, msg=f"element {element}")


class ResampleOnDeviceTest(tf.test.TestCase):
  """The host decodes the windows, the step resamples them: the same batches."""

  def _source(self):
    # JPEGs of two sizes: 200x260 is enlarged by every scale (crops at its
    # border read beyond it: the replicated-edge windows), 300x230 shrunk
    # by the small scales.
    rng = np.random.RandomState(4)
    paths = []
    for i, shape in enumerate(([200, 260, 3], [300, 230, 3]) * 4):
      paths.append(os.path.join(self.get_temp_dir(), f"{i}.jpg"))
      tf.io.write_file(paths[-1], tf.io.encode_jpeg(
          rng.randint(0, 256, shape).astype(np.uint8), quality=90))
    return sources.IndexedSource(
        "jpegs", "imagenet", ["a", "b"], items={"train": np.array(paths)},
        labels={"train": np.arange(8, dtype=np.int32) % 2}, encoded=True)

  def test_device_batches_equal_host_batches(self):
    source = self._source()
    rng = np.random.RandomState(5)
    statistics = stats.Statistics(
        rng.uniform(60, 180, [224, 224, 3]).astype(np.float32),
        np.asarray(stats.IMAGENET_EIGENVALUES, np.float32),
        np.asarray(stats.IMAGENET_EIGENVECTORS, np.float32), 8, "imagenet")
    for colour in (True, False):
      for scale_range in ((224, 232), (256, 480)):
        config = pipeline.InputConfig(4, seed=6, color_augmentation=colour,
                                      scale_range=scale_range)
        host = _take(pipeline.train_dataset(source, statistics, config), 3)
        device_config = dataclasses.replace(config, resample_on_device=True)
        transform = tf.function(pipeline.train_device_transform(
            source, statistics, device_config))
        self.assertIsNone(pipeline.train_device_transform(source, statistics,
                                                          config))
        device = pipeline.train_dataset(source, statistics, device_config)
        self.assertEqual(device.element_spec[0][0].shape.as_list(),
                         [4, None, None, 3])
        for step, ((windows, labels), (images, host_labels)) in enumerate(
            zip(device.take(3), host)):
          msg = f"colour={colour} scale_range={scale_range} step={step}"
          self.assertEqual(windows[0].dtype, tf.uint8)
          self.assertAllEqual(labels, host_labels, msg=msg)
          views = transform(windows)
          # Float32 rounding of the sampling positions (transforms_test
          # shows where it comes from): up to 1/5000 of a pixel's shift of
          # a noise image.
          self.assertAllClose(views, images, atol=0.05, rtol=0, msg=msg)
          self.assertAllClose(views, pipeline.train_device_transform(
              source, statistics, device_config)(windows), atol=0, rtol=0,
                              msg=msg)  # Eager equals tf.function.

  def test_only_scale_augmentation_resamples_on_device(self):
    config = pipeline.InputConfig(4, resample_on_device=True)
    with self.assertRaisesRegex(ValueError, "`resample_on_device` applies to "
                                "scale augmentation"):
      pipeline.train_dataset(_numbered_source(), _zero_stats(), config)
    with self.assertRaisesRegex(ValueError, "`resample_on_device`"):
      pipeline.train_device_transform(_numbered_source(), _zero_stats(),
                                      config)


class DistributedTest(tf.test.TestCase):

  def test_two_replicas_see_the_single_device_batch(self):
    source = _numbered_source(24)
    config = pipeline.InputConfig(global_batch_size=8, seed=11)
    single = _take(pipeline.train_dataset(source, _zero_stats(), config), 3)
    mirrored = strategy.mirrored(("/cpu:0", "/cpu:1"))
    dist = mirrored.distribute_datasets_from_function(
        lambda ctx: pipeline.train_dataset(source, _zero_stats(), config, ctx))
    iterator = iter(dist)
    for x_single, y_single in single:
      x, y = next(iterator)
      parts_x = mirrored.experimental_local_results(x)
      parts_y = mirrored.experimental_local_results(y)
      self.assertLen(parts_y, 2)
      self.assertEqual(parts_y[0].shape, [4])
      self.assertAllEqual(np.concatenate(parts_y), y_single)
      self.assertAllEqual(np.concatenate(parts_x), x_single)

  def test_pipelines_take_contiguous_shares(self):
    source = _numbered_source(24)
    config = pipeline.InputConfig(global_batch_size=8, seed=2)
    whole = np.concatenate([y for _, y in _take(
        pipeline.train_dataset(source, _zero_stats(), config), 2)])
    shares = []
    for worker in range(2):
      ctx = tf.distribute.InputContext(num_input_pipelines=2,
                                       input_pipeline_id=worker,
                                       num_replicas_in_sync=2)
      shares.append([y for _, y in _take(pipeline.train_dataset(
          source, _zero_stats(), config, ctx), 2)])
    for step in range(2):
      self.assertAllEqual(
          np.concatenate([shares[0][step], shares[1][step]]),
          whole[step * 8:(step + 1) * 8])

  def test_indivisible_batch_is_refused(self):
    ctx = tf.distribute.InputContext(num_input_pipelines=1,
                                     input_pipeline_id=0,
                                     num_replicas_in_sync=3)
    with self.assertRaisesRegex(ValueError, r"global batch size \(8\) must be "
                                r"divisible by the number of replicas \(3\)"):
      pipeline.train_dataset(_numbered_source(), _zero_stats(),
                             pipeline.InputConfig(8), ctx)


class EvalTest(tf.test.TestCase):

  def test_center_visits_every_example_once_in_order(self):
    ds = pipeline.eval_dataset(_numbered_source(25), _zero_stats(),
                               pipeline.InputConfig(1), batch_size=10)
    labels = np.concatenate([y for _, y in ds.as_numpy_iterator()])
    self.assertAllEqual(labels, np.arange(25))

  def test_imagenet_modes(self):
    source = sources.SyntheticSource("imagenet",
                                     sizes={"train": 4, "test": 3})
    config = pipeline.InputConfig(1, test_scales=(224, 288), test_flip=True)
    center = next(iter(pipeline.eval_dataset(source, _zero_stats(224), config,
                                             mode="center", batch_size=3)))
    self.assertEqual(center[0].shape, [3, 224, 224, 3])
    ten = next(iter(pipeline.eval_dataset(source, _zero_stats(224), config,
                                          mode="10crop", batch_size=2)))
    self.assertEqual(ten[0].shape, [2, 10, 224, 224, 3])
    multi = list(pipeline.eval_dataset(source, _zero_stats(224), config,
                                       mode="multiscale"))
    self.assertLen(multi, 3)
    views, _ = multi[0]
    self.assertEqual([v.shape for v in views],
                     [[2, 224, 224, 3], [2, 288, 288, 3]])

  def test_cifar_has_only_the_single_view(self):
    with self.assertRaisesRegex(ValueError, "single original view"):
      pipeline.eval_dataset(_numbered_source(), _zero_stats(),
                            pipeline.InputConfig(1), mode="10crop")

  def test_undecodable_image_is_skipped_or_fails(self):
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    good = tf.io.encode_png(tf.zeros([32, 32, 3], tf.uint8)).numpy()
    # Passes the header and trailer checks, but is no PNG inside.
    bad = b"\x89PNG\r\n\x1a\n" + b"garbage" * 10 + b"IEND"
    for split in ("train", "test"):
      for name, data in (("a.png", good), ("b.png", bad), ("c.png", good)):
        os.makedirs(f"{root}/{split}/x", exist_ok=True)
        with open(f"{root}/{split}/x/{name}", "wb") as f:
          f.write(data)
    source = sources.folder_source(root, family="cifar")
    skip = pipeline.eval_dataset(source, _zero_stats(),
                                 pipeline.InputConfig(1), batch_size=8)
    self.assertEqual(sum(len(y) for _, y in skip), 2)
    fail = pipeline.eval_dataset(source, _zero_stats(),
                                 pipeline.InputConfig(1, on_bad_image="fail"),
                                 batch_size=8)
    with self.assertRaises(tf.errors.InvalidArgumentError):
      list(fail)


class StreamedTest(imagenet.TinyImageNetTestCase):
  """TFDS's ImageNet, prepared by its real builder from tiny ILSVRC2012 archives."""

  def _batches(self, count, start_step=0, **kwargs):
    # Blocks of 5 of the 12 training records: 5, 5 and 2.
    config = pipeline.InputConfig(2, seed=kwargs.pop("seed", 1),
                                  stream_block_size=5, **kwargs)
    return _take(pipeline.train_dataset(self.source, _zero_stats(224), config,
                                        start_step=start_step), count)

  def test_imagenet_training_batches_cover_each_epoch(self):
    batches = self._batches(12)  # Two epochs of 12 images.
    self.assertEqual(batches[0][0].shape, (2, 224, 224, 3))
    labels = np.concatenate([y for _, y in batches])
    self.assertEqual(labels.dtype, np.int32)
    for epoch in (labels[:12], labels[12:]):
      self.assertCountEqual(epoch, [0] * 4 + [1] * 4 + [2] * 4)

  def test_resuming_continues_the_same_batches(self):
    whole = self._batches(9)
    for step in (2, 3, 6):  # Inside a block, at a block's end, a new epoch.
      resumed = self._batches(3, start_step=step)
      for (xa, ya), (xb, yb) in zip(whole[step:step + 3], resumed):
        self.assertAllEqual(ya, yb)
        self.assertAllEqual(xa, xb)  # Same images, same augmentation.

  def test_other_seeds_other_orders(self):
    labels = lambda seed: np.concatenate(
        [y for _, y in self._batches(6, seed=seed)]).tolist()
    first = labels(1)
    self.assertEqual(labels(1), first)
    self.assertTrue(any(labels(seed) != first for seed in (2, 3, 4)))


if __name__ == "__main__":
  tf.test.main()
