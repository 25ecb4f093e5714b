"""Counting a network's parameters and multiply-adds from its own modules.

The paper's "FLOPs" (Table 1, Fig. 3) are multiply-adds of the convolutional
and fully-connected layers for one 224x224 image. Rather than keeping a table
of layer shapes beside the networks, every weight layer reports its own cost
when it is called (`tf_resnet.model.hooks`): the network is traced once
(symbolically, with no arithmetic) on a batch of one, and each layer records
the shape it produced and the multiply-adds it needed. Batch normalization,
ReLU, pooling and shortcut additions are not counted, as in the paper.
"""

import dataclasses
from typing import Sequence

import numpy as np
import tensorflow as tf

from tf_resnet.model import hooks


@dataclasses.dataclass(frozen=True)
class Record:
  """What one module did during a profiled call.

  Attributes:
    path: the module's name scope relative to the profiled network, e.g.
      `stage_2/block_0/conv_1`.
    kind: what the module is (`conv`, `linear`, `stage`, `stem`, ...).
    output_shape: the shape of its output for one example (no batch axis).
    multiply_adds: multiply-adds it needed for one example.
  """

  path: str
  kind: str
  output_shape: tuple[int, ...]
  multiply_adds: int


@dataclasses.dataclass(frozen=True)
class Profile:
  """Parameters and multiply-adds of a network for one input size.

  Attributes:
    params: number of trainable parameters (batch-norm moving statistics are
      not parameters).
    multiply_adds: multiply-adds of all convolutional and linear layers for one
      example.
    records: every recorded module call, in call order.
  """

  params: int
  multiply_adds: int
  records: tuple[Record, ...]

  def multiply_adds_under(self, path: str) -> int:
    """Multiply-adds of the layers inside the module at `path`."""
    prefix = path.rstrip("/") + "/"
    return sum(r.multiply_adds for r in self.records
               if r.path.startswith(prefix) or r.path == path)

  def find(self, kind: str) -> list[Record]:
    """The records of the given kind, in call order."""
    return [r for r in self.records if r.kind == kind]


def count_params(module: tf.Module) -> int:
  """Number of trainable parameters of `module`."""
  return sum(int(np.prod(v.shape)) for v in module.trainable_variables)


def profile(network: tf.Module, input_shape: Sequence[int]) -> Profile:
  """Counts a network's parameters and multiply-adds for one input size.

  Args:
    network: a module called as `network(images, is_training=False)`.
    input_shape: the shape of one image, `(height, width, channels)`.

  Returns:
    The network's `Profile`.
  """
  spec = tf.TensorSpec((1, *input_shape), tf.float32)
  forward = tf.function(lambda x: network(x, is_training=False),
                        autograph=False)
  with hooks.module_calls() as calls:
    forward.get_concrete_function(spec)
  root = network.name_scope.name
  records = tuple(
      Record(path=hooks.relative_path(call.scope, root), kind=call.kind,
             output_shape=tuple(call.outputs.shape[1:].as_list()),
             multiply_adds=call.multiply_adds)
      for call in calls)
  return Profile(params=count_params(network),
                 multiply_adds=sum(r.multiply_adds for r in records),
                 records=records)
