"""Layer responses of a trained network, the analysis of the paper's Fig. 7.

Section 4.2: "the responses are the outputs of each 3x3 layer, after BN and
before other nonlinearity (ReLU/addition)", and their standard deviations show
residual functions to be generally closer to zero than the plain nets' layers.
Here the standard deviation of a layer's response is taken over every element
of its output (images, positions and channels) for a set of images, with the
network in inference mode. The batch-norm outputs are collected through
`hooks.module_calls`, so the networks need no probes of their own.
"""

import dataclasses
from typing import Iterable, Union

import numpy as np
import tensorflow as tf

from tf_resnet.model import hooks


@dataclasses.dataclass(frozen=True)
class LayerResponse:
  """The response of one 3x3 layer.

  Attributes:
    index: the layer's position among the network's 3x3 layers, from 1, in
      forward order (the x axis of Fig. 7, top).
    path: the batch normalization's scope relative to the network, e.g.
      `stage_1/block_0/bn_1`.
    std: the standard deviation of the batch normalization's output.
    examples: how many images it was measured on.
    kernel_norm: the L2 norm of the convolution's kernel. Batch
      normalization makes the response independent of it, but the step SGD
      takes relative to the weights shrinks as it grows (He initialisation
      gives about sqrt(2 * output channels)).
  """

  index: int
  path: str
  std: float
  examples: int
  kernel_norm: float = float("nan")


def _responses_of_3x3_layers(
    calls: list[hooks.Call]) -> list[tuple[tf.Module, hooks.Call]]:
  """(convolution, its batch normalization's call) of each 3x3 layer, in order."""
  selected, last_conv = [], None
  for call in calls:
    if call.kind == "conv":
      last_conv = call.module
    elif call.kind == "batch_norm":
      if last_conv is not None and getattr(last_conv, "kernel_size", 0) == 3:
        selected.append((last_conv, call))
      last_conv = None
  return selected


Batch = Union[tf.Tensor, tuple]


def layer_response_stds(network: tf.Module,
                        batches: Iterable[Batch]) -> list[LayerResponse]:
  """Standard deviations of every 3x3 layer's batch-normalized output.

  Args:
    network: a network called as `network(images, is_training=False)`.
    batches: batches of images, or of `(images, labels)` as the evaluation
      pipeline gives them.

  Returns:
    One `LayerResponse` per 3x3 layer, in forward order.

  Raises:
    ValueError: if there are no images, or the network has no 3x3 layer
      followed by batch normalization.
  """
  root = network.name_scope.name
  paths: list[str] = []
  kernels: list[tf.Variable] = []

  @tf.function(autograph=False, reduce_retracing=True)
  def moments(images):
    with hooks.module_calls() as calls:
      network(images, is_training=False)
    pairs = _responses_of_3x3_layers(calls)
    layers = [call for _, call in pairs]
    kernels[:] = [conv.kernel for conv, _ in pairs]
    paths[:] = [hooks.relative_path(c.scope, root) for c in layers]
    # Count, sum and sum of squares per layer, in float64 so that a pass over
    # many batches loses nothing to rounding.
    return tf.stack([tf.stack([
        tf.cast(tf.size(c.outputs), tf.float64),
        tf.reduce_sum(tf.cast(c.outputs, tf.float64)),
        tf.reduce_sum(tf.square(tf.cast(c.outputs, tf.float64)))])
                     for c in layers]) if layers else tf.zeros([0, 3],
                                                               tf.float64)

  totals, examples = None, 0
  for batch in batches:
    images = batch[0] if isinstance(batch, (tuple, list)) else batch
    sums = moments(images).numpy()
    totals = sums if totals is None else totals + sums
    examples += int(images.shape[0])
  if totals is None:
    raise ValueError("no images to measure the responses on")
  if not len(totals):
    raise ValueError(f"{root} has no 3x3 convolution followed by batch "
                     "normalization")
  count, total, squares = totals[:, 0], totals[:, 1], totals[:, 2]
  mean = total / count
  std = np.sqrt(np.maximum(squares / count - mean**2, 0.0))
  return [LayerResponse(index=i + 1, path=path, std=float(s),
                        examples=examples,
                        kernel_norm=float(np.linalg.norm(kernel.numpy())))
          for i, (path, s, kernel) in enumerate(zip(paths, std, kernels))]
