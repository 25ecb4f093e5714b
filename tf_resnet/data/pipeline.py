"""tf.data input pipelines for training and testing, per replica.

Training input for an indexed source is a pure function of (seed, step): the
global input order is a fresh uniform permutation of the training set every
epoch (`tf.random.experimental.index_shuffle`, no shuffle buffer), global step
`k` consumes elements `[k * B, (k + 1) * B)` of it, and each input pipeline
(one per worker) reads its contiguous share of every step, batched per
replica. Each example's augmentation is seeded by (seed, element number), so:

* one device with batch B and two replicas with B / 2 each see the same
  examples with the same augmentation in every step;
* resuming at step `k` (`start_step=k`) continues the epoch exactly where it
  stopped, with no iterator state to save.

Streamed sources (TFDS ImageNet) are read in shuffled blocks of records
(`streaming`): each input pipeline's order is a function of (seed, the
records it has consumed), so they too resume from `start_step` alone, with
no iterator in the checkpoint; augmentation is seeded by (seed, element
number within the pipeline).
"""

import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

from tf_resnet import families
from tf_resnet.data import sources
from tf_resnet.data import stats as stats_lib
from tf_resnet.data import streaming
from tf_resnet.data import transforms

EVAL_MODES = ("center", "10crop", "multiscale")


@dataclasses.dataclass(frozen=True)
class InputConfig:
  """How training and test images are prepared.

  Attributes:
    global_batch_size: examples per training step over all replicas.
    seed: seeds the input order and every augmentation.
    scale_range: ImageNet scale augmentation, inclusive range of the shorter
      side (section 3.4: [256, 480]).
    color_augmentation: ImageNet PCA lighting noise (Krizhevsky et al.).
    test_scales: shorter sides for multi-scale testing.
    test_flip: also average over mirrored views in multi-scale testing.
    on_bad_image: `skip` (drop images that fail to decode, logging the error)
      or `fail`.
    stream_block_size: streamed sources: records per shuffled block (see
      `streaming`).
    resample_on_device: ImageNet family: the training input decodes each
      crop's window and leaves the resampling, flip, mean and colour noise
      to the training step (`train_device_transform`), on the accelerator;
      batches are then (windows, boxes, shifts), not images. The same views
      to float rounding; the host's work per image is then little more
      than the window's decode (docs/performance.md).
  """

  global_batch_size: int
  seed: int = 0
  scale_range: tuple[int, int] = transforms.IMAGENET_SCALE_RANGE
  color_augmentation: bool = True
  test_scales: tuple[int, ...] = transforms.IMAGENET_TEST_SCALES
  test_flip: bool = False
  on_bad_image: str = "skip"
  stream_block_size: int = streaming.BLOCK_SIZE
  resample_on_device: bool = False

  def __post_init__(self):
    if self.global_batch_size < 1:
      raise ValueError(f"`global_batch_size` must be positive, not "
                       f"{self.global_batch_size}")
    lo, hi = self.scale_range
    if not transforms.IMAGENET_CROP <= lo <= hi:
      raise ValueError(f"`scale_range` must satisfy "
                       f"{transforms.IMAGENET_CROP} <= low <= high, not "
                       f"{self.scale_range}")
    if self.on_bad_image not in ("skip", "fail"):
      raise ValueError(f"`on_bad_image` must be 'skip' or 'fail', not "
                       f"{self.on_bad_image!r}")
    if self.stream_block_size < 1:
      raise ValueError(f"`stream_block_size` must be positive, not "
                       f"{self.stream_block_size}")


def _pipelines(input_context: Optional[tf.distribute.InputContext],
               global_batch: int) -> tuple[int, int, int]:
  """(pipelines, this pipeline's id, per-replica batch), checking divisibility."""
  if input_context is None:
    return 1, 0, global_batch
  replicas = input_context.num_replicas_in_sync
  pipelines = input_context.num_input_pipelines
  if global_batch % replicas:
    raise ValueError(f"the global batch size ({global_batch}) must be "
                     f"divisible by the number of replicas ({replicas})")
  return (pipelines, input_context.input_pipeline_id,
          input_context.get_per_replica_batch_size(global_batch))


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.map_parallelization = True
  return options


def _constants(statistics: stats_lib.Statistics):
  return (tf.constant(statistics.mean_image, tf.float32),
          tf.constant(statistics.eigenvalues, tf.float32),
          tf.constant(statistics.eigenvectors, tf.float32))


