"""The training task: the loss with weight decay, the per-replica step and its metrics.

The step has Model Garden's shape: run per replica inside `strategy.run`,
the cross-entropy summed over the replica's examples and divided by the
*global* batch, gradients all-reduced (summed) across replicas, one update
applied everywhere. Weight decay follows the paper's Caffe convention, the
loss `L + 0.5 * wd * ||w||^2` over the convolution and fully-connected
kernels (not biases, not batch-norm scales and offsets), whose gradient
`wd * w` the optimizer adds in its update rather than in a separate pass.
"""

from typing import Callable, Optional, Sequence

import tensorflow as tf

from tf_resnet.training import optimizer as optimizer_lib

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
_COMPUTE_DTYPES = {"float32": tf.float32, "mixed_float16": tf.float16,
                   "mixed_bfloat16": tf.bfloat16}


def compute_dtype(precision: str) -> tf.DType:
  """The type the network computes in under `precision` (one of PRECISIONS)."""
  if precision not in PRECISIONS:
    raise ValueError(f"`precision` must be one of {PRECISIONS}, not "
                     f"{precision!r}")
  return _COMPUTE_DTYPES[precision]


def decayed_variables(model: tf.Module) -> list[tf.Variable]:
  """The variables weight decay applies to: convolution and linear kernels."""
  return [v for v in model.trainable_variables
          if v.name.rsplit("/", 1)[-1].startswith("kernel")]


def weight_decay_penalty(variables: Sequence[tf.Variable],
                         weight_decay: float) -> tf.Tensor:
  """0.5 * wd * sum of squared weights: the term the decay's gradient comes from."""
  if not variables:
    return tf.constant(0.0)
  return 0.5 * weight_decay * tf.add_n([tf.reduce_sum(tf.square(v))
                                        for v in variables])


def _first_replica_variable(value, dtype, name):
  # Updated identically by every replica inside the step, so any replica's
  # value will do.
  return tf.Variable(value, dtype=dtype, trainable=False, name=name,
                     synchronization=tf.VariableSynchronization.ON_WRITE,
                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)


class DynamicLossScale(tf.Module):
  """Dynamic loss scaling for float16: halve on overflow, double after a run of good steps."""

  def __init__(self, initial_scale: float = 2.0**15, growth_interval: int = 2000,
               name: Optional[str] = None):
    super().__init__(name=name)
    self.growth_interval = growth_interval
    with self.name_scope:
      self.scale = _first_replica_variable(initial_scale, tf.float32, "scale")
      self.good_steps = _first_replica_variable(0, tf.int64, "good_steps")

  def update(self, finite: tf.Tensor) -> None:
    """Adjusts the scale after a step whose gradients were (not) all finite."""
    grow = tf.logical_and(finite, self.good_steps + 1 >= self.growth_interval)
    self.scale.assign(tf.where(grow, self.scale * 2.0,
                               tf.where(finite, self.scale,
                                        tf.maximum(self.scale / 2.0, 1.0))))
    self.good_steps.assign(tf.where(tf.logical_and(finite, tf.logical_not(grow)),
                                    self.good_steps + 1, 0))


class Task:
  """Owns the loss, the per-replica training step and its metrics.

  Build it inside the strategy's scope (the loss scale and the step counter
  are variables).
  """

  def __init__(self,
               model: Callable[..., tf.Tensor],
               optimizer: optimizer_lib.SGDMomentum,
               learning_rate: Callable[[tf.Tensor], tf.Tensor],
               *,
               variables: Sequence[tf.Variable],
               global_batch_size: int,
               precision: str = "float32",
               input_transform: Optional[Callable[..., tf.Tensor]] = None):
    """Constructs the task.

    Args:
      model: called as `model(images, is_training=True)`, returns logits.
      optimizer: applies the all-reduced gradients (and the weight decay).
      learning_rate: the schedule, a function of the global step.
      variables: the trained variables, in the optimizer's order.
      global_batch_size: examples per step over all replicas; the loss of
        each replica is divided by it.
      precision: `float32`, `mixed_float16` (float16 compute, dynamic loss
        scaling) or `mixed_bfloat16`; variables stay float32.
      input_transform: makes the images of a batch whose images part the
        input left unfinished (`pipeline.train_device_transform`: the
        resampling on the accelerator); None when batches hold images.

    Raises:
      ValueError: for an unknown precision.
    """
    self.compute_dtype = compute_dtype(precision)
    self.model = model
    self.optimizer = optimizer
    self.learning_rate = learning_rate
    self.variables = list(variables)
    self.global_batch_size = global_batch_size
    self.input_transform = input_transform
    self.loss_scale = (DynamicLossScale(name="loss_scale")
                       if precision == "mixed_float16" else None)
    self.step = _first_replica_variable(0, tf.int64, "global_step")

  def train_step(self, inputs) -> dict[str, tf.Tensor]:
    """One step on one replica's batch; call inside `strategy.run`.

    `update(prepare(inputs))`.

    Returns:
      This replica's sums, to be summed across replicas: `loss` (the
      cross-entropy summed over its examples), `errors` (top-1 mistakes),
      `examples`, and `nonfinite` (1.0 if its loss was not finite).
    """
    return self.update(self.prepare(inputs))

  def prepare(self, inputs) -> tuple[tf.Tensor, tf.Tensor]:
    """The batch's (images, labels): the input's transform, if any, applied.

    Kept apart from `update` so that XLA can compile the update alone: the
    resampling's `crop_and_resize` has no XLA kernel.
    """
    images, labels = inputs
    if self.input_transform is not None:
      images = self.input_transform(images)
    return images, labels

  def update(self, inputs: tuple[tf.Tensor, tf.Tensor]
             ) -> dict[str, tf.Tensor]:
    """The step on prepared (images, labels): forward, backward, update, sums."""
    images, labels = inputs
    images = tf.cast(images, self.compute_dtype)
    with tf.GradientTape() as tape:
      logits = tf.cast(self.model(images, is_training=True), tf.float32)
      cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels=labels, logits=logits)
      loss = tf.reduce_sum(cross_entropy) / self.global_batch_size
      if self.loss_scale is not None:
        loss *= self.loss_scale.scale
    gradients = tape.gradient(loss, self.variables)
    gradients = tf.distribute.get_replica_context().all_reduce(
        tf.distribute.ReduceOp.SUM, gradients)
    apply = None
    if self.loss_scale is not None:
      gradients = [g / self.loss_scale.scale for g in gradients]
      apply = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g))
                             for g in gradients])
      self.loss_scale.update(apply)
    self.optimizer.apply(gradients, self.learning_rate(self.step),
                         should_apply=apply)
    self.step.assign_add(1)
    total = tf.reduce_sum(cross_entropy)
    errors = tf.reduce_sum(tf.cast(
        tf.not_equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels),
        tf.float32))
    return {"loss": total, "errors": errors,
            "examples": tf.cast(tf.shape(labels)[0], tf.float32),
            "nonfinite": tf.cast(tf.logical_not(tf.math.is_finite(total)),
                                 tf.float32)}
