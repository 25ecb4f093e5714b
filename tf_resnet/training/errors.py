"""The error a training run stops with."""


class TrainingError(RuntimeError):
  """The run cannot go on; the message says why and what was kept."""
