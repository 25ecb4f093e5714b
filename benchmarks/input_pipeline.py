r"""Input pipeline throughput per core, against TensorFlow's JPEG decoder and the training step.

Measures, in one run, on real-sized JPEGs (500x375, a third portrait,
generated with natural-image-like statistics unless --jpeg_dir is given; no
downloads):

* decode-only: read each file and decode the whole JPEG (`tf.io.decode_jpeg`),
  nothing else: TensorFlow's own ceiling for any pipeline of these files;
* window-decode-only: the training pipeline's draws and its decode of
  only the crop's window (`transforms.scale_augmented_window`), nothing
  after: the share of the training pipeline that TensorFlow's decoder sets;
* the ImageNet training pipeline (`pipeline.train_dataset`: scale
  augmentation with the window-only JPEG decode, the exact bilinear crop,
  flip; mean and colour noise on whole batches);
* its host part when the resampling runs on the accelerator
  (`InputConfig.resample_on_device`: draws, window decode, batches of uint8
  windows padded to the largest, with boxes and colour shifts), and the
  device part (`pipeline.train_device_transform`: the batched resampling,
  flip, mean and colour noise) timed on this CPU, on batches the host part
  made, so that the work it moves is seen, not only the work it leaves;
* the evaluation inputs (`pipeline.eval_dataset`): the centre crop, the
  10-crop and multi-scale views (five scales);
* optionally the CIFAR training pipeline on a CIFAR-10 image folder
  (--cifar_dir, e.g. the unpacked JPEG copy);
* the training step (forward, backward, update: the real Trainer, as
  `tf_resnet.train` builds it; `in_memory.py`) of the cheapest network of
  each family (ImageNet ResNet-18 at 224x224, CIFAR ResNet-20), on a batch
  held in memory, with every core (--steps=0 skips it).

Per core: every input pipeline runs on one thread (tf.data's private thread
pool of 1, intra-op parallelism 1), and its rate is images per CPU-second
the whole process spent while it ran (`time.process_time`, all threads), so
other jobs on a shared machine slow the wall clock but not the figure. The
pipelines are timed in interleaved rounds (decode-only, window-decode-only,
training, ..., decode-only, ...) and each figure is the median over rounds, so the ratio of the
training pipeline to decode-only compares the two under the same load.

  python benchmarks/input_pipeline.py --format=json
  python benchmarks/input_pipeline.py --cifar_dir=/tmp/cifar10
"""

import dataclasses
import json
import os
import tempfile
import time

from tf_resnet import startup

startup.prepare_tensorflow()

# pylint: disable=g-import-not-at-top,g-bad-import-order
from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

import in_memory  # Beside this file.
import machine  # Beside this file.
from tf_resnet.data import pipeline
from tf_resnet.data import sources
from tf_resnet.data import stats as stats_lib
from tf_resnet.data import transforms
from tf_resnet.model import zoo

_JPEG_DIR = flags.DEFINE_string("jpeg_dir", None,
                                "An ImageNet-style folder to read instead of "
                                "generated 500x375 JPEGs.")
_NUM_JPEGS = flags.DEFINE_integer("num_jpegs", 256, "JPEGs to generate.")
_CIFAR_DIR = flags.DEFINE_string("cifar_dir", None,
                                 "A CIFAR-10 image folder (train/<class>/*).")
_SECONDS = flags.DEFINE_float("seconds", 4.0,
                              "Measuring time per pipeline and round.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Interleaved rounds.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed training steps per network "
                              "(0: no training step).")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Images per batch of the "
                              "ImageNet pipelines.")
_GPU_RATE = flags.DEFINE_float("gpu_images_per_sec", 2500.0,
                               "An accelerator's training rate, to express "
                               "the pipeline in cores per accelerator.")
_FORMAT = flags.DEFINE_enum("format", "table", ["table", "json"], "Output.")


