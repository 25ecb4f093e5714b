"""Image folders: mixed formats, bad files skipped or refused, family, holdout."""

import os
import tempfile

import tensorflow as tf

from tf_resnet.data import base
from tf_resnet.data import folders
from tf_resnet.data import transforms
from tf_resnet.testing import images

_put = images.write_file
_jpeg = images.solid_jpeg
_png = images.solid_png


class FolderTest(tf.test.TestCase):

  def _tree(self, size: int = 32) -> str:
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    _put(f"{root}/train/cat/1.jpg", _jpeg(10, size))
    _put(f"{root}/train/cat/2.PNG", _png(20, size, channels=1))  # Gray.
    _put(f"{root}/train/cat/notes.txt", b"not an image")
    _put(f"{root}/train/dog/1.png", _png(30, size, channels=4))  # RGBA.
    _put(f"{root}/train/dog/broken.jpg", _jpeg(40, size)[:200])  # Truncated.
    _put(f"{root}/train/dog/fake.jpg", b"GIF89a not really a jpeg")
    _put(f"{root}/train/dog/.DS_Store", b"\0\0")
    os.makedirs(f"{root}/train/emu")  # An empty class.
    _put(f"{root}/val/dog/3.jpeg", _jpeg(50, size))
    return root

  def test_reads_mixed_formats_and_skips_bad_files(self):
    root = self._tree()
    with self.assertLogs(level="WARNING") as logs:
      source = folders.folder_source(root)
    self.assertEqual(source.class_names, ("cat", "dog", "emu"))
    self.assertEqual(source.family, "cifar")
    self.assertEqual(source.num_examples("train"), 3)
    self.assertEqual(source.num_examples("test"), 1)
    self.assertAllEqual(source.labels("train"), [0, 0, 1])
    self.assertAllEqual(source.labels("test"), [1])
    text = "\n".join(logs.output)
    self.assertIn("Skipped 3 bad file(s)", text)
    for name, why in (("broken.jpg", "truncated JPEG"),
                      ("fake.jpg", "not a JPEG or PNG"),
                      ("notes.txt", "not an image file name")):
      self.assertIn(name, text)
      self.assertIn(why, text)
    self.assertNotIn(".DS_Store", text)
    self.assertIn("without training images", text)
    self.assertIn("emu", text)
    # Every kept file decodes to RGB with its own pixel values and label.
    for index, value in enumerate((10, 20, 30)):
      data, _ = source.load("train", tf.constant(index))
      image = transforms.decode_rgb(data)
      self.assertEqual(image.shape, [32, 32, 3])
      self.assertAllClose(tf.reduce_mean(tf.cast(image, tf.float32)), value,
                          atol=1.0)

  def test_fail_mode_names_the_file(self):
    with self.assertRaisesRegex(base.DataError, r"bad file\(s\).*\.jpg|txt"):
      folders.folder_source(self._tree(), on_bad_file="fail")

  def test_family_from_image_size(self):
    self.assertEqual(folders.folder_source(self._tree(size=80)).family,
                     "imagenet")
    self.assertEqual(folders.folder_source(self._tree(size=80),
                                           family="cifar").family, "cifar")

  def test_missing_and_inconsistent_trees(self):
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    with self.assertRaisesRegex(base.DataError, "train does not exist"):
      folders.folder_source(root)
    _put(f"{root}/train/a/1.jpg", _jpeg(1))
    with self.assertRaisesRegex(base.DataError, "no test data"):
      folders.folder_source(root)
    _put(f"{root}/test/b/1.jpg", _jpeg(1))
    with self.assertRaisesRegex(base.DataError,
                                "classes that train/ does not: b"):
      folders.folder_source(root)

  def test_holdout_split(self):
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    for i in range(10):
      _put(f"{root}/train/{'ab'[i % 2]}/{i}.png", _png(i))
    _put(f"{root}/test/a/0.png", _png(0))
    source = folders.folder_source(root, holdout=3)
    self.assertEqual((source.num_examples("train"),
                      source.num_examples("holdout")), (7, 3))
    paths = {source.path("train", i) for i in range(7)}
    held = {source.path("holdout", i) for i in range(3)}
    self.assertEmpty(paths & held)
    with self.assertRaisesRegex(
        base.DataError, r"`holdout` \(--holdout\) must be in \[0, 10\) for a "
        "training set of 10 examples, not 10"):
      folders.folder_source(root, holdout=10)


if __name__ == "__main__":
  tf.test.main()
