"""The manual's ImageNet command (docs/data.md) on archives in ILSVRC2012's layout, as a user runs it.

`python -m tf_resnet.train --depth=18 --data_dir=D` with
`ILSVRC2012_img_train.tar` (per-synset tars of JPEGs) and
`ILSVRC2012_img_val.tar` in `D/downloads/manual/`: TFDS's real
`imagenet2012` builder prepares them (which needs importlib_resources), then
the binary trains, evaluates and checkpoints. Tiny: 3 synsets x 4 JPEGs of
48x64, 4 validation JPEGs, 2 steps of batch 2.
"""

import json
import os
import re
import shutil
import tempfile

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from tf_resnet.testing import imagenet
from tf_resnet.testing import processes

# What a checkpoint may hold beyond its variables: the object graph and the
# index. The old streamed input state (shuffle buffer, prefetched batches of
# 224x224 float images) was megabytes even here, ~1.9 GB on ImageNet.
_CHECKPOINT_OVERHEAD_BYTES = 256 << 10


def _variable_bytes(prefix: str) -> int:
  reader = tf.train.load_checkpoint(prefix)
  dtypes = reader.get_variable_to_dtype_map()
  return sum(int(np.prod(shape)) * dtypes[name].size
             for name, shape in reader.get_variable_to_shape_map().items()
             if dtypes[name] not in (tf.string, tf.variant))


class ImageNetMainTest(absltest.TestCase):

  def _tempdir(self) -> str:
    path = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  def test_train_prepares_the_archives_trains_and_checkpoints(self):
    data_dir, model_dir = self._tempdir(), self._tempdir()
    imagenet.write_archives(os.path.join(data_dir, "downloads", "manual"))
    # With the crop's resampling in the step, as for a GPU that the host's
    # cores could not feed (the default path runs in the Makefile's Bazel
    # smoke, on the same archives).
    run = processes.run(
        "tf_resnet.train", "--depth=18", f"--data_dir={data_dir}",
        f"--model_dir={model_dir}", "--batch_size=2", "--train_steps=2",
        "--steps_per_loop=1", "--checkpoint_every_steps=1",
        "--stats_max_images=12", "--holdout=4", "--resample_on_device")
    self.assertEqual(run.returncode, 0, run.stderr[-3000:])
    with open(os.path.join(model_dir, "config.json")) as f:
      self.assertTrue(json.load(f)["input"]["resample_on_device"])
    self.assertNotIn("importlib_resources", run.stderr)
    self.assertIn("Training ResNet-18 (B) on imagenet2012: 1000 classes, "
                  "imagenet family; train 8, holdout 4, test 4", run.stdout)
    # Decisions on the 4 held-out training images; the validation set
    # (4 images) is only logged.
    self.assertRegex(run.stdout, r"Done at step 2: top-1 error \S+, top-5 "
                     r"error \S+ on 4 examples")
    self.assertIn("step 2: holdout top-1 error", run.stdout)
    self.assertTrue(os.path.isdir(os.path.join(data_dir, "imagenet2012")))
    with open(os.path.join(model_dir, "labels.txt")) as f:
      self.assertEqual(f.read().split()[:3], list(imagenet.SYNSETS))

    # The checkpoint holds the run, not the input pipeline: the step and
    # seed resume the order.
    prefix = tf.train.latest_checkpoint(model_dir)
    self.assertEqual(re.sub(r".*/", "", prefix), "ckpt-2")
    names = tf.train.load_checkpoint(prefix).get_variable_to_shape_map()
    self.assertEmpty([n for n in names if "iterator" in n.lower()])
    size = sum(os.path.getsize(os.path.join(model_dir, f))
               for f in os.listdir(model_dir)
               if f.startswith("ckpt-2."))
    self.assertLess(size - _variable_bytes(prefix), _CHECKPOINT_OVERHEAD_BYTES)


if __name__ == "__main__":
  absltest.main()
