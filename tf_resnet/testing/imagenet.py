"""Tiny ImageNet (ILSVRC2012) archives in the real layout, for TFDS's real builder.

`ILSVRC2012_img_train.tar` holds one tar per synset (`n01440764.tar`, ...)
of `<synset>_<i>.JPEG` files; `ILSVRC2012_img_val.tar` holds
`ILSVRC2012_val_00000001.JPEG`, ... TFDS's `imagenet2012` builder labels
training images by their synset tar and validation images from its own
`validation_labels.txt`, whose lines follow the sorted validation file names:
only the first N validation files get their true labels, so the archive
holds exactly those. Its class list (`labels.txt`, the 1,000 synsets, sorted)
comes with TFDS too, so a few synsets suffice.
"""

import io
import os
import shutil
import tarfile
import tempfile
from typing import Sequence

import numpy as np
import tensorflow as tf

from tf_resnet.data import sources

# The first three ILSVRC2012 synsets in sorted order: labels 0, 1, 2 (tench,
# goldfish, great white shark).
SYNSETS = ("n01440764", "n01443537", "n01484850")
# The 0-based labels of ILSVRC2012_val_00000001 ... 00000005 (sea snake,
# alp, Shetland sheepdog, soup bowl, cradle), as in the ILSVRC2012
# development kit's ground truth.
FIRST_VALIDATION_LABELS = (65, 970, 230, 809, 516)


def textured_pixels(seed: int, height: int, width: int) -> np.ndarray:
  """uint8 [height, width, 3]: smooth noise at several scales, like a photo to JPEG."""
  rng = np.random.RandomState(seed)
  image = np.zeros([height, width, 3], np.float32)
  for cells, weight in ((4, 90.0), (16, 45.0), (64, 20.0)):
    coarse = rng.uniform(-1, 1, [cells, cells, 3]).astype(np.float32)
    image += weight * tf.image.resize(coarse, [height, width]).numpy()
  # Pixel noise makes 500x375 JPEGs about as large as ImageNet's average
  # (about 110 KB: 138 GB of training tar for 1.28M images).
  image += rng.normal(0, 22, image.shape)
  return np.clip(image + 128, 0, 255).astype(np.uint8)


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def write_archives(manual_dir: str, *, synsets: Sequence[str] = SYNSETS,
                   train_per_synset: int = 4, validation: int = 4,
                   size: tuple[int, int] = (48, 64),
                   distinct_images: int = 0) -> str:
  """Writes ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar into `manual_dir`.

  Args:
    manual_dir: TFDS's manual directory, `<data_dir>/downloads/manual`.
    synsets: the training synsets (each must be one of ILSVRC2012's).
    train_per_synset: JPEGs per synset.
    validation: validation JPEGs, the first ones by name.
    size: (height, width) of every image.
    distinct_images: if positive, encode only this many images and reuse
      their bytes (for large archives, where encoding would dominate).

  Returns:
    `manual_dir`.
  """
  os.makedirs(manual_dir, exist_ok=True)
  cache = {}

  def jpeg(seed: int) -> bytes:
    key = seed % distinct_images if distinct_images else seed
    if key not in cache:
      cache[key] = tf.io.encode_jpeg(textured_pixels(key, *size),
                                     quality=90).numpy()
    return cache[key]

  seed = 0
  with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_train.tar"),
                    "w") as outer:
    for synset in synsets:
      inner_bytes = io.BytesIO()
      with tarfile.open(fileobj=inner_bytes, mode="w") as inner:
        for i in range(train_per_synset):
          _add(inner, f"{synset}_{i}.JPEG", jpeg(seed))
          seed += 1
      _add(outer, f"{synset}.tar", inner_bytes.getvalue())
  with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_val.tar"),
                    "w") as val:
    for i in range(1, validation + 1):
      _add(val, f"ILSVRC2012_val_{i:08d}.JPEG", jpeg(seed))
      seed += 1
  return manual_dir


class TinyImageNetTestCase(tf.test.TestCase):
  """A test case with TFDS's imagenet2012 prepared once from `write_archives`.

  `cls.data_dir` is TFDS's data directory and `cls.source` the parsed
  `imagenet2012` source.
  """

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.data_dir = tempfile.mkdtemp()
    write_archives(os.path.join(cls.data_dir, "downloads", "manual"))
    cls.source = sources.parse("imagenet2012", data_dir=cls.data_dir)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.data_dir, ignore_errors=True)
    super().tearDownClass()