def _train_transform(source: sources.Source,
                     statistics: stats_lib.Statistics, config: InputConfig):
  """(per-example transform, per-batch finish or None) of the family's training view."""
  mean, eigenvalues, eigenvectors = _constants(statistics)
  colour = config.color_augmentation

  def scale(image, seed):  # Section 3.4: the crop and its colour shift.
    return transforms.imagenet_train_crop(
        image, seed, eigenvalues if colour else None, eigenvectors,
        encoded=source.encoded, scale_range=config.scale_range)

  def scale_finish(views, labels):
    # Mean and colour noise on the whole batch: the same sums as one image
    # at a time (`transforms.imagenet_train`), with a few ops per batch
    # instead of per image.
    crops, shifts = views
    return (transforms.imagenet_train_finish(crops, shifts if colour else None,
                                             mean), labels)

  def scale_window(image, seed):  # Section 3.4, resampled in the step.
    return transforms.imagenet_train_window(
        image, seed, eigenvalues if colour else None, eigenvectors,
        encoded=source.encoded, scale_range=config.scale_range)

  def pad_crop(image, seed):  # Section 4.2.
    return transforms.cifar_train(image, seed, mean, encoded=source.encoded)

  augmentation = _train_augmentation(source, config)
  if config.resample_on_device:
    augment, finish = scale_window, None
  else:
    augment, finish = {"scale": (scale, scale_finish),
                       "pad_crop": (pad_crop, None)}[augmentation]

  def transform(image, label, seed):
    return augment(image, seed), label

  return transform, finish


def _train_augmentation(source: sources.Source, config: InputConfig) -> str:
  augmentation = families.get(source.family).train_augmentation
  if config.resample_on_device and augmentation != "scale":
    raise ValueError(f"`resample_on_device` applies to scale augmentation "
                     f"(the ImageNet family) only, not to the "
                     f"{source.family} family's {augmentation!r}")
  return augmentation


def train_device_transform(source: sources.Source,
                           statistics: stats_lib.Statistics,
                           config: InputConfig):
  """What the training step does to a batch before the network, or None.

  With `config.resample_on_device`, `train_dataset`'s batches hold each
  crop's decoded window, its sampling box and its colour shift; this makes
  them the views `train_dataset` gives otherwise (to float rounding:
  `transforms.resample_windows`), in one batched call. Call it inside the
  step, on the accelerator. Without the option there is nothing to do.

  Args:
    source: the data.
    statistics: the training set's mean image and RGB components.
    config: the training input's options.

  Returns:
    A function of the batch's images part, or None.

  Raises:
    ValueError: if the option is set for a family without scale
      augmentation.
  """
  _train_augmentation(source, config)
  if not config.resample_on_device:
    return None
  mean, _, _ = _constants(statistics)
  colour = config.color_augmentation

  def transform(windows):
    pixels, boxes, shifts = windows
    return transforms.imagenet_train_from_windows(
        pixels, boxes, shifts if colour else None, mean)

  return transform


def example_index(element: tf.Tensor, num_examples: int,
                  seed: int) -> tf.Tensor:
  """The training example at position `element` of the endless input order.

  Epoch `e = element // n` is a permutation of the n examples drawn from
  (seed, e).
  """
  epoch = element // num_examples
  key = tf.stack([tf.constant(seed, tf.int64), epoch])
  return tf.random.experimental.index_shuffle(element % num_examples, key,
                                              num_examples - 1)


