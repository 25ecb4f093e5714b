"""A hook that layers report their calls to, for analyses that look inside a network.

Every layer calls `record(self, kind, outputs, multiply_adds)` when it runs.
Nothing happens unless a `module_calls()` block is collecting: then each call
is kept, in call order, with its module and output tensor. Counting
parameters and multiply-adds (`tf_resnet.analysis.cost`) and measuring layer
responses (`tf_resnet.analysis.responses`) are built on it, so the networks
need no probes of their own.
"""

import contextlib
import dataclasses
import threading
from typing import Iterator

import tensorflow as tf

_local = threading.local()


def record(module: tf.Module, kind: str, outputs: tf.Tensor,
           multiply_adds: int = 0) -> None:
  """Reports a module's call to `module_calls`, if a block is collecting.

  Cheap when no profile is being taken, so layers call it unconditionally. It
  runs in Python, so inside a `tf.function` it records at trace time only.

  Args:
    module: the module that produced `outputs`.
    kind: what the module is, e.g. `conv`.
    outputs: its output, batch first, with a static shape.
    multiply_adds: multiply-adds for one example.
  """
  stack = getattr(_local, "stack", None)
  if not stack:
    return
  stack[-1].append(Call(module, kind, outputs, int(multiply_adds)))


@dataclasses.dataclass(frozen=True)
class Call:
  """One layer call seen by `module_calls`.

  Attributes:
    module: the module called.
    kind: what it is (`conv`, `batch_norm`, ...).
    outputs: what it returned (symbolic while a `tf.function` is traced).
    multiply_adds: multiply-adds for one example.
  """

  module: tf.Module
  kind: str
  outputs: tf.Tensor
  multiply_adds: int

  @property
  def scope(self) -> str:
    return self.module.name_scope.name


@contextlib.contextmanager
def module_calls() -> Iterator[list[Call]]:
  """Collects the layer calls made inside the block, in call order.

  Inside a `tf.function` the calls are seen when it is traced, and their
  `outputs` are that graph's tensors: a traced function can return them, or
  values computed from them (see `tf_resnet.analysis.responses`).
  """
  if not hasattr(_local, "stack"):
    _local.stack = []
  calls: list[Call] = []
  _local.stack.append(calls)
  try:
    yield calls
  finally:
    _local.stack.pop()


def relative_path(scope: str, root: str) -> str:
  """A module's name scope relative to its network's, e.g. `stage_2/block_0/bn_1`."""
  return (scope[len(root):] if scope.startswith(root) else scope).rstrip("/")
