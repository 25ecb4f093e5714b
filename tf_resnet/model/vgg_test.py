"""Tests of VGG-19 against its published size and cost."""

import numpy as np
import tensorflow as tf

from tf_resnet.analysis import cost
from tf_resnet.analysis import paper
from tf_resnet.model import vgg


class VGG19Test(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.net = vgg.vgg19()

  def test_original_has_the_published_parameter_count(self):
    # 143,667,240: VGG-19 with biases and no batch normalization, as
    # published with the original weights (and by torchvision).
    self.assertEqual(cost.count_params(vgg.vgg19(batch_norm=False)),
                     143_667_240)

  def test_batch_norm_replaces_biases(self):
    conv_channels = 2 * 64 + 2 * 128 + 4 * 256 + 8 * 512
    # Each convolution loses its bias and gains a scale and an offset.
    self.assertEqual(cost.count_params(self.net),
                     143_667_240 + conv_channels)

  def test_multiply_adds_match_fig_3(self):
    prof = cost.profile(self.net, (224, 224, 3))
    self.assertTrue(paper.agrees(prof.multiply_adds, 19.6e9),
                    prof.multiply_adds)
    self.assertEqual(self.net.depth, 19)

  def test_eager_equals_function_at_224(self):
    images = tf.random.normal([1, 224, 224, 3])
    forward = tf.function(lambda x: self.net(x, is_training=False))
    eager = self.net(images, is_training=False)
    self.assertEqual(eager.shape, [1, 1000])
    self.assertLess(np.linalg.norm(forward(images) - eager),
                    1e-5 * np.linalg.norm(eager))

  def test_larger_images_average_the_dense_score_map(self):
    images = tf.random.normal([1, 256, 288, 3])
    features = self.net.features(images, is_training=False)
    self.assertEqual(features.shape, [1, 8, 9, 512])
    head = self.net.head
    # fc6 as a 7x7 convolution at each of the 2x3 valid positions, equal to
    # the fully-connected layer applied to each 7x7 window.
    windows = [tf.reshape(features[:, i:i + 7, j:j + 7, :], [1, -1])
               for i in range(2) for j in range(3)]
    fc6 = tf.reshape(head.fc6.kernel, [-1, 4096])
    scores = []
    for w in windows:
      h = tf.nn.relu(w @ fc6 + head.fc6.bias)
      h = tf.nn.relu(h @ tf.reshape(head.fc7.kernel, [4096, 4096])
                     + head.fc7.bias)
      scores.append(h @ tf.reshape(head.fc8.kernel, [4096, 1000])
                    + head.fc8.bias)
    expected = tf.reduce_mean(tf.stack(scores), axis=0)
    actual = self.net(images, is_training=False)
    self.assertLess(np.linalg.norm(actual - expected),
                    1e-5 * np.linalg.norm(expected))


if __name__ == "__main__":
  tf.test.main()
