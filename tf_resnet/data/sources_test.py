"""Data sources: folders with bad files, the embedded set, TFDS (mocked), missing data."""

import os
import tempfile

from sklearn import datasets
import tensorflow as tf
import tensorflow_datasets as tfds

from tf_resnet.data import sources
from tf_resnet.data import transforms


def _write(path: str, data: bytes) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)


def _jpeg(value: int, size: int = 32, channels: int = 3) -> bytes:
  return tf.io.encode_jpeg(tf.fill([size, size, channels],
                                   tf.constant(value, tf.uint8))).numpy()


def _png(value: int, size: int = 32, channels: int = 3) -> bytes:
  return tf.io.encode_png(tf.fill([size, size, channels],
                                  tf.constant(value, tf.uint8))).numpy()


class FolderTest(tf.test.TestCase):

  def _tree(self, size: int = 32) -> str:
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    _write(f"{root}/train/cat/1.jpg", _jpeg(10, size))
    _write(f"{root}/train/cat/2.PNG", _png(20, size, channels=1))  # Gray.
    _write(f"{root}/train/cat/notes.txt", b"not an image")
    _write(f"{root}/train/dog/1.png", _png(30, size, channels=4))  # RGBA.
    _write(f"{root}/train/dog/broken.jpg", _jpeg(40, size)[:200])  # Truncated.
    _write(f"{root}/train/dog/fake.jpg", b"GIF89a not really a jpeg")
    _write(f"{root}/train/dog/.DS_Store", b"\0\0")
    os.makedirs(f"{root}/train/emu")  # An empty class.
    _write(f"{root}/val/dog/3.jpeg", _jpeg(50, size))
    return root

  def test_reads_mixed_formats_and_skips_bad_files(self):
    root = self._tree()
    with self.assertLogs(level="WARNING") as logs:
      source = sources.folder_source(root)
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
    with self.assertRaisesRegex(sources.DataError, r"bad file\(s\).*\.jpg|txt"):
      sources.folder_source(self._tree(), on_bad_file="fail")

  def test_family_from_image_size(self):
    self.assertEqual(sources.folder_source(self._tree(size=80)).family,
                     "imagenet")
    self.assertEqual(sources.folder_source(self._tree(size=80),
                                           family="cifar").family, "cifar")

  def test_missing_and_inconsistent_trees(self):
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    with self.assertRaisesRegex(sources.DataError, "train does not exist"):
      sources.folder_source(root)
    _write(f"{root}/train/a/1.jpg", _jpeg(1))
    with self.assertRaisesRegex(sources.DataError, "no test data"):
      sources.folder_source(root)
    _write(f"{root}/test/b/1.jpg", _jpeg(1))
    with self.assertRaisesRegex(sources.DataError,
                                "classes that train/ does not: b"):
      sources.folder_source(root)

  def test_holdout_split(self):
    root = tempfile.mkdtemp(dir=self.get_temp_dir())
    for i in range(10):
      _write(f"{root}/train/{'ab'[i % 2]}/{i}.png", _png(i))
    _write(f"{root}/test/a/0.png", _png(0))
    source = sources.folder_source(root, holdout=3)
    self.assertEqual((source.num_examples("train"),
                      source.num_examples("holdout")), (7, 3))
    paths = {source.path("train", i) for i in range(7)}
    held = {source.path("holdout", i) for i in range(3)}
    self.assertEmpty(paths & held)
    with self.assertRaisesRegex(sources.DataError, "`holdout` must be in"):
      sources.folder_source(root, holdout=10)


class EmbeddedAndSyntheticTest(tf.test.TestCase):

  def test_digits(self):
    source = sources.parse("digits")
    self.assertEqual((source.family, source.num_classes), ("cifar", 10))
    self.assertEqual((source.num_examples("train"),
                      source.num_examples("test")), (1437, 360))
    image, label = source.load("test", tf.constant(0))
    self.assertEqual((image.shape, image.dtype), ((32, 32, 3), tf.uint8))
    self.assertEqual(int(label), 0)  # The first digit of the set is a 0.
    self.assertAllEqual(image[..., 0], image[..., 1])  # Gray, as RGB.
    # The first image of scikit-learn's set, 0-16 grey levels scaled to
    # 0-255; bilinear resizing keeps its mean brightness.
    original = datasets.load_digits().images[0] * 255.0 / 16.0
    self.assertAllClose(tf.reduce_mean(tf.cast(image, tf.float32)),
                        original.mean(), rtol=0.05)

  def test_synthetic_is_deterministic_per_index(self):
    source = sources.parse("synthetic", family="imagenet")
    a, label_a = source.load("train", tf.constant(5, tf.int64))
    b, label_b = source.load("train", tf.constant(5, tf.int64))
    c, _ = source.load("train", tf.constant(6, tf.int64))
    self.assertEqual(a.shape, [224, 224, 3])
    self.assertAllEqual(a, b)
    self.assertEqual(int(label_a), int(label_b))
    self.assertNotAllEqual(a, c)
    self.assertBetween(int(label_a), 0, 999)

  def test_unknown_dataset_lists_the_choices(self):
    with self.assertRaisesRegex(ValueError, "unknown data set 'mnist'.*"
                                "folder:PATH.*digits"):
      sources.parse("mnist")
    with self.assertRaisesRegex(ValueError, "cifar-family data set"):
      sources.parse("digits", family="imagenet")


class TfdsTest(tf.test.TestCase):

  def test_cifar10_through_tfds(self):
    data_dir = tempfile.mkdtemp(dir=self.get_temp_dir())
    with tfds.testing.mock_data(num_examples=12, data_dir=data_dir):
      source = sources.parse("cifar10", data_dir=data_dir, holdout=2)
    self.assertEqual(source.class_names[:3], ("airplane", "automobile", "bird"))
    self.assertEqual((source.num_examples("train"),
                      source.num_examples("holdout"),
                      source.num_examples("test")), (10, 2, 12))
    image, label = source.load("train", tf.constant(0))
    self.assertEqual((image.shape, image.dtype), ((32, 32, 3), tf.uint8))
    self.assertBetween(int(label), 0, 9)

  def test_imagenet_streams_encoded_jpegs(self):
    data_dir = tempfile.mkdtemp(dir=self.get_temp_dir())
    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"):
      _write(os.path.join(data_dir, "downloads", "manual", name), b"")
    with tfds.testing.mock_data(num_examples=4, data_dir=data_dir):
      source = sources.parse("imagenet2012", data_dir=data_dir)
      data, label = next(iter(source.stream("train", None, 0, shuffle=True)))
    self.assertEqual((source.family, source.num_classes), ("imagenet", 1000))
    self.assertEqual(data.dtype, tf.string)
    self.assertEqual(transforms.decode_rgb(data).shape[-1], 3)
    self.assertBetween(int(label), 0, 999)

  def test_missing_imagenet_says_which_files_go_where(self):
    data_dir = tempfile.mkdtemp(dir=self.get_temp_dir())
    manual = os.path.join(data_dir, "downloads", "manual")
    with self.assertRaises(sources.DataError) as ctx:
      sources.parse("imagenet2012", data_dir=data_dir)
    message = str(ctx.exception)
    for text in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar",
                 manual, f"--data_dir={data_dir}", "cannot be downloaded"):
      self.assertIn(text, message)


if __name__ == "__main__":
  tf.test.main()
