r"""Input pipeline throughput against the training step that consumes it, on this machine.

Measures, in one run:
* the ImageNet training pipeline (scale augmentation with fused JPEG
  decode-and-crop, flips, mean, colour noise) on real-sized JPEGs (500x375,
  generated with natural-image-like statistics unless --jpeg_dir is given);
* the CIFAR training pipeline (pad, crop, flip, mean) on a CIFAR-10 image
  folder (--cifar_dir, e.g. the unpacked JPEG copy), if given;
* the training step (forward, backward, update: the real Trainer, as
  `tf_resnet.train` builds it; `in_memory.py`) of the cheapest network of
  each family
  (ImageNet ResNet-18 at 224x224, CIFAR ResNet-20), on a batch held in
  memory: every other network of the zoo consumes images more slowly.

Prints a table and one JSON line. The pipeline keeps up when its images/s
exceed the step's.

  python benchmarks/input_pipeline.py --cifar_dir=/tmp/cifar10
"""

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
from tf_resnet.data import pipeline
from tf_resnet.data import sources
from tf_resnet.data import stats as stats_lib
from tf_resnet.model import zoo

_JPEG_DIR = flags.DEFINE_string("jpeg_dir", None,
                                "An ImageNet-style folder to read instead of "
                                "generated 500x375 JPEGs.")
_NUM_JPEGS = flags.DEFINE_integer("num_jpegs", 256, "JPEGs to generate.")
_CIFAR_DIR = flags.DEFINE_string("cifar_dir", None,
                                 "A CIFAR-10 image folder (train/<class>/*).")
_SECONDS = flags.DEFINE_float("seconds", 15.0,
                              "Measuring time per pipeline.")
_STEPS = flags.DEFINE_integer("steps", 5, "Timed training steps per network.")
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


def _pipeline_rate(source: sources.Source, batch: int, seconds: float) -> float:
  statistics = stats_lib.compute(source, max_images=64)
  ds = pipeline.train_dataset(source, statistics,
                              pipeline.InputConfig(global_batch_size=batch))
  iterator = iter(ds)
  for _ in range(3):  # Warm-up: tracing, thread pools, file cache.
    next(iterator)
  images, began = 0, time.perf_counter()
  while time.perf_counter() - began < seconds:
    images += int(next(iterator)[1].shape[0])
  return images / (time.perf_counter() - began)


def _step_rate(config: zoo.ModelConfig, batch: int, steps: int) -> float:
  """Images/s of the real Trainer's step on one batch in memory."""
  trainer = in_memory.InMemoryTrainer(config, batch)
  trainer.run(1)  # Tracing.
  seconds, _ = trainer.time(steps, steps)
  return batch * steps / seconds


def main(argv):
  del argv
  cores = os.cpu_count()
  rows = []
  jpeg_dir = _JPEG_DIR.value or _make_jpegs(tempfile.mkdtemp(),
                                            _NUM_JPEGS.value)
  imagenet = sources.folder_source(jpeg_dir, family="imagenet")
  rows.append(("imagenet pipeline (500x375 JPEG)", "input",
               _pipeline_rate(imagenet, 32, _SECONDS.value)))
  rows.append(("imagenet ResNet-18 step, batch 32", "step",
               _step_rate(zoo.ModelConfig("imagenet", depth=18), 32,
                          _STEPS.value)))
  if _CIFAR_DIR.value:
    cifar = sources.folder_source(_CIFAR_DIR.value, family="cifar")
    rows.append(("cifar pipeline (CIFAR-10 JPEG folder)", "input",
                 _pipeline_rate(cifar, 128, _SECONDS.value)))
  rows.append(("cifar ResNet-20 step, batch 128", "step",
               _step_rate(zoo.ModelConfig("cifar", depth=20), 128,
                          _STEPS.value * 4)))
  record = {"cores": cores, "date": time.strftime("%Y-%m-%d"),
            **{name: {"kind": kind, "images_per_sec": round(rate, 1),
                      "images_per_sec_per_core": round(rate / cores, 1)}
               for name, kind, rate in rows}}
  for family in ("imagenet", "cifar"):
    rates = {kind: rate for name, kind, rate in rows
             if name.startswith(family)}
    if len(rates) == 2:
      record[f"{family}_pipeline_over_step"] = round(
          rates["input"] / rates["step"], 2)
  if _FORMAT.value == "json":
    print(json.dumps(record))
    return
  print(f"{'what':<40} {'images/s':>10} {'per core':>10}")
  for name, _, rate in rows:
    print(f"{name:<40} {rate:>10.1f} {rate / cores:>10.1f}")
  for family in ("imagenet", "cifar"):
    key = f"{family}_pipeline_over_step"
    if key in record:
      print(f"{family}: the pipeline delivers {record[key]}x what the "
            "cheapest network's step consumes")
  print(json.dumps(record))


if __name__ == "__main__":
  app.run(main)