def train_dataset(source: sources.Source, statistics: stats_lib.Statistics,
                  config: InputConfig,
                  input_context: Optional[tf.distribute.InputContext] = None,
                  start_step: int = 0, split: str = "train") -> tf.data.Dataset:
  """Endless per-replica training batches of (float32 images, int32 labels).

  With `config.resample_on_device`, the images part is instead (uint8
  windows [B, rows, columns, 3], float32 boxes [B, 4], float32 colour
  shifts [B, 3]) that `train_device_transform` makes the images.

  Args:
    source: the data.
    statistics: the training set's mean image and RGB components.
    config: batch size, seed and augmentation options.
    input_context: from `distribute_datasets_from_function`; None for one
      pipeline and one replica.
    start_step: the global step to start at.
    split: the split to train on.

  Returns:
    The dataset. Batches of one pipeline go to its replicas in turn.

  Raises:
    ValueError: if the batch does not divide among the replicas.
  """
  pipelines, pipeline_id, per_replica = _pipelines(input_context,
                                                   config.global_batch_size)
  transform, finish = _train_transform(source, statistics, config)
  seed = config.seed
  share = config.global_batch_size // pipelines
  if source.indexed:
    n = source.num_examples(split)
    if n < 1:
      raise sources.DataError(f"{source.name} has no {split!r} examples")
    first = pipeline_id * share

    def elements(step):
      begin = step * config.global_batch_size + first
      return tf.data.Dataset.range(begin, begin + share)

    def load(element):
      image, label = source.load(split, example_index(element, n, seed))
      return transform(image, label, tf.stack([tf.constant(seed, tf.int64),
                                               element]))

    ds = tf.data.Dataset.range(start_step, np.iinfo(np.int64).max)
    ds = ds.flat_map(elements)
  else:
    files, parse = source.record_files(split)
    table = streaming.block_table(files, config.stream_block_size)
    position = start_step * share
    ds = streaming.records(table, seed, pipelines, pipeline_id, position)
    ds = ds.enumerate(start=position)
    salt = pipeline_id << 40

    def load(element, record):
      image, label = parse(record)
      return transform(image, label, tf.stack([tf.constant(seed, tf.int64),
                                               element + salt]))

  ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if config.on_bad_image == "skip":
    ds = ds.ignore_errors(log_warning=True)
  if config.resample_on_device:
    # Windows differ in size: each batch is padded to its largest (zeros at
    # the bottom and right, which the boxes never reach). The step's
    # function sees [B, None, None, 3] and is traced once.
    ds = ds.padded_batch(per_replica, drop_remainder=True)
  else:
    ds = ds.batch(per_replica, drop_remainder=True)
  if finish is not None:
    ds = ds.map(finish, num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE).with_options(_options())


def eval_dataset(source: sources.Source, statistics: stats_lib.Statistics,
                 config: InputConfig, *, split: str = "test",
                 mode: str = "center", batch_size: int = 100,
                 input_context: Optional[tf.distribute.InputContext] = None
                 ) -> tf.data.Dataset:
  """Every example of a split once, prepared for one of the paper's test modes.

  Args:
    source: the data.
    statistics: the training set's statistics.
    config: test scales and flips.
    split: the split to test on.
    mode: `center` (ImageNet: the 224x224 centre crop of the 256-resized
      image; CIFAR: the image itself), `10crop` (ImageNet: [10, 224, 224, 3]
      per example) or `multiscale` (per example, one [V, h, w, 3] view per
      test scale; ImageNet family only, CIFAR's test view is its only one).
    batch_size: examples per batch (`multiscale` is never batched: views of
      different images differ in size).
    input_context: shards examples by input pipeline.

  Returns:
    A dataset of (views, int32 labels): batched for `center` and `10crop`;
    for `multiscale`, one example at a time as (tuple of views, label).

  Raises:
    ValueError: for an unknown mode or one the family does not have.
  """
  if mode not in EVAL_MODES:
    raise ValueError(f"`mode` must be one of {EVAL_MODES}, not {mode!r}")
  family = families.get(source.family)
  if mode not in family.eval_modes:
    raise ValueError(f"the {family.name} family is tested in the paper's "
                     f"modes {family.eval_modes} only (CIFAR: the single "
                     f"original view, section 4.2), not {mode!r}")
  mean, _, _ = _constants(statistics)
  encoded = source.encoded

  def view(image):
    if mode == "center":
      return transforms.single_view(image, mean, source.family,
                                    encoded=encoded)
    if mode == "10crop":
      return transforms.imagenet_ten_crop(image, mean, encoded=encoded)
    return transforms.multiscale_views(image, mean, encoded=encoded,
                                       scales=config.test_scales,
                                       flip=config.test_flip)

  if source.indexed:
    ds = tf.data.Dataset.range(source.num_examples(split))
    if input_context is not None and input_context.num_input_pipelines > 1:
      ds = ds.shard(input_context.num_input_pipelines,
                    input_context.input_pipeline_id)
    ds = ds.map(lambda i: source.load(split, i))
  else:
    ds = source.stream(split, input_context)
  ds = ds.map(lambda image, label: (view(image), label),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if config.on_bad_image == "skip":
    ds = ds.ignore_errors(log_warning=True)
  if mode != "multiscale":
    ds = ds.batch(batch_size)
  return ds.prefetch(tf.data.AUTOTUNE).with_options(_options())

