"""Tests of the model config: defaults, validation and what it builds."""

import dataclasses

from absl.testing import parameterized
import tensorflow as tf

from tf_resnet.model import resnet
from tf_resnet.model import vgg
from tf_resnet.model import zoo


class ModelConfigTest(tf.test.TestCase, parameterized.TestCase):

  def test_defaults_are_the_papers(self):
    imagenet = zoo.ModelConfig()
    self.assertEqual((imagenet.depth, imagenet.shortcut, imagenet.num_classes,
                      imagenet.input_size), (34, "B", 1000, 224))
    cifar = zoo.ModelConfig(family="cifar")
    self.assertEqual((cifar.depth, cifar.shortcut, cifar.num_classes,
                      cifar.input_size), (20, "A", 10, 32))
    self.assertIsNone(zoo.ModelConfig(architecture="plain").shortcut)

  def test_is_frozen(self):
    with self.assertRaises(dataclasses.FrozenInstanceError):
      zoo.ModelConfig().depth = 50

  @parameterized.parameters(
      (dict(depth=42), "valid depths are 18, 34, 50, 101, 152"),
      (dict(family="cifar", depth=21), r"6n\+2"),
      (dict(family="mnist"), "`family` must be one of"),
      (dict(architecture="densenet"), "`architecture` must be one of"),
      (dict(architecture="plain", shortcut="A"), "plain networks have no "
       "shortcuts"),
      (dict(architecture="vgg19", family="cifar"), "ImageNet"),
      (dict(architecture="vgg19", depth=16), "VGG has depth 19"),
      (dict(shortcut="D"), "`shortcut` must be one of"),
      (dict(num_classes=0), "`num_classes` must be positive"),
      (dict(depth=34, stride_on_3x3=True), "bottleneck"),
      (dict(architecture="plain", zero_init_last_bn=True), "residual"),
  )
  def test_invalid_configs_say_why(self, kwargs, message):
    with self.assertRaisesRegex(ValueError, message):
      zoo.ModelConfig(**kwargs)

  @parameterized.parameters(
      (zoo.ModelConfig(family="cifar", depth=8, num_classes=7),
       resnet.ResNet, 8, "A", 7),
      (zoo.ModelConfig(family="cifar", architecture="plain", depth=14),
       resnet.ResNet, 14, None, 10),
      (zoo.ModelConfig(depth=18, shortcut="C"), resnet.ResNet, 18, "C", 1000),
  )
  def test_builds_the_described_network(self, config, kind, depth, shortcut,
                                        num_classes):
    net = zoo.build_model(config)
    self.assertIsInstance(net, kind)
    self.assertEqual((net.depth, net.shortcut, net.num_classes),
                     (depth, shortcut, num_classes))

  def test_builds_vgg19(self):
    net = zoo.build_model(zoo.ModelConfig(architecture="vgg19",
                                          num_classes=5))
    self.assertIsInstance(net, vgg.VGG)
    self.assertEqual((net.depth, net.num_classes), (19, 5))

  def test_display_names(self):
    self.assertEqual(zoo.ModelConfig(depth=50).display_name, "ResNet-50 (B)")
    self.assertEqual(
        zoo.ModelConfig(family="cifar", architecture="plain",
                        depth=56).display_name, "plain-56")
    self.assertEqual(zoo.ModelConfig(architecture="vgg19").display_name,
                     "VGG-19")


  def test_max_pool_padding_is_recorded_and_built(self):
    config = zoo.ModelConfig(depth=18, max_pool_padding="symmetric")
    self.assertEqual(zoo.build_model(config).stem.pool.padding, "symmetric")
    self.assertEqual(zoo.build_model(zoo.ModelConfig(depth=18)).stem.pool
                     .padding, "ceil")  # The paper's grid by default.
    values = dataclasses.asdict(config)
    self.assertEqual(zoo.ModelConfig(**values), config)
    # A config.json written before the option existed still loads.
    del values["max_pool_padding"]
    self.assertEqual(zoo.ModelConfig(**values).max_pool_padding, "ceil")

  def test_max_pool_padding_errors(self):
    with self.assertRaisesRegex(ValueError, "`max_pool_padding` must be one "
                                "of \\('ceil', 'symmetric'\\), not 'same'"):
      zoo.ModelConfig(max_pool_padding="same")
    with self.assertRaisesRegex(ValueError, "CIFAR networks have no max pool"):
      zoo.ModelConfig(family="cifar", max_pool_padding="symmetric")


if __name__ == "__main__":
  tf.test.main()
