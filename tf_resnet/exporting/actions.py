"""Exporting during training, as an action the train binary passes to the Controller.

tf.estimator's exporters in spirit: `ExportSavedModel` writes a new version
under the export base path at the end of training (FinalExporter) and, with
`on_improvement`, whenever the validation error improves (BestExporter),
keeping the newest few versions.
"""

import tempfile
from typing import Callable, Sequence, TextIO

import tensorflow as tf

from tf_resnet.exporting import serving_module
from tf_resnet.exporting import writer
from tf_resnet.training import actions
from tf_resnet.training import train_lib


class ExportSavedModel(actions.Action):
  """Exports the trained network with its preprocessing and labels."""

  def __init__(self, make_module: Callable[[], serving_module.ServingModule],
               export_dir: str, *, keep: int, on_improvement: bool,
               is_chief: bool, say: Callable[[str], None] = print):
    """Constructs the action.

    Args:
      make_module: builds the module to export (over the live network).
      export_dir: the model's base path.
      keep: exported versions to keep.
      on_improvement: also export whenever the validation error improves.
      is_chief: whether this worker's exports are kept; the others write
        into scratch space (saving reads distributed variables, which takes
        every worker).
      say: where a line about each export goes.
    """
    self._make_module = make_module
    self._export_dir = export_dir
    self._keep = keep
    self._on_improvement = on_improvement
    self._is_chief = is_chief
    self._say = say
    self._exported_at = None

  def _export(self, step: int, why: str) -> None:
    if step == self._exported_at:
      return
    module = self._make_module()
    if self._is_chief:
      path = writer.write(module, self._export_dir)
      writer.prune(self._export_dir, self._keep)
      self._say(f"step {step}: exported {path} ({why})")
    else:
      scratch = tempfile.mkdtemp(prefix="tf_resnet_worker_export_")
      writer.write(module, scratch)
      tf.io.gfile.rmtree(scratch)
    self._exported_at = step

  def on_validation(self, step, result, improved):
    if improved and self._on_improvement:
      self._export(step, "best validation error so far")

  def on_end(self, step):
    self._export(step, "end of training")


def for_experiment(experiment: train_lib.Experiment,
                   stream: TextIO) -> Sequence[actions.Action]:
  """The exports a run's config asks for (`export_dir`, `export_best`)."""
  config = experiment.config
  if not config.export_dir:
    return []

  def say(text: str) -> None:
    stream.write(text + "\n")
    stream.flush()

  return [ExportSavedModel(
      lambda: serving_module.for_run(
          experiment.trainer.model, config.model.family,
          experiment.statistics.mean_image, experiment.source.class_names),
      config.export_dir, keep=config.keep_exports,
      on_improvement=config.export_best, is_chief=experiment.is_chief,
      say=say)]
