"""Top-k errors and score averaging of the three test modes, with hand-made models."""

import numpy as np
import tensorflow as tf

from tf_resnet.training import evaluation


def _mean_model(num_classes: int = 6):
  """Logits = the image's mean value times (0, 1, ..., C-1): a readable fake network."""

  def model(images, *, is_training):
    assert not is_training
    mean = tf.reduce_mean(images, axis=(1, 2, 3))
    return mean[:, None] * tf.range(num_classes, dtype=tf.float32)[None]

  return model


class EvaluatorTest(tf.test.TestCase):

  def test_center_top1_and_top5(self):
    # Class scores grow with the image's mean: a positive image predicts
    # class 5, then 4, 3, 2, 1; a negative one 0, 1, 2, 3, 4.
    images = tf.constant(np.array([1.0, -1.0, 1.0, -1.0])[:, None, None, None]
                         * np.ones([4, 2, 2, 3]), tf.float32)
    labels = tf.constant([5, 0, 0, 5])
    ds = tf.data.Dataset.from_tensors((images, labels))
    result = evaluation.Evaluator(_mean_model(), "center").evaluate(ds)
    # Top-1: right for examples 0 and 1. Top-5: example 2 (label 0 is 6th
    # for a positive image) and example 3 (label 5 is 6th for a negative
    # one) are wrong.
    self.assertEqual((result.top1_error, result.top5_error, result.examples),
                     (0.5, 0.5, 4))

  def test_ten_crop_averages_softmax_scores(self):
    # Ten crops of one example: nine mildly favour class 0 and one strongly
    # favours class 5. Averaging scores (not votes) is what is tested.
    values = np.full([1, 10, 2, 2, 3], -0.1, np.float32)
    values[0, 9] = 3.0
    evaluator = evaluation.Evaluator(_mean_model(), "10crop")
    scores = evaluator.scores(tf.constant(values)).numpy()
    softmax = lambda z: np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    expected = np.mean([softmax(v.mean() * np.arange(6)) for v in values[0]],
                       axis=0)
    self.assertAllClose(scores[0], expected, rtol=1e-5)

  def test_multiscale_averages_over_scales_and_views(self):
    views = (tf.fill([2, 4, 6, 3], 1.0),  # A scale with a mirrored pair.
             tf.fill([2, 8, 12, 3], -2.0))
    evaluator = evaluation.Evaluator(_mean_model(), "multiscale")
    scores = evaluator.scores(views).numpy()
    softmax = lambda z: np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    expected = (softmax(1.0 * np.arange(6)) + softmax(-2.0 * np.arange(6))) / 2
    self.assertAllClose(scores[0], expected, rtol=1e-5)
    ds = tf.data.Dataset.from_tensors((views, tf.constant(0)))
    result = evaluator.evaluate(ds)
    self.assertEqual(result.examples, 1)
    self.assertEqual(result.top1_error, float(np.argmax(expected) != 0))

  def test_max_examples_is_exact(self):
    images = tf.zeros([10, 2, 2, 3])
    ds = tf.data.Dataset.from_tensor_slices((images, tf.zeros([10], tf.int32)))
    result = evaluation.Evaluator(_mean_model(), "center").evaluate(
        ds.batch(4), max_examples=6)
    self.assertEqual(result.examples, 6)

  def test_empty_dataset_is_an_error(self):
    ds = tf.data.Dataset.from_tensors((tf.zeros([1, 2, 2, 3]),
                                       tf.constant([0]))).take(0)
    with self.assertRaisesRegex(ValueError, "empty"):
      evaluation.Evaluator(_mean_model(), "center").evaluate(ds)


if __name__ == "__main__":
  tf.test.main()
