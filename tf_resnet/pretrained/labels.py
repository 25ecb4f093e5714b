"""ImageNet's 1,000 class names, from what tensorflow-datasets already ships.

Keras's, torchvision's and TFDS's ImageNet models all index the classes by
their WordNet synset ids in sorted order (n01440764 "tench" is class 0,
n15075141 "toilet tissue" class 999): Caffe's `synset_words.txt`, which
Keras's `imagenet_class_index.json` reproduces, is sorted; torchvision
trained on `ImageFolder`, which sorts the synset directories; TFDS's
`imagenet2012` labels file is sorted. So one list serves all of them.

* Synsets: TFDS's `datasets/imagenet2012/labels.txt` (the builder's own).
* Human-readable names: TFDS ships the 1,000 names of Caffe's
  `synset_words.txt` in the same order in its SI-Score builder
  (`tensorflow_datasets.datasets.siscore.labels.IMAGENET_LABELS_LIST`); we
  take each one's first name ("tench, Tinca tinca" -> "tench"), keeping the
  whole entry where first names repeat ("maillot" and "maillot, tank suit").
  Nothing is downloaded.
"""

import collections
import functools

NUM_CLASSES = 1000
LABEL_KINDS = ("names", "synsets")


@functools.lru_cache(maxsize=None)
def synsets() -> tuple[str, ...]:
  """TFDS's imagenet2012 class order: 1,000 synset ids, sorted."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  path = tfds.core.tfds_path("datasets/imagenet2012/labels.txt")
  return tuple(path.read_text().split())


@functools.lru_cache(maxsize=None)
def entries() -> tuple[str, ...]:
  """The 1,000 full entries of Caffe's synset_words.txt ("tench, Tinca tinca"), as TFDS ships them."""
  from tensorflow_datasets.datasets.siscore import labels as siscore  # pylint: disable=g-import-not-at-top
  return tuple(siscore.IMAGENET_LABELS_LIST)


@functools.lru_cache(maxsize=None)
def names() -> tuple[str, ...]:
  """Short human-readable names ("tench", "goldfish", ...), unique."""
  full = entries()
  first = [entry.split(",")[0].strip() for entry in full]
  repeated = {n for n, count in collections.Counter(first).items()
              if count > 1}
  return tuple(entry if short in repeated else short
               for short, entry in zip(first, full))


def imagenet_labels(kind: str = "names") -> list[str]:
  """The export's class names for a 1000-class ImageNet network.

  Args:
    kind: `names` (human-readable) or `synsets` (WordNet ids).

  Returns:
    1,000 strings in the models' class order.

  Raises:
    ValueError: for an unknown kind.
  """
  if kind not in LABEL_KINDS:
    raise ValueError(f"`labels` must be one of {LABEL_KINDS}, not {kind!r}")
  return list(names() if kind == "names" else synsets())
