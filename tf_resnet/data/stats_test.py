"""The mean image and RGB principal components, against data with known statistics."""

import os

import numpy as np
import tensorflow as tf

from tf_resnet.data import sources
from tf_resnet.data import stats


def _source(images: np.ndarray, family: str = "cifar") -> sources.IndexedSource:
  labels = np.zeros(len(images), np.int32)
  return sources.IndexedSource("test", family, ["only"],
                               items={"train": images, "test": images[:1]},
                               labels={"train": labels, "test": labels[:1]},
                               encoded=False)


class StatisticsTest(tf.test.TestCase):

  def test_mean_image_is_the_per_pixel_mean(self):
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, [50, 32, 32, 3]).astype(np.uint8)
    result = stats.compute(_source(images), batch_size=7)
    self.assertEqual(result.num_images, 50)
    self.assertAllClose(result.mean_image, images.mean(axis=0), atol=1e-4)

  def test_max_images_bounds_the_pass(self):
    images = np.arange(10, dtype=np.uint8)[:, None, None, None] * np.ones(
        [10, 32, 32, 3], np.uint8)
    result = stats.compute(_source(images), max_images=4)
    self.assertEqual(result.num_images, 4)
    # Evenly spaced: images 0, 3, 6 and 9.
    self.assertAllClose(result.mean_image, np.full([32, 32, 3], 4.5))

  def test_principal_components_of_known_colours(self):
    # Half the images are one colour, half another: all the RGB variance lies
    # along their difference, with variance (|d| / 2)^2 on the [0, 1] scale.
    a, b = np.array([200, 40, 10]), np.array([100, 90, 60])
    images = np.stack([np.broadcast_to(c, [32, 32, 3]) for c in [a, b] * 10])
    result = stats.compute(_source(images.astype(np.uint8)))
    d = (a - b) / 255.0
    self.assertAllClose(result.eigenvalues, [(d @ d) / 4, 0.0, 0.0],
                        atol=1e-6)
    top = result.eigenvectors[:, 0]
    self.assertAllClose(abs(top @ d) / np.linalg.norm(d), 1.0, atol=1e-5)
    self.assertAllClose(result.eigenvectors.T @ result.eigenvectors,
                        np.eye(3), atol=1e-5)
    self.assertEqual(result.pca_source, "data")

  def test_imagenet_components_are_a_natural_image_pca(self):
    # What any PCA of natural images' RGB values finds, whoever computed it:
    # orthonormal components, the first (by far the largest) the brightness
    # direction (1, 1, 1) / sqrt(3), the others colour contrasts that sum to
    # about zero. Reading the published table's rows as the components (the
    # table holds them as columns) breaks all but the first property.
    images = np.zeros([3, 240, 320, 3], np.uint8)
    result = stats.compute(_source(images, family="imagenet"), pca="imagenet")
    self.assertEqual(result.mean_image.shape, (224, 224, 3))
    self.assertEqual(result.pca_source, "imagenet")
    values, vectors = result.eigenvalues, result.eigenvectors
    self.assertAllClose(vectors.T @ vectors, np.eye(3), atol=2e-3)
    self.assertAllEqual(np.argsort(values)[::-1], [0, 1, 2])
    self.assertGreater(values[0], 5 * values[1])
    brightness = np.ones(3) / np.sqrt(3)
    self.assertGreater(abs(vectors[:, 0] @ brightness), 0.999)
    for column in (1, 2):
      self.assertLess(abs(vectors[:, column] @ brightness), 0.05)

  def test_save_and_load(self):
    images = np.random.RandomState(1).randint(0, 256, [5, 32, 32, 3])
    result = stats.compute(_source(images.astype(np.uint8)))
    path = os.path.join(self.get_temp_dir(), "stats.json")
    result.save(path)
    loaded = stats.Statistics.load(path)
    self.assertAllClose(loaded.mean_image, result.mean_image)
    self.assertAllClose(loaded.eigenvectors, result.eigenvectors)
    self.assertEqual(loaded.num_images, 5)


if __name__ == "__main__":
  tf.test.main()
