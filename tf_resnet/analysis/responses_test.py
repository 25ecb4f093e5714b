"""Tests of the Fig. 7 layer-response measurement against direct computation."""

import numpy as np
import tensorflow as tf

from tf_resnet.model import resnet
from tf_resnet.analysis import responses


def _randomize_batch_norms(network: tf.Module, seed: int) -> None:
  """Moves every batch norm away from the identity, as training would."""
  rng = np.random.default_rng(seed)
  for v in network.variables:
    name = v.name.split("/")[-1].split(":")[0]
    shape = v.shape.as_list()
    if name == "scale":
      v.assign(rng.uniform(0.2, 2.0, shape).astype(np.float32))
    elif name == "offset":
      v.assign(rng.normal(0.0, 0.5, shape).astype(np.float32))
    elif name == "moving_mean":
      v.assign(rng.normal(0.0, 0.3, shape).astype(np.float32))
    elif name == "moving_variance":
      v.assign(rng.uniform(0.5, 3.0, shape).astype(np.float32))


class LayerResponsesTest(tf.test.TestCase):

  def test_one_response_per_3x3_layer_in_forward_order(self):
    # 6n+2 CIFAR nets have 6n+1 3x3 layers; ResNet-18 has 16 (its 7x7 stem
    # and 1x1 projections are not 3x3 layers).
    images = tf.zeros([2, 32, 32, 3])
    for network, expected in ((resnet.cifar_resnet(20), 19),
                              (resnet.cifar_plain(56), 55)):
      found = responses.layer_response_stds(network, [images])
      self.assertLen(found, expected)
      self.assertEqual([r.index for r in found], list(range(1, expected + 1)))
      self.assertEqual(found[0].path, "stem/bn")
      self.assertEqual(found[1].path, "stage_1/block_0/bn_0")
      self.assertEqual(found[-1].path,
                       f"stage_3/block_{(expected - 1) // 6 - 1}/bn_1")
    found = responses.layer_response_stds(resnet.resnet18(),
                                          [tf.zeros([1, 64, 64, 3])])
    self.assertLen(found, 16)
    self.assertNotIn("shortcut", " ".join(r.path for r in found))

  def test_the_stem_response_equals_a_hand_computed_one(self):
    network = resnet.cifar_resnet(8)
    _randomize_batch_norms(network, seed=1)
    images = np.random.default_rng(0).normal(size=(6, 32, 32, 3))
    images = images.astype(np.float32)
    found = responses.layer_response_stds(network, [tf.constant(images)])
    # conv 3x3 SAME (stride 1) then inference batch norm, in NumPy.
    stem = network.stem
    kernel = stem.conv.kernel.numpy()
    padded = np.pad(images, [(0, 0), (1, 1), (1, 1), (0, 0)])
    conv = np.zeros(images.shape[:3] + (kernel.shape[-1],))
    for dy in range(3):
      for dx in range(3):
        conv += np.einsum("nhwc,cd->nhwd",
                          padded[:, dy:dy + 32, dx:dx + 32], kernel[dy, dx])
    bn = stem.bn
    normalized = ((conv - bn.moving_mean.numpy())
                  / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
                  * bn.scale.numpy() + bn.offset.numpy())
    self.assertAllClose(found[0].std, normalized.std(), rtol=1e-4)
    self.assertEqual(found[0].examples, 6)
    self.assertAllClose(found[0].kernel_norm, np.sqrt((kernel**2).sum()))
    # He initialisation: |W|^2 ~ fan_out * 2 (= 32 for 16 channels).
    last = network.stages[-1].blocks[-1].convs[-1].kernel.numpy()
    self.assertAllClose(found[-1].kernel_norm, np.sqrt((last**2).sum()))
    self.assertAllClose(found[-1].kernel_norm, np.sqrt(2 * 64), rtol=0.1)

  def test_batches_accumulate_to_the_whole_set(self):
    network = resnet.cifar_plain(8)
    _randomize_batch_norms(network, seed=2)
    images = tf.random.stateless_normal([12, 32, 32, 3], seed=[3, 4])
    labels = tf.zeros([12], tf.int32)
    whole = responses.layer_response_stds(network, [images])
    # (images, labels) batches of unequal sizes, as the eval pipeline gives.
    parts = responses.layer_response_stds(
        network, [(images[:5], labels[:5]), (images[5:10], labels[5:10]),
                  (images[10:], labels[10:])])
    self.assertAllClose([r.std for r in whole], [r.std for r in parts],
                        rtol=1e-5)
    self.assertEqual(parts[0].examples, 12)
    # Layers really differ: a check that cannot pass by returning one value.
    self.assertGreater(np.ptp([r.std for r in whole]), 0.01)

  def test_no_images_is_an_error(self):
    with self.assertRaisesRegex(ValueError, "no images"):
      responses.layer_response_stds(resnet.cifar_resnet(8), [])


if __name__ == "__main__":
  tf.test.main()
