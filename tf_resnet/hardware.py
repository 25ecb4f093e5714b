"""Whether this machine's TensorFlow runs a compute type on its fast kernels.

TensorFlow's x86 build sends a CPU op to oneDNN only for the types oneDNN
supports on the running CPU. For bfloat16 (and float16) that means AVX-512
or AVX-NE-CONVERT (`IsBF16SupportedByOneDNNOnThisCPU` in TensorFlow's
`mkl_graph_util`); without them every bfloat16 convolution runs on Eigen's
reference kernels. Measured on a 2-core AMD EPYC with AVX2 only
(2026-12-02, CIFAR ResNet-20, batch 128, `benchmarks/train_throughput.py
--profile_dir`): float32 trained at 302 images/s with every convolution in
oneDNN, mixed_bfloat16 at 23, no op in oneDNN, the backward convolutions 27x
slower than float32's. Mixed precision pays only where this says yes (or on
a GPU); the binaries warn otherwise.
"""

from typing import Optional

import tensorflow as tf


def onednn_supports(dtype: tf.DType) -> Optional[bool]:
  """Whether TensorFlow's oneDNN kernels take `dtype` on this CPU.

  Returns:
    True or False as TensorFlow decides it, or None when this TensorFlow
    build does not say (no oneDNN, or its private query moved).
  """
  try:
    # pylint: disable-next=g-import-not-at-top
    from tensorflow.python.util import _pywrap_utils
    query = _pywrap_utils.IsDataTypeSupportedByOneDNNOnThisCPU
  except (ImportError, AttributeError):
    return None
  return bool(query(dtype))


def slow_compute_warning(dtype: tf.DType, what: str) -> Optional[str]:
  """A warning when `dtype` would run on slow reference kernels here.

  Args:
    dtype: the compute type (float32 never warns).
    what: what the user asked for, named in the message (`--precision=...`).

  Returns:
    The message, or None when there is a GPU, `dtype` is float32, or
    oneDNN takes `dtype` on this CPU (or cannot say).
  """
  if dtype == tf.float32 or tf.config.list_physical_devices("GPU"):
    return None
  if onednn_supports(dtype) is not False:
    return None
  return (f"{what}: this CPU has no {dtype.name} support in TensorFlow's "
          "oneDNN kernels (it needs AVX-512 or AVX-NE-CONVERT), so the "
          "network runs on TensorFlow's reference kernels, many times slower "
          "than float32 (ResNet-20 training: 23 against 302 images/s on an "
          "AVX2 AMD EPYC). float32 is the fast choice on this machine.")
