"""The errors a training run stops with."""


class TrainingError(RuntimeError):
  """The run cannot go on; the message says why and what was kept."""


class WorkerLost(TrainingError):
  """Another worker of a multi-worker run failed or vanished mid-run.

  Nothing is wrong with the run itself: restarting every worker resumes it
  from its last checkpoint.
  """
