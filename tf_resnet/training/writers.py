"""Where a run's metrics go: TensorBoard summaries and metrics.jsonl, written by the chief.

`create_writer(model_dir, just_logging=not chief)` is the one place that
knows that only the chief writes (flax's `create_default_writer` in spirit):
the other workers get a writer that writes nothing.
"""

import json
import os
import time
from typing import Any

import tensorflow as tf

from tf_resnet.training import run_dir


class MetricsWriter:
  """Writes scalars of named kinds (`train`, `eval`, `test`) for a step."""

  def __init__(self, model_dir: str, filename: str = run_dir.METRICS_FILE):
    """Constructs the writer.

    Args:
      model_dir: the run's directory; summaries go to `model_dir/<kind>`.
      filename: the JSON-lines log under model_dir: the trainer's
        metrics.jsonl, or an evaluator's own file (two processes never
        append to one file).
    """
    self._model_dir = model_dir
    self._summaries = {}
    self._path = os.path.join(model_dir, filename)

  def write(self, kind: str, step: int, values: dict[str, float]) -> None:
    """Logs `values` at `step`: TensorBoard under `model_dir/kind`, one JSON line."""
    if kind not in self._summaries:
      self._summaries[kind] = tf.summary.create_file_writer(
          os.path.join(self._model_dir, kind))
    with self._summaries[kind].as_default(step=step):
      for name, value in values.items():
        tf.summary.scalar(name, value)
    self.write_record({"kind": kind, "step": step, "time": time.time(),
                       **values})

  def write_record(self, record: dict[str, Any]) -> None:
    """Appends one JSON line to the log."""
    with tf.io.gfile.GFile(self._path, "a") as f:
      f.write(json.dumps(record) + "\n")

  def flush(self) -> None:
    for writer in self._summaries.values():
      writer.flush()


class _NoWriter(MetricsWriter):
  """A non-chief worker's writer: writes nothing."""

  def __init__(self):  # pylint: disable=super-init-not-called
    pass

  def write(self, kind, step, values):
    pass

  def write_record(self, record):
    pass

  def flush(self):
    pass


def create_writer(model_dir: str, *, just_logging: bool) -> MetricsWriter:
  """The run's metrics writer; one that writes nothing when `just_logging`."""
  return _NoWriter() if just_logging else MetricsWriter(model_dir)
