"""The errors a training run stops with."""


class TrainingError(RuntimeError):
  """The run cannot go on; the message says why and what was kept."""


class WorkerLost(TrainingError):
  """Another worker of a multi-worker run failed or vanished mid-run.

  Nothing is wrong with the run itself: restarting every worker resumes it
  from its last checkpoint.
  """


class TaskSilent(WorkerLost):
  """Another task of the run sent nothing for longer than its timeout.

  An evaluator that sees no new checkpoint, or a trainer that sees no
  validation error from its evaluator: the other side may be restarting
  (a preempted pod, one not scheduled yet), so this is retryable like a
  lost worker, and the same command goes on from where the run is.
  """
