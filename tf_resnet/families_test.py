"""The registry's per-family facts against the paper, and against what they drive."""

import tensorflow as tf

from tf_resnet import families
from tf_resnet.analysis import paper
from tf_resnet.data import pipeline
from tf_resnet.data import sources
from tf_resnet.data import stats as stats_lib
from tf_resnet.data import transforms
from tf_resnet.model import zoo


class FactsTest(tf.test.TestCase):

  def test_the_papers_facts(self):
    imagenet, cifar = families.IMAGENET, families.CIFAR
    # Table 1: a 7x7/2 stem and a 3x3/2 max pool, bottlenecks from 50
    # layers; section 4.2: 6n+2 layers of basic blocks, no pooling stem.
    self.assertEqual((imagenet.layout, imagenet.stem_max_pool,
                      imagenet.bottleneck_min_depth), ("table1", True, 50))
    self.assertEqual((cifar.layout, cifar.stem_max_pool,
                      cifar.bottleneck_min_depth), ("6n+2", False, None))
    # Section 3.4 (scale augmentation; centre, 10-crop and multi-scale
    # tests) against section 4.2 (padding and crops; "only evaluate the
    # single view of the original 32x32 image").
    self.assertEqual((imagenet.train_augmentation, imagenet.single_view),
                     ("scale", "center_crop"))
    self.assertEqual(imagenet.eval_modes, pipeline.EVAL_MODES)
    self.assertTrue(imagenet.multiscale_testing)
    self.assertEqual((cifar.train_augmentation, cifar.single_view,
                      cifar.eval_modes), ("pad_crop", "original", ("center",)))
    self.assertFalse(cifar.multiscale_testing)
    # Table 1 prints FLOPs; Table 6 prints parameters.
    self.assertEqual((imagenet.published_cost, cifar.published_cost),
                     ("multiply_adds", "params"))


class WhatTheFactsDriveTest(tf.test.TestCase):
  """Each fact reaches the code that used to branch on the family's name."""

  def test_networks(self):
    imagenet = zoo.build_model(zoo.ModelConfig("imagenet", depth=18))
    cifar = zoo.build_model(zoo.ModelConfig("cifar", depth=20))
    self.assertEqual(imagenet(tf.zeros([1, 64, 64, 3]),
                              is_training=False).shape, [1, 1000])
    self.assertEqual(cifar(tf.zeros([1, 32, 32, 3]), is_training=False).shape,
                     [1, 10])
    # Table 1's depths and 6n+2 are each family's own.
    with self.assertRaises(ValueError):
      zoo.ModelConfig("imagenet", depth=20)
    with self.assertRaises(ValueError):
      zoo.ModelConfig("cifar", depth=18)
    zoo.ModelConfig("imagenet", depth=50, stride_on_3x3=True)
    with self.assertRaisesRegex(ValueError, "bottleneck"):
      zoo.ModelConfig("cifar", depth=56, stride_on_3x3=True)
    with self.assertRaisesRegex(ValueError, "max pool"):
      zoo.ModelConfig("cifar", depth=20, max_pool_padding="symmetric")

  def test_published_costs(self):
    self.assertEqual(paper.reference("imagenet", "resnet", 34),
                     {"multiply_adds": 3.6e9})
    self.assertEqual(paper.reference("cifar", "resnet", 56),
                     {"params": 0.85e6})
    self.assertEqual(paper.reference("cifar", "plain", 56), {})
    self.assertEqual(paper.reference("imagenet", "resnet", 20), {})

  def test_views(self):
    image = tf.cast(tf.random.stateless_uniform([40, 48, 3], [1, 2], 0, 255),
                    tf.uint8)
    big = tf.image.resize(image, [300, 360])
    mean = tf.zeros([224, 224, 3])
    self.assertAllEqual(
        transforms.single_view(big, mean, "imagenet", encoded=False),
        transforms.imagenet_center(big, mean, encoded=False))
    small = tf.zeros([32, 32, 3]) + 9.0
    self.assertAllEqual(
        transforms.single_view(tf.cast(small, tf.uint8), tf.ones([32, 32, 3]),
                               "cifar", encoded=False), small - 1.0)

  def test_input_pipelines(self):
    for family, size in (("cifar", 32), ("imagenet", 224)):
      source = sources.SyntheticSource(family, sizes={"train": 4, "test": 2})
      # The statistics are of the family's single view, the training
      # batches of its augmentation.
      statistics = stats_lib.compute(source, max_images=2)
      self.assertEqual(statistics.mean_image.shape, (size, size, 3))
      images, _ = next(iter(pipeline.train_dataset(
          source, statistics, pipeline.InputConfig(2))))
      self.assertEqual(images.shape, [2, size, size, 3])
      for mode in pipeline.EVAL_MODES:
        if mode in families.get(family).eval_modes:
          pipeline.eval_dataset(source, statistics, pipeline.InputConfig(1),
                                mode=mode)
        else:
          with self.assertRaisesRegex(ValueError, "single original view"):
            pipeline.eval_dataset(source, statistics, pipeline.InputConfig(1),
                                  mode=mode)


if __name__ == "__main__":
  tf.test.main()
