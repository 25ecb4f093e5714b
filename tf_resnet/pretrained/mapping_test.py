"""Converted weights reproduce the sources' networks: Keras's ResNet-50 and torchvision-structured ResNet-18/50.

The sources' files are made here (random weights, BN statistics and Keras's
convolution biases), converted, and the project's logits compared with the
source's on the same images, at 224x224 and at a non-square size, eagerly
and under tf.function. ResNet-101/152 run when TF_RESNET_SLOW_TESTS is set
(2.5 minutes); their mapping differs from ResNet-50's only in block
counts, which the fast tests below cover by name.
"""

import os
import tempfile
import unittest

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_resnet.pretrained import conversion
from tf_resnet.pretrained import mapping
from tf_resnet.pretrained import readers
from tf_resnet.pretrained import testing

_SIZES = ((224, 224), (200, 264))  # Non-square: also odd strides' edges.
_RTOL = 1e-4  # Of the logits' scale.


def _ours(network, images: np.ndarray, mean_rgb) -> tuple[np.ndarray, ...]:
  x = tf.constant(images.astype(np.float32) - np.asarray(mean_rgb,
                                                         np.float32))
  eager = network(x, is_training=False).numpy()
  graph = tf.function(lambda v: network(v, is_training=False))(x).numpy()
  return eager, graph


def _keras_logits(model, images: np.ndarray) -> np.ndarray:
  import keras  # pylint: disable=g-import-not-at-top
  x = keras.applications.resnet.preprocess_input(images.astype(np.float32))
  return np.asarray(model(x, training=False))


def _torch_logits(model, images: np.ndarray) -> np.ndarray:
  import torch  # pylint: disable=g-import-not-at-top
  with torch.no_grad():
    return model(testing.torchvision_preprocess(images)).numpy()


class _ParityMixin:

  def assert_parity(self, ours: np.ndarray, theirs: np.ndarray) -> None:
    scale = np.abs(theirs).max()
    error = np.abs(ours - theirs).max() / scale
    self.assertLess(error, _RTOL, f"max relative error {error:.2e}")
    # The images' logits differ by far more than the tolerance, so a
    # conversion that lost the input (wrong channels, mean or scale) fails.
    spread = np.abs(theirs[0] - theirs[1]).max() / scale
    self.assertGreater(spread, 100 * _RTOL)


