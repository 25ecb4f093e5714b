"""Training-set statistics: the per-pixel mean image and the RGB principal components.

The paper subtracts the per-pixel mean (sections 3.4 and 4.2) and, on
ImageNet, uses Krizhevsky et al.'s colour augmentation along the principal
components of the RGB values. Both come from the training data: one
streaming pass over a bounded number of test-style views (the centre crop on
ImageNet, the image itself on CIFAR), stored with the run as JSON and reused
by evaluation and export.
"""

import dataclasses
import json
from typing import Optional

import numpy as np
import tensorflow as tf

from tf_resnet import families
from tf_resnet.data import sources
from tf_resnet.data import transforms

# The RGB principal components of ImageNet's training pixels on the [0, 1]
# scale: eigenvalues, and eigenvectors as columns. These are fb.resnet.torch's
# numbers (facebook/fb.resnet.torch, datasets/imagenet.lua, `pca`; applied by
# `Lighting` in datasets/transforms.lua, which scales column j by alpha_j *
# eigval_j), the Torch reproduction of this paper. They are not AlexNet's:
# Krizhevsky et al. (2012) describe the PCA lighting noise but never
# published their eigenvalues or eigenvectors. Neither did He et al.; use
# `pca="data"` to compute them from the training set instead.
IMAGENET_EIGENVALUES = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGENVECTORS = ((-0.5675, 0.7192, 0.4009),
                         (-0.5808, -0.0045, -0.8140),
                         (-0.5836, -0.6948, 0.4203))


@dataclasses.dataclass(frozen=True)
class Statistics:
  """What preprocessing needs to know of the training data.

  Attributes:
    mean_image: float32 [S, S, 3], the per-pixel mean on the [0, 255] scale
      at the family's crop size S (224 or 32).
    eigenvalues: float32 [3], of the RGB covariance on the [0, 1] scale,
      in decreasing order.
    eigenvectors: float32 [3, 3], the matching eigenvectors as columns.
    num_images: how many training images the mean was computed from.
    pca_source: `imagenet` (fb.resnet.torch's ImageNet values) or `data`.
  """

  mean_image: np.ndarray
  eigenvalues: np.ndarray
  eigenvectors: np.ndarray
  num_images: int
  pca_source: str

  def to_json(self) -> str:
    return json.dumps({
        "mean_image": np.asarray(self.mean_image).tolist(),
        "eigenvalues": np.asarray(self.eigenvalues).tolist(),
        "eigenvectors": np.asarray(self.eigenvectors).tolist(),
        "num_images": self.num_images,
        "pca_source": self.pca_source,
    })

  @classmethod
  def from_json(cls, text: str) -> "Statistics":
    d = json.loads(text)
    return cls(mean_image=np.asarray(d["mean_image"], np.float32),
               eigenvalues=np.asarray(d["eigenvalues"], np.float32),
               eigenvectors=np.asarray(d["eigenvectors"], np.float32),
               num_images=int(d["num_images"]), pca_source=d["pca_source"])

  def save(self, path: str) -> None:
    """Writes the statistics atomically (a temporary file renamed into place)."""
    tmp = path + ".tmp"
    with tf.io.gfile.GFile(tmp, "w") as f:
      f.write(self.to_json())
    tf.io.gfile.rename(tmp, path, overwrite=True)

  @classmethod
  def load(cls, path: str) -> "Statistics":
    with tf.io.gfile.GFile(path) as f:
      return cls.from_json(f.read())


def _view_fn(source: sources.Source):
  """The family's single test view without a mean: what the mean is of."""
  size = families.get(source.family).input_size
  zeros = tf.zeros([size, size, 3])
  return lambda x: transforms.single_view(x, zeros, source.family,
                                          encoded=source.encoded)


def _views(source: sources.Source, max_images: int) -> tf.data.Dataset:
  if source.indexed:
    n = source.num_examples("train")
    count = min(n, max_images)
    # Evenly spaced over the split, so sorted folders give every class.
    indices = np.linspace(0, n - 1, count).round().astype(np.int64)
    ds = tf.data.Dataset.from_tensor_slices(indices).map(
        lambda i: source.load("train", i)[0])
  else:
    ds = source.stream("train").map(
        lambda x, y: x).take(max_images)
  return ds.map(_view_fn(source), num_parallel_calls=tf.data.AUTOTUNE)


def compute(source: sources.Source, max_images: int = 10_000,
            pca: Optional[str] = None, batch_size: int = 64) -> Statistics:
  """Computes the statistics from a source's training split.

  Args:
    source: the data.
    max_images: bound on the images read (evenly spaced over the split).
    pca: `imagenet` for fb.resnet.torch's ImageNet components, `data` to
      compute them; default `imagenet` for TFDS's ImageNet, `data` otherwise.
    batch_size: images per accumulation step.

  Returns:
    The statistics.
  """
  if pca is None:
    pca = "imagenet" if source.name == "imagenet2012" else "data"
  if pca not in ("imagenet", "data"):
    raise ValueError(f"`pca` must be 'imagenet' or 'data', not {pca!r}")
  total, moments, count, pixels = None, np.zeros([3, 3]), 0, 0
  rgb_sum = np.zeros(3)
  for batch in _views(source, max_images).batch(batch_size).as_numpy_iterator():
    batch = batch.astype(np.float64)
    total = batch.sum(axis=0) if total is None else total + batch.sum(axis=0)
    count += len(batch)
    rgb = batch.reshape(-1, 3) / 255.0
    rgb_sum += rgb.sum(axis=0)
    moments += rgb.T @ rgb
    pixels += len(rgb)
  if not count:
    raise sources.DataError(f"{source.name} has no training images")
  mean_image = (total / count).astype(np.float32)
  if pca == "imagenet":
    eigenvalues = np.asarray(IMAGENET_EIGENVALUES, np.float32)
    eigenvectors = np.asarray(IMAGENET_EIGENVECTORS, np.float32)
  else:
    mean_rgb = rgb_sum / pixels
    covariance = moments / pixels - np.outer(mean_rgb, mean_rgb)
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1]
    eigenvalues = values[order].clip(min=0).astype(np.float32)
    eigenvectors = vectors[:, order].astype(np.float32)
  return Statistics(mean_image, eigenvalues, eigenvectors, count, pca)
