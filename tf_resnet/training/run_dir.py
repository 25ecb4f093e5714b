"""Reading a finished (or running) training run: its config, statistics, labels and checkpoints.

`tf_resnet.train` writes `config.json`, `stats.json`, `labels.txt`,
`ckpt-*` and `best/ckpt-*` into its model_dir; evaluation and export read
them back through this module.
"""

import dataclasses
import os
from typing import Optional

import tensorflow as tf

from tf_resnet.data import pipeline
from tf_resnet.data import stats as stats_lib
from tf_resnet.model import zoo
from tf_resnet.training import config as config_lib
from tf_resnet.training import loop


class RunDirError(ValueError):
  """The model_dir is not (or not entirely) a training run; says what is missing."""


@dataclasses.dataclass(frozen=True)
class Run:
  """What a training run wrote, besides its checkpoints."""

  model_dir: str
  model: zoo.ModelConfig
  data: config_lib.DataConfig
  input: pipeline.InputConfig
  statistics: stats_lib.Statistics
  labels: Optional[list[str]]  # None for runs from before labels.txt.


def _read(path: str) -> str:
  if not tf.io.gfile.exists(path):
    raise RunDirError(f"{path} does not exist: --model_dir must be a "
                      "training run of tf_resnet.train")
  with tf.io.gfile.GFile(path) as f:
    return f.read()


def load(model_dir: str) -> Run:
  """Reads a run's config, statistics and labels.

  Raises:
    RunDirError: if the config or the statistics are missing.
  """
  text = _read(os.path.join(model_dir, loop.CONFIG_FILE))
  statistics = stats_lib.Statistics.from_json(
      _read(os.path.join(model_dir, loop.STATS_FILE)))
  labels_path = os.path.join(model_dir, loop.LABELS_FILE)
  labels = (_read(labels_path).splitlines()
            if tf.io.gfile.exists(labels_path) else None)
  return Run(model_dir, config_lib.model_config_from_json(text),
             config_lib.data_config_from_json(text),
             config_lib.input_config_from_json(text), statistics, labels)


def restore(run: Run, checkpoint: Optional[str] = None, best: bool = False
            ) -> tuple[zoo.Network, int, str]:
  """Builds the run's network and restores a checkpoint into it.

  Args:
    run: the run.
    checkpoint: a checkpoint path; default the latest one.
    best: take the latest of `model_dir/best` (best validation error).

  Returns:
    (network, global step, checkpoint path).

  Raises:
    RunDirError: without a checkpoint, or if the checkpoint does not hold
      the network the config describes.
  """
  model = zoo.build_model(run.model)
  step = tf.Variable(0, dtype=tf.int64)
  directory = (os.path.join(run.model_dir, loop.BEST_DIR) if best
               else run.model_dir)
  path = checkpoint or tf.train.latest_checkpoint(directory)
  if not path:
    raise RunDirError(f"no checkpoint in {directory}")
  try:
    tf.train.Checkpoint(model=model, step=step).read(
        path).expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    raise RunDirError(f"{path} does not hold a {run.model.display_name} as "
                      f"{run.model_dir}/config.json describes: "
                      f"{str(e)[:300]}") from None
  return model, int(step.numpy()), path