class KerasTest(tf.test.TestCase, _ParityMixin):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dir = tempfile.mkdtemp()
    cls.keras = testing.keras_resnet(50, seed=1)
    cls.path = testing.save_keras_legacy_h5(
        cls.keras, os.path.join(cls.dir, "resnet50.h5"))

  def _convert(self, path=None, **kwargs) -> mapping.Converted:
    path = path or self.path
    return mapping.from_keras(readers.read_keras_h5(path), path, **kwargs)

  def _network(self, converted):
    network = conversion.zoo.build_model(converted.model)
    conversion.load_into(network, converted, self.path)
    return network

  def test_the_test_file_is_what_keras_loads(self):
    # Keras's own legacy loader reads our file into a fresh ResNet50: the
    # test files have the real files' layout.
    fresh = testing.keras_resnet(50, seed=2)
    fresh.load_weights(self.path)
    for ours, theirs in zip(fresh.weights, self.keras.weights):
      self.assertAllEqual(ours.numpy(), theirs.numpy())

  def test_logits_equal_keras(self):
    converted = self._convert()
    self.assertEqual(converted.model.max_pool_padding, "symmetric")
    self.assertFalse(converted.model.stride_on_3x3)
    self.assertEqual((converted.model.depth, converted.model.shortcut),
                     (50, "B"))
    network = self._network(converted)
    for height, width in _SIZES:
      images = testing.random_images(height, width, seed=height)
      theirs = _keras_logits(self.keras, images)
      for ours in _ours(network, images, converted.mean_rgb):
        self.assert_parity(ours, theirs)

  def test_caffe_layer_names_convert_the_same(self):
    # Keras 2.2.4's files named the layers as Caffe did (res2a_branch2a).
    old = testing.save_keras_legacy_h5(
        self.keras, os.path.join(self.dir, "caffe_names.h5"),
        caffe_names=True)
    new, renamed = self._convert(), self._convert(old)
    self.assertEqual(sorted(new.weights), sorted(renamed.weights))
    for name, value in new.weights.items():
      self.assertAllEqual(renamed.weights[name], value)

  def test_notop_file_needs_num_classes_and_keeps_the_features(self):
    notop = testing.keras_resnet(50, include_top=False, seed=1)
    path = testing.save_keras_legacy_h5(
        notop, os.path.join(self.dir, "notop.h5"))
    with self.assertRaisesRegex(
        readers.ConversionError,
        "notop.h5 has no classifier \\(a _notop file\\): give --num_classes"):
      self._convert(path)
    converted = self._convert(path, num_classes=7)
    self.assertTrue(converted.new_head)
    self.assertEqual(converted.model.num_classes, 7)
    network = self._network(converted)
    images = testing.random_images(224, 224)
    features = network.features(
        images.astype(np.float32) - np.float32(converted.mean_rgb),
        is_training=False)
    import keras  # pylint: disable=g-import-not-at-top
    theirs = np.asarray(notop(keras.applications.resnet.preprocess_input(
        images.astype(np.float32))))
    self.assert_parity(tf.reduce_mean(features, axis=(1, 2)).numpy(), theirs)

  def test_another_number_of_classes_gets_a_new_head(self):
    converted = self._convert(num_classes=5)
    self.assertTrue(converted.new_head)
    self.assertNotIn("head/fc/kernel", converted.weights)
    self.assertEqual(converted.source_classes, 1000)

  def test_wrong_depth(self):
    with self.assertRaisesRegex(
        readers.ConversionError,
        "resnet50.h5 holds a ResNet-50, not the --depth=101 asked for"):
      self._convert(depth=101)

  def test_truncated_file(self):
    path = testing.save_keras_legacy_h5(
        self.keras, os.path.join(self.dir, "truncated.h5"),
        truncate=os.path.getsize(self.path) // 2)
    with self.assertRaisesRegex(
        readers.ConversionError,
        "cannot read .*truncated.h5 as a Keras HDF5 weights file "
        "\\(truncated or damaged\\?\\)"):
      readers.read_keras_h5(path)

  def test_unknown_weights_are_named(self):
    weights = dict(readers.read_keras_h5(self.path))
    weights["se_block/kernel"] = np.zeros([1])
    weights["conv2_block1_1_bn/renorm_mean"] = np.zeros([64])
    with self.assertRaisesRegex(
        readers.ConversionError, "unknown weights se_block/kernel$|unknown "
        "weights se_block/kernel:"):
      mapping.from_keras(weights, "f.h5")
    del weights["se_block/kernel"]
    with self.assertRaisesRegex(readers.ConversionError,
                                "unknown weights conv2_block1_1_bn/"
                                "renorm_mean"):
      mapping.from_keras(weights, "f.h5")

  def test_shape_mismatch_names_the_variable(self):
    weights = dict(readers.read_keras_h5(self.path))
    weights["conv3_block2_2_conv/kernel"] = np.zeros([3, 3, 128, 64])
    converted = mapping.from_keras(weights, "f.h5")
    network = conversion.zoo.build_model(converted.model)
    with self.assertRaisesRegex(
        readers.ConversionError,
        "f.h5: conv3_block2_2_conv/kernel has shape \\(3, 3, 128, 64\\) but "
        "resnet50/stage_2/block_1/conv_1/kernel needs \\(3, 3, 128, 128\\)"):
      conversion.load_into(network, converted, "f.h5")

  def test_missing_weights_are_named(self):
    weights = dict(readers.read_keras_h5(self.path))
    del weights["conv4_block6_3_bn/gamma"]
    converted = mapping.from_keras(weights, "f.h5")
    network = conversion.zoo.build_model(converted.model)
    with self.assertRaisesRegex(
        readers.ConversionError, "f.h5 lacks weights for 1 variables: "
        "resnet50/stage_3/block_5/bn_2/scale$"):
      conversion.load_into(network, converted, "f.h5")


class KerasNamesTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      ("conv1", "conv1_conv"), ("bn_conv1", "conv1_bn"),
      ("fc1000", "predictions"), ("res2a_branch2a", "conv2_block1_1_conv"),
      ("res2a_branch1", "conv2_block1_0_conv"),
      ("bn3d_branch2c", "conv3_block4_3_bn"),
      ("res4b22_branch2b", "conv4_block23_2_conv"),  # ResNet-101/152.
      ("bn4b35_branch2a", "conv4_block36_1_bn"))
  def test_caffe_names(self, old, new):
    self.assertEqual(mapping._keras_layer_name(old), new)
    if "b2" not in old and "b3" not in old:  # ResNet-50's names.
      self.assertEqual(testing.caffe_layer_name(new), old)

  @parameterized.parameters((50, (3, 4, 6, 3)), (101, (3, 4, 23, 3)),
                            (152, (3, 8, 36, 3)))
  def test_depth_from_the_blocks(self, depth, counts):
    modules = [f"stage_{s + 1}/block_{b}/conv_{i}" for s, n in
               enumerate(counts) for b in range(n) for i in range(3)]
    block, found = mapping._blocks_per_stage("f", modules)
    self.assertEqual(mapping._depth_of("f", block, found), depth)