def _natural_image(rng: np.random.RandomState, height: int,
                   width: int) -> np.ndarray:
  """Smooth colour fields plus fine noise: JPEG sizes like photographs'."""
  coarse = rng.uniform(0, 255, [height // 25 + 2, width // 25 + 2, 3])
  image = tf.image.resize(coarse[None], [height, width], "bicubic")[0].numpy()
  image += rng.normal(0, 12, image.shape)
  return np.clip(image, 0, 255).astype(np.uint8)


def _make_jpegs(root: str, count: int) -> str:
  rng = np.random.RandomState(0)
  for split, n in (("train", count), ("test", 2)):
    for i in range(n):
      folder = os.path.join(root, split, f"class_{i % 4}")
      os.makedirs(folder, exist_ok=True)
      tall = i % 3 == 0  # A third portrait, like ImageNet.
      image = _natural_image(rng, 500 if tall else 375, 375 if tall else 500)
      with open(os.path.join(folder, f"{i}.jpg"), "wb") as f:
        f.write(tf.io.encode_jpeg(image, quality=90).numpy())
  return root


def _one_core() -> tf.data.Options:
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  options.threading.max_intra_op_parallelism = 1
  return options


def _decode_only(source: sources.Source) -> tf.data.Dataset:
  """Each training file read and wholly decoded, endlessly."""
  return _each_file(source, lambda data, i: tf.io.decode_jpeg(data,
                                                              channels=3))


def _window_decode_only(source: sources.Source) -> tf.data.Dataset:
  """Each training file read, its crop drawn and only that window decoded."""

  def window(data, i):
    # The window seed as `transforms.imagenet_train_crop` splits it.
    seed = tf.random.experimental.stateless_split(
        tf.stack([tf.constant(0, tf.int64), i]), 3)[0]
    return transforms.scale_augmented_window(data, seed, encoded=True)[0]

  return _each_file(source, window)


def _each_file(source: sources.Source, decode) -> tf.data.Dataset:
  """`decode(bytes, index)` of each training file, endlessly, batched.

  Only each image's height goes on, so batching costs next to nothing.
  """
  n = source.num_examples("train")
  ds = tf.data.Dataset.range(n).repeat()
  ds = ds.map(lambda i: tf.shape(decode(source.load("train", i)[0], i))[0],
              num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(_BATCH.value).prefetch(tf.data.AUTOTUNE)


class _Timed:
  """A dataset timed in rounds: images per CPU-second of the process.

  Each round runs a fresh iterator and ends it: an iterator left alive
  would refill its prefetch buffers while the next pipeline is timed, and
  charge that pipeline for its work.
  """

  def __init__(self, dataset: tf.data.Dataset, count):
    self._dataset = dataset.with_options(_one_core())
    self._count = count  # Images in one element.
    self.rates, self.wall_rates = [], []

  def round(self, seconds: float) -> None:
    iterator = iter(self._dataset)
    for _ in range(2):  # Warm-up: thread pools, file cache, buffers.
      next(iterator)
    images = 0
    wall, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds:
      images += self._count(next(iterator))
    self.rates.append(images / (time.process_time() - cpu))
    self.wall_rates.append(images / (time.perf_counter() - wall))
    del iterator

  @property
  def rate(self) -> float:
    return float(np.median(self.rates))

  @property
  def wall_rate(self) -> float:
    return float(np.median(self.wall_rates))


_DEVICE_PART = "device_resample_part_on_cpu"


def _device_part(source: sources.Source, statistics: stats_lib.Statistics,
                 config: pipeline.InputConfig) -> tf.data.Dataset:
  """The training step's share of resample_on_device, on this CPU.

  A few batches of the host part, made once and held in memory, each made
  into the training views (`pipeline.train_device_transform`) endlessly.
  """
  host = pipeline.train_dataset(source, statistics, config)
  batches = list(host.take(4))
  ds = tf.data.Dataset.from_tensors(batches[0])
  for batch in batches[1:]:
    ds = ds.concatenate(tf.data.Dataset.from_tensors(batch))
  transform = pipeline.train_device_transform(source, statistics, config)
  return ds.repeat().map(lambda windows, labels: (transform(windows), labels))


def _batch_size(element) -> int:
  return int(element[1].shape[0])


def _step_rate(config: zoo.ModelConfig, batch: int, steps: int) -> float:
  """Images/s of the real Trainer's step on one batch in memory."""
  trainer = in_memory.InMemoryTrainer(config, batch)
  trainer.run(1)  # Tracing.
  seconds, _ = trainer.time(steps, steps)
  return batch * steps / seconds


def _measure(pipelines: dict, rounds: int, seconds: float) -> dict:
  timed = {name: _Timed(*make()) for name, make in pipelines.items()}
  for _ in range(rounds):
    for t in timed.values():
      t.round(seconds)
  return timed


def main(argv):
  del argv
  if _JPEG_DIR.value:
    _run(_JPEG_DIR.value)
    return
  with tempfile.TemporaryDirectory() as root:
    _run(_make_jpegs(root, _NUM_JPEGS.value))


def _run(jpeg_dir: str) -> None:
  imagenet = sources.folder_source(jpeg_dir, family="imagenet")
  statistics = stats_lib.compute(imagenet, max_images=64)
  config = pipeline.InputConfig(global_batch_size=_BATCH.value)
  device_config = dataclasses.replace(config, resample_on_device=True)
  test_config = pipeline.InputConfig(global_batch_size=_BATCH.value,
                                     test_flip=False)

  def evaluation(mode, per_example):
    def make():
      ds = pipeline.eval_dataset(imagenet, statistics, test_config,
                                 split="train", mode=mode,
                                 batch_size=_BATCH.value)
      return ds.repeat(), per_example
    return make

  pipelines = {
      "decode_only": lambda: (_decode_only(imagenet),
                              lambda e: int(e.shape[0])),
      "window_decode_only": lambda: (_window_decode_only(imagenet),
                                     lambda e: int(e.shape[0])),
      "imagenet_train": lambda: (pipeline.train_dataset(imagenet, statistics,
                                                        config),
                                 _batch_size),
      "imagenet_train_device_resample_host": lambda: (
          pipeline.train_dataset(imagenet, statistics, device_config),
          _batch_size),
      _DEVICE_PART: lambda: (_device_part(imagenet, statistics,
                                          device_config), _batch_size),
      "imagenet_center": evaluation("center", _batch_size),
      "imagenet_10crop": evaluation("10crop", _batch_size),
      "imagenet_multiscale": evaluation("multiscale", lambda e: 1),
  }
  if _CIFAR_DIR.value:
    cifar = sources.folder_source(_CIFAR_DIR.value, family="cifar")
    cifar_stats = stats_lib.compute(cifar, max_images=64)
    pipelines["cifar_train"] = lambda: (pipeline.train_dataset(
        cifar, cifar_stats, pipeline.InputConfig(global_batch_size=128)),
                                        _batch_size)
  with machine.OthersLoad() as others:
    timed = _measure(pipelines, _ROUNDS.value, _SECONDS.value)
  decode = timed["decode_only"].rate
  record = {"date": time.strftime("%Y-%m-%d"), "cores": os.cpu_count(),
            "cpu": machine.cpu_model(), "rounds": _ROUNDS.value,
            "seconds_per_round": _SECONDS.value,
            "gpu_images_per_sec": _GPU_RATE.value,
            "other_processes_cores_busy": others.cores}
  device = timed.pop(_DEVICE_PART)
  host = timed["imagenet_train_device_resample_host"].rate
  record[f"{_DEVICE_PART}_images_per_sec_per_core"] = round(device.rate, 1)
  record[f"{_DEVICE_PART}_us_per_image"] = round(1e6 / device.rate, 1)
  # Both parts on one CPU: the host path's work, moved, not removed.
  both = 1 / (1 / host + 1 / device.rate)
  record["imagenet_train_device_resample_both_on_cpu_images_per_sec_per_core"
         ] = round(both, 1)
  record["imagenet_train_device_resample_host_over_imagenet_train"] = round(
      host / timed["imagenet_train"].rate, 3)
  for name, t in timed.items():
    record[f"{name}_images_per_sec_per_core"] = round(t.rate, 1)
    record[f"{name}_wall_images_per_sec_one_thread"] = round(t.wall_rate, 1)
    if name != "decode_only":
      record[f"{name}_over_decode_only"] = round(t.rate / decode, 3)
    record[f"{name}_cores_per_gpu"] = round(_GPU_RATE.value / t.rate, 2)
  for name in ("imagenet_train", "imagenet_train_device_resample_host"):
    record[f"{name}_over_window_decode_only"] = round(
        timed[name].rate / timed["window_decode_only"].rate, 3)
  steps = {}
  if _STEPS.value:
    steps["imagenet"] = _step_rate(zoo.ModelConfig("imagenet", depth=18), 32,
                                   _STEPS.value)
    steps["cifar"] = _step_rate(zoo.ModelConfig("cifar", depth=20), 128,
                                _STEPS.value * 4)
  for family, rate in steps.items():
    record[f"{family}_resnet_step_images_per_sec"] = round(rate, 1)
    if f"{family}_train" in timed:
      # One core's pipeline against the step on every core.
      record[f"{family}_train_one_core_over_step"] = round(
          timed[f"{family}_train"].rate / rate, 2)
  if _FORMAT.value == "json":
    print(json.dumps(record))
    return
  print(f"{'input, per core (images per CPU-second)':<44} {'images/s':>9} "
        f"{'/ decode':>9} {'cores for ' + str(int(_GPU_RATE.value)) + '/s':>14}")
  for name, t in timed.items():
    print(f"{name:<44} {t.rate:>9.1f} {t.rate / decode:>9.3f} "
          f"{_GPU_RATE.value / t.rate:>14.2f}")
  print(f"resample on device: its device part on this CPU "
        f"{device.rate:.1f} images/s per core ({1e6 / device.rate:.0f} us "
        f"per image); host and device parts both on one CPU {both:.1f}")
  for family, rate in steps.items():
    print(f"{family} cheapest ResNet's step, all cores: {rate:.1f} images/s")
  print(f"other processes kept {others.cores} of {os.cpu_count()} cores busy "
        "meanwhile")
  print(json.dumps(record))


if __name__ == "__main__":
  app.run(main)
