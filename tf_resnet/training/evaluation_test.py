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


def _asymmetric_model(num_classes: int = 6):
  """Logits = (mean + left half's mean - right half's mean) times (0, ..., C-1).

  A mirror changes the sign of the half-difference, so a view and its mirror
  score differently.
  """

  def model(images, *, is_training):
    assert not is_training
    half = tf.shape(images)[2] // 2
    score = (tf.reduce_mean(images, axis=(1, 2, 3))
             + tf.reduce_mean(images[:, :, :half], axis=(1, 2, 3))
             - tf.reduce_mean(images[:, :, half:], axis=(1, 2, 3)))
    return score[:, None] * tf.range(num_classes, dtype=tf.float32)[None]

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
    # Each scale holds a view and its mirror, which this model scores
    # differently (a mirror negates the logits); the two scales differ in
    # size and in how strongly they vote. Dropping the mirrors, averaging
    # logits instead of softmax scores, or weighting a scale by its size
    # gives another answer.
    small = np.zeros([2, 4, 6, 3], np.float32)
    small[0, :, :3] = 1.0  # Mean 0.5, left 1, right 0: score 1.5.
    small[1] = small[0, :, ::-1]  # Its mirror: 0.5 + 0 - 1 = -0.5.
    large = np.zeros([2, 8, 12, 3], np.float32)
    large[0, :, 6:] = 3.0  # Mean 1.5, left 0, right 3: score -1.5.
    large[1] = large[0, :, ::-1]  # 1.5 + 3 - 0 = 4.5.
    views = (tf.constant(small), tf.constant(large))
    evaluator = evaluation.Evaluator(_asymmetric_model(), "multiscale")
    scores = evaluator.scores(views).numpy()
    softmax = lambda z: np.exp(z - z.max()) / np.exp(z - z.max()).sum()
    c = np.arange(6)
    per_scale = [(softmax(1.5 * c) + softmax(-0.5 * c)) / 2,
                 (softmax(-1.5 * c) + softmax(4.5 * c)) / 2]
    expected = (per_scale[0] + per_scale[1]) / 2
    self.assertAllClose(scores[0], expected, rtol=1e-5)
    ranked = np.argsort(expected)[::-1]
    self.assertEqual(ranked[0], 5)
    ds = tf.data.Dataset.from_tensors((views, tf.constant(ranked[1])))
    result = evaluator.evaluate(ds)
    self.assertEqual((result.examples, result.top1_error, result.top5_error),
                     (1, 1.0, 0.0))

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
