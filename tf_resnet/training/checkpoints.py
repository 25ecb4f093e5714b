"""Saving and restoring a run's checkpoints, with only the chief's kept.

Under MultiWorkerMirroredStrategy every worker must take part in a save
(reading distributed variables involves all of them), so every worker saves;
the chief into the run's directory, the others into scratch space that is
emptied after each save. Every worker resumes from the chief's checkpoints.

A checkpoint that cannot be read (a truncated data file after a full disk or
a crash) does not stop the run: it is moved aside into `damaged/`, with a
warning naming it, and the run resumes from the newest one that reads.
"""

import os
import tempfile
from typing import Optional

from absl import logging
import tensorflow as tf

from tf_resnet.training import run_dir


class CheckpointError(RuntimeError):
  """No checkpoint of the run can be read."""


class Checkpointer:
  """Saves `checkpoint` every so often; restores the newest readable one."""

  def __init__(self, checkpoint: tf.train.Checkpoint, model_dir: str, *,
               is_chief: bool, max_to_keep: int,
               step_counter: tf.Variable, subdirectory: str = ""):
    """Constructs the saver.

    Args:
      checkpoint: what a checkpoint holds.
      model_dir: the run's directory (shared by the workers).
      is_chief: whether this worker's checkpoints are kept.
      max_to_keep: recent checkpoints kept.
      step_counter: numbers the checkpoints.
      subdirectory: under model_dir (e.g. `best`).
    """
    self.directory = (os.path.join(model_dir, subdirectory) if subdirectory
                      else model_dir)
    self.is_chief = is_chief
    self._scratch = (None if is_chief else
                     tempfile.mkdtemp(prefix="tf_resnet_worker_"))
    # Made at the first save, after `newest_readable` has put the state
    # file right: a manager reads the list of checkpoints once, and would
    # write a damaged one back into it.
    self._make_manager = lambda: tf.train.CheckpointManager(
        checkpoint, self._scratch or self.directory, max_to_keep=max_to_keep,
        step_counter=step_counter)
    self._manager = None

  def newest_readable(self) -> tuple[Optional[str], list[tuple[str, str]]]:
    """The newest of the chief's checkpoints that reads, and the damaged newer ones.

    The chief moves damaged checkpoints into `damaged/` (kept, never
    deleted); the other workers only skip them.

    Raises:
      CheckpointError: if there are checkpoints and none of them reads.
    """
    path, damaged = run_dir.newest_readable(self.directory,
                                            move_damaged=self.is_chief)
    if path is None and damaged:
      names = ", ".join(f"{p} ({problem})" for p, problem in damaged)
      raise CheckpointError(
          f"no checkpoint in {self.directory} can be read: {names}. "
          + ("They were moved to "
             f"{os.path.join(self.directory, run_dir.DAMAGED_DIR)}/. "
             if self.is_chief else "")
          + "Start afresh with another --model_dir, or restore the files.")
    return path, damaged

  def save(self, step: int) -> str:
    """Saves a checkpoint numbered `step`; returns the chief's path."""
    if self._manager is None:
      self._manager = self._make_manager()
    path = self._manager.save(checkpoint_number=step)
    if self._scratch is not None:
      tf.io.gfile.rmtree(self._scratch)
      tf.io.gfile.makedirs(self._scratch)
      return os.path.join(self.directory, os.path.basename(path))
    return path

  @property
  def latest(self) -> Optional[str]:
    """The newest checkpoint this saver kept (the chief's), if any."""
    return tf.train.latest_checkpoint(self.directory)


def log_damaged(damaged: list[tuple[str, str]], resumed: Optional[str]) -> str:
  """A line for the user about damaged checkpoints that were skipped."""
  names = "; ".join(f"{path} ({problem})" for path, problem in damaged)
  text = (f"Warning: skipped damaged checkpoint(s) {names}; kept in "
          f"{run_dir.DAMAGED_DIR}/. Resuming from {resumed}.")
  logging.warning(text)
  return text
