"""Where the time of a traced training step went: TensorFlow profiler traces summarized."""

import collections
import os
import re

import tensorflow as tf

# A TensorFlow op's event on the profiler's host plane: "scope/name:Type"
# (oneDNN's kernels have types "_MklNative...": they say which kernel ran).
_OP_EVENT = re.compile(r"^([^\s:]+):([A-Za-z_]\w*)$")


def _part(scope: str, op_type: str) -> str:
  """Which part of the step an op belongs to."""
  if "/sgd/" in f"/{scope}/":
    return "optimizer update"
  if "Conv2DBackprop" in op_type:
    return "convolution backward"
  if "Conv2D" in op_type:
    return "convolution forward"
  if "FusedBatchNormGrad" in op_type:
    return "batch norm backward"
  if "FusedBatchNorm" in op_type:
    return "batch norm forward"
  if "/shortcut/" in scope:
    return "identity shortcuts (slice, pad, gradients)"
  if "/bn" in scope:
    return "batch norm moving averages"
  if "Relu" in op_type:
    return "ReLU and its gradient"
  return "other"


def profile_summary(logdir: str) -> tuple[dict[str, float], dict[str, float]]:
  """Milliseconds by op type and by part of the step in a profiler trace.

  Reads the newest XSpace (`*.xplane.pb`, the profiler's output) under
  `logdir` with TensorFlow's own protos, and sums the durations of the op
  events on the host plane. Ops on TensorFlow's two inter-op threads can
  overlap, so the sum can exceed the wall time.

  Returns:
    Milliseconds by op type and by part (see `_part`), largest first.
  """
  # pylint: disable-next=g-import-not-at-top
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  paths = tf.io.gfile.glob(os.path.join(logdir, "plugins", "profile", "*",
                                        "*.xplane.pb"))
  by_type, by_part = collections.Counter(), collections.Counter()
  if not paths:
    return {}, {}
  space = xplane_pb2.XSpace()
  with tf.io.gfile.GFile(max(paths), "rb") as f:
    space.ParseFromString(f.read())
  for plane in space.planes:
    if not plane.name.startswith("/host:CPU"):
      continue
    for line in plane.lines:
      for event in line.events:
        match = _OP_EVENT.match(plane.event_metadata[event.metadata_id].name)
        if match:
          ms = event.duration_ps / 1e9
          by_type[match.group(2)] += ms
          by_part[_part(match.group(1), match.group(2))] += ms
  return ({k: round(v, 1) for k, v in by_type.most_common()},
          {k: round(v, 1) for k, v in by_part.most_common()})


def onednn_share(by_type: dict[str, float], kind: str = "Conv2D") -> float:
  """The fraction of the time in ops whose type contains `kind` that ran in
  oneDNN's kernels (types `_MklNative...`, `_MklFused...`): 1.0 when every
  convolution reached oneDNN, 0.0 when all fell back to Eigen."""
  total = sum(ms for name, ms in by_type.items() if kind in name)
  in_onednn = sum(ms for name, ms in by_type.items()
                  if kind in name and name.startswith("_Mkl"))
  return round(in_onednn / total, 3) if total else 0.0
