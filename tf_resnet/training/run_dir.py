"""A training run's directory: its layout, and the one reader of what training wrote.

`tf_resnet.train` writes into its model_dir:

    config.json       the TrainConfig of the run (rewritten on resume)
    stats.json        the per-pixel mean and RGB components (once)
    labels.txt        one class name per line
    metrics.jsonl     one JSON line per logged interval and evaluation,
                      after a `start` line from each process of the run
    evaluator_metrics.jsonl  an evaluator's (--mode=continuous_eval)
                      evaluations of the checkpoints, one `evaluated` line
                      after each checkpoint's
    ckpt-N.*          the recent checkpoints (tf.train.CheckpointManager)
    best/ckpt-N.*     the checkpoint with the best validation error
    train/ eval/ test/  TensorBoard summaries
    damaged/          checkpoints that could not be read, moved aside

Evaluation, export, plotting and conversion read (or write) runs through this
module, so the layout has one home.
"""

import dataclasses
import json
import os
import re
import time
from typing import Optional

from absl import logging
import tensorflow as tf

from tf_resnet.data import pipeline
from tf_resnet.data import stats as stats_lib
from tf_resnet.model import zoo
from tf_resnet.training import config as config_lib

CONFIG_FILE = "config.json"
STATS_FILE = "stats.json"
METRICS_FILE = "metrics.jsonl"
# The kind of metrics.jsonl's line that a process writes before its first
# step: its step and time, so readers count only the time the run ran.
START_RECORD = "start"
# An evaluator's log (tf_resnet.training.continuous_eval): its `eval` and
# `test` lines, like metrics.jsonl's, in a file of its own.
EVALUATOR_METRICS_FILE = "evaluator_metrics.jsonl"
LABELS_FILE = "labels.txt"
BEST_DIR = "best"
DAMAGED_DIR = "damaged"
# What a TrainingError says when there is nothing to fall back to.
NO_CHECKPOINT = "(none: no checkpoint was saved)"


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


def write_atomically(path: str, text: str) -> None:
  """Writes `text` to `path` through a temporary file and a rename."""
  tmp = f"{path}.tmp-{os.getpid()}"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(text)
  tf.io.gfile.rename(tmp, path, overwrite=True)


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
  text = _read(os.path.join(model_dir, CONFIG_FILE))
  statistics = stats_lib.Statistics.from_json(
      _read(os.path.join(model_dir, STATS_FILE)))
  labels_path = os.path.join(model_dir, LABELS_FILE)
  labels = (_read(labels_path).splitlines()
            if tf.io.gfile.exists(labels_path) else None)
  return Run(model_dir, config_lib.model_config_from_json(text),
             config_lib.data_config_from_json(text),
             config_lib.input_config_from_json(text), statistics, labels)


def evaluator_records(model_dir: str) -> list[dict]:
  """The lines of the run's evaluator log (EVALUATOR_METRICS_FILE), in order.

  A partial last line (an evaluator killed while writing) is not one.
  """
  path = os.path.join(model_dir, EVALUATOR_METRICS_FILE)
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    text = f.read()
  return [json.loads(line)
          for line in text[:text.rfind("\n") + 1].splitlines()
          if line.strip()]


def checkpoints(directory: str) -> list[str]:
  """The checkpoints a CheckpointManager keeps in `directory`, newest first."""
  state = tf.train.get_checkpoint_state(directory)
  if state is None:
    return []
  paths = list(state.all_model_checkpoint_paths) or [
      state.model_checkpoint_path]
  # The state file may hold paths relative to the directory.
  paths = [p if os.path.isabs(p) else os.path.join(directory, p)
           for p in paths]
  return sorted(paths, key=checkpoint_number, reverse=True)


def checkpoint_number(path: str) -> int:
  """N of a CheckpointManager's `.../ckpt-N` (-1 for another name)."""
  match = re.search(r"-(\d+)$", path)
  return int(match.group(1)) if match else -1


# What TensorFlow's checkpoint reader raises for a damaged or missing file:
# a truncated data file (IndexError: "Read less bytes than requested"), a
# corrupted index or data file, a file that is gone. Anything else (no
# permission, storage unavailable, out of memory) is not the file's fault
# and is raised, not taken for damage.
_DAMAGE = (IndexError, tf.errors.DataLossError, tf.errors.OutOfRangeError,
           tf.errors.NotFoundError, tf.errors.InvalidArgumentError)


