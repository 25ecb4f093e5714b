"""ImageNet's class order: TFDS's, Keras's and torchvision's agree, and our names follow it."""

import re

import tensorflow as tf

from tf_resnet.pretrained import labels

# Transcribed from the sources' own files, which cannot be read here
# (Keras downloads imagenet_class_index.json; torchvision does not import
# beside this torch): entries where an off-by-one anywhere would show,
# including the two repeated first names ("crane", "maillot").
# keras.applications imagenet_class_index.json: index -> (synset, name).
_KERAS = {0: ("n01440764", "tench"), 1: ("n01443537", "goldfish"),
          2: (None, "great_white_shark"), 134: (None, "crane"),
          517: (None, "crane"), 638: (None, "maillot"),
          639: (None, "maillot"), 683: ("n03838899", "oboe"),
          700: ("n03887697", "paper_towel"), 916: ("n06359193", "web_site"),
          999: ("n15075141", "toilet_tissue")}
# torchvision.models._meta._IMAGENET_CATEGORIES (torchvision 0.28): index ->
# name. (The whole list was compared once with `names()`: equal but for the
# three disambiguated entries 134, 517 and 639.)
_TORCHVISION = {0: "tench", 1: "goldfish", 2: "great white shark",
                134: "crane bird", 517: "crane", 638: "maillot",
                639: "maillot tank suit", 683: "oboe", 700: "paper towel",
                916: "web site", 999: "toilet tissue"}


class LabelsTest(tf.test.TestCase):

  def test_tfds_order_is_the_sorted_synsets(self):
    synsets = labels.synsets()
    self.assertLen(synsets, 1000)
    self.assertEqual(list(synsets), sorted(set(synsets)))

  def test_keras_order_is_tfds_order(self):
    synsets, entries = labels.synsets(), labels.entries()
    for index, (synset, name) in _KERAS.items():
      if synset is not None:
        self.assertEqual(synsets[index], synset, index)
      # Keras's names are each entry's first name, spaces as "_" (TFDS
      # adds "(bird)" and "(machine)" to the two cranes).
      first = re.sub(r" \(.*\)$", "", entries[index].split(",")[0])
      self.assertEqual(first.replace(" ", "_"), name, index)

  def test_torchvision_order_is_tfds_order(self):
    names = labels.names()
    for index, name in _TORCHVISION.items():
      # torchvision disambiguates the repeated names its own way.
      ours = names[index].replace(",", "").replace("(", "").replace(")", "")
      if index in (134, 517):
        self.assertEqual(ours.split()[0], name.split()[0], index)
      else:
        self.assertEqual(ours, name, index)

  def test_names_are_unique_and_short(self):
    names = labels.imagenet_labels()
    self.assertLen(set(names), 1000)
    self.assertEqual(names[:3], ["tench", "goldfish", "great white shark"])
    self.assertEqual(names[134], "crane (bird)")
    self.assertEqual(names[517], "crane (machine)")
    self.assertEqual(names[638:640], ["maillot", "maillot, tank suit"])
    self.assertEqual(labels.imagenet_labels("synsets")[0], "n01440764")

  def test_bad_kind(self):
    with self.assertRaisesRegex(ValueError, "`labels` must be one of"):
      labels.imagenet_labels("words")


if __name__ == "__main__":
  tf.test.main()
