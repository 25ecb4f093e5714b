"""The embedded data set: scikit-learn's handwritten digits, no network needed."""

import numpy as np
import tensorflow as tf

from tf_resnet.data import base


def digits_source(holdout: int = 0) -> base.IndexedSource:
  """scikit-learn's handwritten digits (UCI), embedded in its wheel.

  1,797 real 8x8 grayscale images of the digits 0-9 with 17 grey levels,
  scaled to 0-255, resized to the CIFAR family's 32x32 and repeated to RGB.
  Every fifth image (360, from the first) is the test split, the rest
  (1,437) train.

  Args:
    holdout: training examples to hold out as the `holdout` split.

  Returns:
    The source (CIFAR family, 10 classes).
  """
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  images = digits.images[..., None] * (255.0 / 16.0)
  images = tf.image.resize(images, [32, 32], method="bilinear")
  images = np.round(np.repeat(images.numpy(), 3, axis=-1)).clip(0, 255)
  images = images.astype(np.uint8)
  is_test = np.arange(len(images)) % 5 == 0
  return base.IndexedSource(
      "digits", "cifar", [str(d) for d in range(10)],
      items={"train": images[~is_test], "test": images[is_test]},
      labels={"train": digits.target[~is_test], "test": digits.target[is_test]},
      encoded=False, holdout=holdout)
