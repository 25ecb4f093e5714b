"""`parse`: the embedded digits, synthetic data, unknown names."""

from sklearn import datasets
import tensorflow as tf

from tf_resnet.data import sources


class EmbeddedAndSyntheticTest(tf.test.TestCase):

  def test_digits(self):
    source = sources.parse("digits")
    self.assertEqual((source.family, source.num_classes), ("cifar", 10))
    self.assertEqual((source.num_examples("train"),
                      source.num_examples("test")), (1437, 360))
    image, label = source.load("test", tf.constant(0))
    self.assertEqual((image.shape, image.dtype), ((32, 32, 3), tf.uint8))
    self.assertEqual(int(label), 0)  # The first digit of the set is a 0.
    self.assertAllEqual(image[..., 0], image[..., 1])  # Gray, as RGB.
    # The first image of scikit-learn's set, 0-16 grey levels scaled to
    # 0-255; bilinear resizing keeps its mean brightness.
    original = datasets.load_digits().images[0] * 255.0 / 16.0
    self.assertAllClose(tf.reduce_mean(tf.cast(image, tf.float32)),
                        original.mean(), rtol=0.05)

  def test_synthetic_is_deterministic_per_index(self):
    source = sources.parse("synthetic", family="imagenet")
    a, label_a = source.load("train", tf.constant(5, tf.int64))
    b, label_b = source.load("train", tf.constant(5, tf.int64))
    c, _ = source.load("train", tf.constant(6, tf.int64))
    self.assertEqual(a.shape, [224, 224, 3])
    self.assertAllEqual(a, b)
    self.assertEqual(int(label_a), int(label_b))
    self.assertNotAllEqual(a, c)
    self.assertBetween(int(label_a), 0, 999)

  def test_unknown_dataset_lists_the_choices(self):
    with self.assertRaisesRegex(ValueError, "unknown data set 'mnist'.*"
                                "folder:PATH.*digits"):
      sources.parse("mnist")
    with self.assertRaisesRegex(ValueError, "cifar-family data set"):
      sources.parse("digits", family="imagenet")


if __name__ == "__main__":
  tf.test.main()
