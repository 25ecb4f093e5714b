"""What happens after an evaluation or at the end of training, passed in by the caller.

Orbit's actions in spirit: the Controller decides when; an action decides
what. The library's loop never imports the exporter: the train binary passes
`tf_resnet.exporting.actions.ExportSavedModel` as an action.
"""

import tensorflow as tf

from tf_resnet.training import checkpoints
from tf_resnet.training import evaluation
from tf_resnet.training import run_dir


class Action:
  """Called by the Controller; the defaults do nothing."""

  def on_validation(self, step: int, result: evaluation.EvalResult,
                    improved: bool) -> None:
    """After an evaluation on the validation split.

    Args:
      step: the global step.
      result: the validation errors.
      improved: whether the top-1 error is the best so far.
    """

  def on_end(self, step: int) -> None:
    """After the last step's checkpoint was saved."""


class SaveBestCheckpoint(Action):
  """Keeps the network with the best validation error in `model_dir/best`.

  The best error is saved with it: a run resumed from a regular checkpoint
  older than the best one (after `kill -9`) starts from the lower of the two,
  so a worse model never replaces the best.
  """

  def __init__(self, model: tf.Module, step: tf.Variable,
               best_error: tf.Variable, model_dir: str, *, is_chief: bool):
    self._saver = checkpoints.Checkpointer(
        tf.train.Checkpoint(model=model, step=step, best_error=best_error),
        model_dir, is_chief=is_chief, max_to_keep=1, step_counter=step,
        subdirectory=run_dir.BEST_DIR)
    saved = tf.train.latest_checkpoint(self._saver.directory)
    if saved:
      reader = tf.train.load_checkpoint(saved)
      key = "best_error/.ATTRIBUTES/VARIABLE_VALUE"
      if reader.has_tensor(key):  # Not in best/ of older versions.
        best_error.assign(min(float(best_error),
                              float(reader.get_tensor(key))))

  def on_validation(self, step, result, improved):
    if improved:
      self._saver.save(step)