def checkpoint_problem(path: str) -> Optional[str]:
  """Why the checkpoint at `path` cannot be read, or None if every tensor reads.

  Reads every saved tensor once: a truncated or corrupted data file fails
  here, before anything is restored from it.

  Raises:
    tf.errors.OpError: for a failure that is not the file's (permissions,
      storage), which must not make a good checkpoint look damaged.
  """
  try:
    reader = tf.train.load_checkpoint(path)
    for key in reader.get_variable_to_shape_map():
      reader.get_tensor(key)
  except _DAMAGE as e:
    message = getattr(e, "message", None) or str(e) or type(e).__name__
    return f"{type(e).__name__}: {message.splitlines()[0][:200]}"
  return None


def newest_readable(directory: str, *, move_damaged: bool
                    ) -> tuple[Optional[str], list[tuple[str, str]]]:
  """The newest checkpoint in `directory` that reads, and the damaged newer ones.

  Args:
    directory: where a CheckpointManager saved.
    move_damaged: move each damaged checkpoint's files into
      `directory/damaged/` (kept, never deleted) and drop it from the
      manager's list, so that a later save with the same number cannot
      overwrite it and the manager does not try it again.

  Returns:
    (path or None, [(damaged path, problem), ...] newest first).
  """
  damaged = []
  for path in checkpoints(directory):
    problem = checkpoint_problem(path)
    if problem is None:
      if damaged and move_damaged:
        _forget(directory, path, [d for d, _ in damaged])
      return path, damaged
    logging.warning("checkpoint %s cannot be read (%s)", path, problem)
    damaged.append((path, problem))
  if damaged and move_damaged:
    _forget(directory, None, [d for d, _ in damaged])
  return None, damaged


def _forget(directory: str, newest: Optional[str],
            damaged: list[str]) -> None:
  """Moves damaged checkpoints aside and points the state file at `newest`."""
  aside = os.path.join(directory, DAMAGED_DIR,
                       time.strftime("%Y%m%d-%H%M%S"))
  tf.io.gfile.makedirs(aside)
  for path in damaged:
    for name in tf.io.gfile.glob(path + ".*"):
      tf.io.gfile.rename(name, os.path.join(aside, os.path.basename(name)))
  if newest is None:
    # Nothing reads: the state file stays, so that a rerun refuses again
    # instead of starting afresh over the run.
    return
  kept = [p for p in checkpoints(directory) if p not in damaged]
  # The CheckpointState text proto that CheckpointManager reads, oldest
  # first, with paths relative to the directory as TensorFlow writes them
  # (TensorFlow's own writer for it is deprecated).
  write_atomically(os.path.join(directory, "checkpoint"), "".join(
      [f"model_checkpoint_path: {json.dumps(os.path.basename(newest))}\n"]
      + [f"all_model_checkpoint_paths: {json.dumps(os.path.basename(p))}\n"
         for p in reversed(kept)]))


def latest_checkpoint(directory: str, flag: str = "--checkpoint") -> str:
  """The newest checkpoint in `directory`, checked to read.

  Args:
    directory: where a CheckpointManager saved.
    flag: the flag through which the user can name another checkpoint.

  Raises:
    RunDirError: without a checkpoint, or naming the newest one's damage
      (and the older ones that do read, to pass as `flag`).
  """
  paths = checkpoints(directory)
  if not paths:
    raise RunDirError(f"no checkpoint in {directory}")
  problem = checkpoint_problem(paths[0])
  if problem:
    readable = [p for p in paths[1:] if checkpoint_problem(p) is None]
    raise RunDirError(
        f"the newest checkpoint {paths[0]} is damaged ({problem}); "
        + (f"pass {flag}={readable[0]} to use the newest one that reads"
           if readable else "no older checkpoint reads either"))
  return paths[0]


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
    RunDirError: without a checkpoint, for a damaged one, or if the
      checkpoint does not hold the network the config describes.
  """
  model = zoo.build_model(run.model)
  step = tf.Variable(0, dtype=tf.int64)
  directory = (os.path.join(run.model_dir, BEST_DIR) if best
               else run.model_dir)
  if checkpoint:
    problem = checkpoint_problem(checkpoint)
    if problem:
      raise RunDirError(f"checkpoint {checkpoint} cannot be read: {problem}")
  path = checkpoint or latest_checkpoint(directory)
  try:
    tf.train.Checkpoint(model=model, step=step).read(
        path).expect_partial().assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.OpError) as e:
    raise RunDirError(f"{path} does not hold a {run.model.display_name} as "
                      f"{run.model_dir}/config.json describes: "
                      f"{str(e)[:300]}") from None
  return model, int(step.numpy()), path
