"""TFDS's builders: ImageNet prepared by the real builder from archives in ILSVRC2012's layout; CIFAR-10 (mocked)."""

import collections
import os
import tempfile

import tensorflow as tf
import tensorflow_datasets as tfds

from tf_resnet.data import sources
from tf_resnet.data import transforms
from tf_resnet.testing import imagenet


class ImageNetTest(imagenet.TinyImageNetTestCase):
  """One tiny ILSVRC2012 (3 synsets x 4 JPEGs, 4 validation JPEGs), prepared once."""

  def test_the_real_builder_prepares_the_archives(self):
    source = self.source
    self.assertEqual((source.family, source.num_classes), ("imagenet", 1000))
    self.assertEqual(source.class_names[:3], imagenet.SYNSETS)
    self.assertEqual((source.num_examples("train"),
                      source.num_examples("test")), (12, 4))
    self.assertFalse(source.indexed)

  def test_stream_labels_come_from_synset_tars_and_tfds_validation_labels(self):
    train = list(self.source.stream("train").as_numpy_iterator())
    self.assertEqual(collections.Counter(int(y) for _, y in train),
                     {0: 4, 1: 4, 2: 4})
    for data, _ in train:
      self.assertEqual(transforms.decode_rgb(data).shape, [48, 64, 3])
    test = [int(y) for _, y in self.source.stream("test").as_numpy_iterator()]
    self.assertCountEqual(test, imagenet.FIRST_VALIDATION_LABELS[:4])

  def test_record_files_hold_the_split(self):
    files, parse = self.source.record_files("train")
    self.assertEqual(sum(take for _, _, take in files), 12)
    records = tf.data.TFRecordDataset([name for name, _, _ in files])
    labels = sorted(int(parse(r)[1]) for r in records)
    self.assertEqual(labels, [0] * 4 + [1] * 4 + [2] * 4)

  def test_holdout_is_taken_from_the_training_records(self):
    source = sources.parse("imagenet2012", data_dir=self.data_dir, holdout=3)
    self.assertEqual((source.num_examples("train"),
                      source.num_examples("holdout")), (9, 3))
    reads = {split: source.record_files(split)[0]
             for split in ("train", "holdout")}
    self.assertEqual(sum(t for _, _, t in reads["train"]), 9)
    self.assertEqual(sum(t for _, _, t in reads["holdout"]), 3)
    # Consecutive ranges of the same stored records, which do not overlap.
    (_, train_skip, train_take), = reads["train"]
    (_, held_skip, _), = reads["holdout"]
    self.assertEqual(held_skip, train_skip + train_take)
    with self.assertRaisesRegex(
        sources.DataError, r"`holdout` \(--holdout\) must be in \[0, 12\) "
        "for a training set of 12 examples, not 12"):
      sources.parse("imagenet2012", data_dir=self.data_dir, holdout=12)

  def test_missing_imagenet_says_which_files_go_where(self):
    data_dir = tempfile.mkdtemp(dir=self.get_temp_dir())
    manual = os.path.join(data_dir, "downloads", "manual")
    with self.assertRaises(sources.DataError) as ctx:
      sources.parse("imagenet2012", data_dir=data_dir)
    message = str(ctx.exception)
    for text in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar",
                 manual, f"--data_dir={data_dir}", "cannot be downloaded"):
      self.assertIn(text, message)


class Cifar10Test(tf.test.TestCase):

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


if __name__ == "__main__":
  tf.test.main()
