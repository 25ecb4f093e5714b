"""Top-1 and top-5 error in the paper's three test modes.

* `center`: one view per image (ImageNet: the 224x224 centre crop of the
  256-resized image; CIFAR: the image itself).
* `10crop`: the softmax scores of the ten crops, averaged.
* `multiscale`: the fully-convolutional network on the whole image at each
  scale; within a view the logits are averaged over positions (the network's
  global average pool), then the softmax scores are averaged over scales
  (and mirrored views).
"""

import dataclasses
from typing import Callable, Optional

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class EvalResult:
  """Errors over a split, as fractions."""

  top1_error: float
  top5_error: float
  examples: int

  def to_json(self) -> dict:
    return dataclasses.asdict(self)


def _errors(scores: tf.Tensor, labels: tf.Tensor) -> tuple[int, int]:
  k = min(5, scores.shape[-1])
  top5 = tf.math.top_k(scores, k=k).indices
  labels = tf.cast(labels, tf.int32)[:, None]
  top1_errors = tf.reduce_sum(tf.cast(top5[:, 0:1] != labels, tf.int32))
  top5_errors = tf.reduce_sum(tf.cast(
      tf.logical_not(tf.reduce_any(top5 == labels, axis=-1)), tf.int32))
  return int(top1_errors), int(top5_errors)


class Evaluator:
  """Scores a model on an evaluation dataset from `pipeline.eval_dataset`."""

  def __init__(self, model: Callable[..., tf.Tensor], mode: str,
               compute_dtype: tf.DType = tf.float32):
    self.mode = mode
    self._dtype = compute_dtype

    def probabilities(images):
      logits = model(tf.cast(images, compute_dtype), is_training=False)
      return tf.nn.softmax(tf.cast(logits, tf.float32))

    # Multi-scale views change size with every image: one trace per shape
    # would never end, so that mode traces once with unknown sizes.
    signature = ([tf.TensorSpec([None, None, None, 3], tf.float32)]
                 if mode == "multiscale" else None)
    self._probabilities = tf.function(probabilities,
                                      input_signature=signature)

  def scores(self, views) -> tf.Tensor:
    """Averaged softmax scores for one batch of views (or one multiscale example)."""
    if self.mode == "center":
      return self._probabilities(views)
    if self.mode == "10crop":
      batch, crops = tf.shape(views)[0], tf.shape(views)[1]
      flat = tf.reshape(views, tf.concat([[batch * crops],
                                          tf.shape(views)[2:]], 0))
      probs = self._probabilities(flat)
      return tf.reduce_mean(tf.reshape(probs, [batch, crops, -1]), axis=1)
    per_scale = [tf.reduce_mean(self._probabilities(v), axis=0)
                 for v in views]
    return tf.reduce_mean(tf.stack(per_scale), axis=0)[None]

  def evaluate(self, dataset: tf.data.Dataset,
               max_examples: Optional[int] = None) -> EvalResult:
    """Top-1 and top-5 error over a dataset (or its first `max_examples`)."""
    top1 = top5 = count = 0
    for views, labels in dataset:
      if self.mode == "multiscale":
        labels = tf.reshape(labels, [1])
      elif max_examples is not None and count + len(labels) > max_examples:
        views, labels = (views[:max_examples - count],
                         labels[:max_examples - count])
      e1, e5 = _errors(self.scores(views), labels)
      top1, top5, count = top1 + e1, top5 + e5, count + int(labels.shape[0])
      if max_examples is not None and count >= max_examples:
        break
    if not count:
      raise ValueError("the evaluation dataset is empty")
    return EvalResult(top1 / count, top5 / count, count)