class TorchvisionTest(tf.test.TestCase, parameterized.TestCase,
                      _ParityMixin):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.dir = tempfile.mkdtemp()

  @parameterized.parameters((18, "pth"), (50, "safetensors"))
  def test_logits_equal_torchvision(self, depth, kind):
    import torch  # pylint: disable=g-import-not-at-top
    from safetensors import torch as safetensors_torch  # pylint: disable=g-import-not-at-top
    model = testing.torchvision_resnet(depth, seed=depth)
    path = os.path.join(self.dir, f"resnet{depth}.{kind}")
    if kind == "pth":
      torch.save(model.state_dict(), path)
    else:
      safetensors_torch.save_file(model.state_dict(), path)
    converted = mapping.from_torchvision(readers.read_torch(path), path)
    self.assertEqual(converted.model.stride_on_3x3, depth >= 50)
    self.assertEqual(converted.model.max_pool_padding, "symmetric")
    network = conversion.zoo.build_model(converted.model)
    conversion.load_into(network, converted, path)
    for height, width in _SIZES:
      images = testing.random_images(height, width, seed=width)
      theirs = _torch_logits(model, images)
      for ours in _ours(network, images, converted.mean_rgb):
        self.assert_parity(ours, theirs)

  def _state(self):
    model = testing.torchvision_resnet(18)
    return {k: v.numpy() for k, v in model.state_dict().items()}

  def test_errors(self):
    state = self._state()
    with self.assertRaisesRegex(readers.ConversionError,
                                "r18.pth holds a ResNet-18, not the "
                                "--depth=34 asked for"):
      mapping.from_torchvision(state, "r18.pth", depth=34)
    extra = dict(state, **{"layer1.0.se.fc1.weight": np.zeros(1)})
    with self.assertRaisesRegex(readers.ConversionError,
                                "r18.pth: unknown weights "
                                "layer1.0.se.fc1.weight"):
      mapping.from_torchvision(extra, "r18.pth")
    headless = {k: v for k, v in state.items() if not k.startswith("fc.")}
    with self.assertRaisesRegex(readers.ConversionError, "no classifier"):
      mapping.from_torchvision(headless, "r18.pth")
    truncated = {k: v for k, v in state.items()
                 if not k.startswith("layer4.1.")}
    with self.assertRaisesRegex(
        readers.ConversionError,
        "blocks per stage \\(2, 2, 2, 1\\), which is none of the ResNets"):
      mapping.from_torchvision(truncated, "r18.pth")

  def test_shape_mismatch_names_the_variable(self):
    state = self._state()
    state["layer2.0.downsample.0.weight"] = np.zeros([128, 32, 1, 1])
    converted = mapping.from_torchvision(state, "r18.pth")
    network = conversion.zoo.build_model(converted.model)
    with self.assertRaisesRegex(
        readers.ConversionError,
        "r18.pth: layer2.0.downsample.0.weight has shape \\(1, 1, 32, 128\\) "
        "but resnet18/stage_2/block_0/shortcut/conv/kernel needs "
        "\\(1, 1, 64, 128\\)"):
      conversion.load_into(network, converted, "r18.pth")

  def test_damaged_files(self):
    import torch  # pylint: disable=g-import-not-at-top
    from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
    state = self._state()
    pth = os.path.join(self.dir, "damaged.pth")
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, pth)
    st = os.path.join(self.dir, "damaged.safetensors")
    safetensors_numpy.save_file(state, st)
    for path in (pth, st):
      with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
      with self.assertRaisesRegex(readers.ConversionError,
                                  f"cannot read {path} as .*\\(truncated or "
                                  "damaged\\?\\)"):
        readers.read_torch(path)


@unittest.skipUnless(os.environ.get("TF_RESNET_SLOW_TESTS"),
                     "ResNet-101/152 parity takes 2.5 minutes: set "
                     "TF_RESNET_SLOW_TESTS=1")
class DeepKerasTest(tf.test.TestCase, parameterized.TestCase, _ParityMixin):

  @parameterized.parameters(101, 152)
  def test_logits_equal_keras(self, depth):
    model = testing.keras_resnet(depth, seed=depth)
    path = testing.save_keras_legacy_h5(
        model, os.path.join(tempfile.mkdtemp(), f"r{depth}.h5"))
    converted = mapping.from_keras(readers.read_keras_h5(path), path)
    self.assertEqual(converted.model.depth, depth)
    network = conversion.zoo.build_model(converted.model)
    conversion.load_into(network, converted, path)
    for height, width in _SIZES:
      images = testing.random_images(height, width, seed=height)
      for ours in _ours(network, images, converted.mean_rgb):
        self.assert_parity(ours, _keras_logits(model, images))


if __name__ == "__main__":
  tf.test.main()
