r"""What a streamed ImageNet run's checkpoint holds beyond its variables, measured.

Writes ImageNet-like archives in the real layout (500x375 JPEGs of about
ImageNet's average size, ~105 KB; by default 20,000 training images, more
than one epoch of any shuffle buffer), lets TFDS's real `imagenet2012`
builder prepare them, trains ResNet-18 for a few steps with the train binary,
resumes it for one more step, and reports each checkpoint's size against the
bytes of the variables it holds (model, optimizer slots, step, schedule):
the difference is the input pipeline's state.

  python benchmarks/stream_checkpoint.py --data_dir=/tmp/imagenet_like
"""

import glob
import json
import os
import sys
import tempfile
import time

from tf_resnet import startup

startup.prepare_tensorflow()

# pylint: disable=g-import-not-at-top,g-bad-import-order
from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from tf_resnet.testing import imagenet
from tf_resnet.testing import processes

_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "TFDS data directory; archives are written "
                                "to its downloads/manual/ unless prepared.")
_TRAIN_IMAGES = flags.DEFINE_integer("train_images", 20_000,
                                     "Training JPEGs to generate.")
_SYNSETS = flags.DEFINE_integer("synsets", 20, "Training synsets.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Global batch.")
_STEPS = flags.DEFINE_integer("steps", 2, "Steps of the first run.")


def _synsets(count: int) -> list[str]:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  path = tfds.core.tfds_path("datasets/imagenet2012/labels.txt")
  return path.read_text().split()[:count]


def _checkpoint_bytes(prefix: str) -> dict[str, float]:
  files = glob.glob(prefix + ".data-*") + [prefix + ".index"]
  total = sum(os.path.getsize(f) for f in files)
  reader = tf.train.load_checkpoint(prefix)
  shapes = reader.get_variable_to_shape_map()
  dtypes = reader.get_variable_to_dtype_map()
  variables = sum(int(np.prod(shapes[k])) * dtypes[k].size
                  for k in shapes if dtypes[k] != tf.string
                  and dtypes[k] != tf.variant)
  return {"checkpoint_bytes": total, "variable_bytes": variables,
          "input_state_bytes": total - variables,
          "entries": len(shapes)}


def main(argv):
  del argv
  data_dir = _DATA_DIR.value or tempfile.mkdtemp(prefix="imagenet_like_")
  manual = os.path.join(data_dir, "downloads", "manual")
  if not glob.glob(os.path.join(data_dir, "imagenet2012", "*", "*.json")) \
      and not os.path.exists(os.path.join(manual, "ILSVRC2012_img_val.tar")):
    began = time.time()
    per_synset = _TRAIN_IMAGES.value // _SYNSETS.value
    imagenet.write_archives(manual, synsets=_synsets(_SYNSETS.value),
                            train_per_synset=per_synset, validation=50,
                            size=(375, 500), distinct_images=64)
    print(f"archives: {per_synset * _SYNSETS.value} training images in "
          f"{time.time() - began:.0f} s", flush=True)
  sizes = [os.path.getsize(p) for p in glob.glob(os.path.join(manual, "*"))]
  model_dir = tempfile.mkdtemp(prefix="stream_checkpoint_")
  common = ("--dataset=imagenet2012", f"--data_dir={data_dir}", "--depth=18",
            f"--batch_size={_BATCH.value}", "--steps_per_loop=1",
            "--stats_max_images=64", "--eval_examples=50", "--holdout=50",
            f"--model_dir={model_dir}")
  results = {"archive_bytes": sum(sizes)}
  for name, steps in (("first", _STEPS.value), ("resumed", _STEPS.value + 1)):
    began = time.time()
    run = processes.run("tf_resnet.train", *common, f"--train_steps={steps}",
                        timeout=3600)
    if run.returncode:
      sys.exit(f"{name} run failed:\n{run.stderr[-3000:]}")
    prefix = tf.train.latest_checkpoint(model_dir)
    results[name] = {"seconds": round(time.time() - began, 1),
                     "checkpoint": os.path.basename(prefix),
                     **_checkpoint_bytes(prefix)}
    print(json.dumps({name: results[name]}), flush=True)
  print(json.dumps(results))


if __name__ == "__main__":
  app.run(main)
