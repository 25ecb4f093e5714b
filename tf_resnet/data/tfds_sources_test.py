"""TFDS's builders (mocked): CIFAR-10 held in memory, ImageNet streamed, missing ImageNet."""

import os
import tempfile

import tensorflow as tf
import tensorflow_datasets as tfds

from tf_resnet.data import sources
from tf_resnet.data import transforms
from tf_resnet.testing import images


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
      images.write_file(os.path.join(data_dir, "downloads", "manual", name),
                        b"")
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
