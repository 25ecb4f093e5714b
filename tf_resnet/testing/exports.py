"""Tiny SavedModel exports for the export and serving tests."""

import tempfile
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tf_resnet.exporting import serving_module
from tf_resnet.exporting import writer
from tf_resnet.model import resnet

DIGIT_LABELS = tuple(f"digit_{i}" for i in range(10))


def tiny_export(base: Optional[str] = None, *, seed: int = 1,
                labels: Sequence[str] = DIGIT_LABELS, top_k: int = 3,
                mean: float = 100.0, serving_default: str = "classify") -> str:
  """Exports a CIFAR-family ResNet-8 as a new version under `base`.

  The network sees one training batch first, so its batch-norm statistics
  are not the initial ones and different seeds give different outputs.

  Args:
    base: the model's base path (a new temporary directory if None).
    seed: fixes the weights.
    labels: the 10 class names.
    top_k: the export's top-k outputs.
    mean: the constant of the mean image.
    serving_default: `classify` or `predict` (ServingModule's option).

  Returns:
    The version directory written.
  """
  base = base or tempfile.mkdtemp()
  tf.random.set_seed(seed)
  net = resnet.cifar_resnet(8)
  net(tf.random.normal([8, 32, 32, 3], stddev=50.0), is_training=True)
  module = serving_module.for_run(net, "cifar", np.full([32, 32, 3], mean),
                                  list(labels), top_k=top_k,
                                  serving_default=serving_default)
  return writer.write(module, base)
