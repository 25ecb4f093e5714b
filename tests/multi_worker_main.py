r"""One worker of multi_worker_test's MultiWorkerMirroredStrategy run.

Trains ResNet-8 on digits for a few steps with the cluster that TF_CONFIG
describes, then saves every variable of the trained network (its value on
this worker) to an .npz file, keyed by variable name, so that the test can
compare what the workers hold.

Usage:
  TF_CONFIG='{"cluster": {"worker": ["127.0.0.1:P0", "127.0.0.1:P1"]},
              "task": {"type": "worker", "index": 0}}' \
  python tests/multi_worker_main.py --model_dir=/tmp/run --output=/tmp/w0.npz
"""

import os
import sys

from tf_resnet import startup

startup.prepare_tensorflow()

# pylint: disable=g-import-not-at-top,g-bad-import-order
from absl import app
from absl import flags
from absl import logging
import numpy as np

from tf_resnet.data import pipeline
from tf_resnet.exporting import actions as export_actions
from tf_resnet.model import zoo
from tf_resnet.training import config as config_lib
from tf_resnet.training import train_lib
# pylint: enable=g-import-not-at-top,g-bad-import-order

_MODEL_DIR = flags.DEFINE_string("model_dir", None,
                                 "The run's directory, shared by the workers.")
_OUTPUT = flags.DEFINE_string("output", None,
                              "Where this worker's variables go (.npz).")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 6, "Steps to train to.")
_EXPORT_DIR = flags.DEFINE_string("export_dir", None,
                                  "Export a SavedModel here at the end.")
flags.mark_flags_as_required(["model_dir", "output"])


def make_config(model_dir: str, train_steps: int = 6,
                export_dir=None) -> config_lib.TrainConfig:
  """The tiny run both workers make: ResNet-8 on digits, 6 steps of batch 16."""
  return config_lib.TrainConfig(
      model=zoo.ModelConfig(family="cifar", depth=8, num_classes=10),
      # A validation split, so that the best checkpoint is kept too.
      data=config_lib.DataConfig(dataset="digits", holdout=100),
      input=pipeline.InputConfig(global_batch_size=16),
      schedule=config_lib.ScheduleConfig(kind="steps", boundaries=()),
      model_dir=model_dir,
      train_steps=train_steps,
      export_dir=export_dir,
      steps_per_loop=3,
      strategy="multi_worker",
      eval_examples=40)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if "TF_CONFIG" not in os.environ:
    raise app.UsageError("TF_CONFIG must describe the cluster and this task")
  # Without -v, TensorFlow would log every collective it launches.
  if not flags.FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  result = train_lib.train(
      make_config(_MODEL_DIR.value, _TRAIN_STEPS.value, _EXPORT_DIR.value),
      make_actions=lambda e: export_actions.for_experiment(e, sys.stdout))
  # Weights are mirrored: this worker's copy. Batch-norm statistics are each
  # worker's own and read as their mean over the workers, as a checkpoint
  # saves them.
  values = {}
  for variable in result.model.variables:
    if variable.name in values:
      raise ValueError(f"two variables are named {variable.name}")
    values[variable.name] = variable.numpy()
  np.savez(_OUTPUT.value, **values)
  print(f"step {result.step}: saved {len(values)} variables to "
        f"{_OUTPUT.value}", flush=True)


if __name__ == "__main__":
  app.run(main)
