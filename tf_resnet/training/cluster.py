"""This process's place in a training cluster, read from TF_CONFIG.

TF_CONFIG is how TensorFlow jobs learn their cluster, and Kubeflow's
training-operator (TFJob) writes it for every pod as

    {"cluster": {"chief": ["job-chief-0.ns.svc:2222"],
                 "worker": ["job-worker-0.ns.svc:2222", ...],
                 "evaluator": ["job-evaluator-0.ns.svc:2222"]},
     "task": {"type": "worker", "index": 0},
     "environment": "cloud"}

(the replica type lowercased: `chief`, `master`, `worker`, `ps`,
`evaluator`; `environment` is a leftover of tf.contrib.learn that TensorFlow
ignores). This module only reads and checks it, without TensorFlow, so the
binary can decide what to run before TensorFlow's context exists:
MultiWorkerMirroredStrategy has to be built before any op runs (collective
ops are configured at program start-up).

Supported: `chief` and `worker` tasks train under MultiWorkerMirroredStrategy
(the chief, or worker 0 without one, writes the run's files); one `evaluator`
task evaluates the checkpoints beside them, as tf.estimator's evaluator did.
Not supported: `ps` (ParameterServerStrategy) and TFJob's legacy `master`.
"""

import dataclasses
import json
import os
from typing import Mapping, Optional

TF_CONFIG = "TF_CONFIG"
CHIEF = "chief"
WORKER = "worker"
EVALUATOR = "evaluator"
# The task types that train (the all-reduce ring).
TRAINING_TYPES = (CHIEF, WORKER)
SUPPORTED_TYPES = (CHIEF, WORKER, EVALUATOR)


class ClusterError(ValueError):
  """TF_CONFIG describes a cluster this binary cannot take part in."""


@dataclasses.dataclass(frozen=True)
class Task:
  """This process's task and the cluster around it.

  Attributes:
    type: `chief`, `worker` or `evaluator`.
    index: the task's index within its type.
    cluster: task type -> list of `host:port` addresses.
    environment: TF_CONFIG's `environment` key (TFJob writes `cloud`), or
      None.
  """
  type: str
  index: int
  cluster: Mapping[str, tuple[str, ...]]
  environment: Optional[str] = None

  @property
  def is_evaluator(self) -> bool:
    return self.type == EVALUATOR

  @property
  def is_chief(self) -> bool:
    """Whether this task writes the run's files (TensorFlow's rule)."""
    if self.type == CHIEF:
      return True
    return (self.type == WORKER and self.index == 0
            and not self.cluster.get(CHIEF))

  @property
  def num_training_workers(self) -> int:
    """The chief and the workers: the processes that train."""
    return sum(len(self.cluster.get(t, ())) for t in TRAINING_TYPES)

  @property
  def has_evaluator(self) -> bool:
    """Whether the cluster has an evaluator task beside its trainers."""
    return bool(self.cluster.get(EVALUATOR))

  @property
  def address(self) -> str:
    return self.cluster[self.type][self.index]

  def waiting_line(self) -> str:
    """What a training task says before it waits for the others to start.

    MultiWorkerMirroredStrategy's start blocks until every chief and worker
    task has connected, with no output and (in TensorFlow 2.21) no time
    limit; during it no Python code runs (the call holds the GIL), so
    Ctrl-C waits for its end, and TensorFlow's own SIGTERM handler (its
    coordination service's preemption notice) takes SIGTERM without
    stopping the process. So this is said first.
    """
    others = [f"{t} {i} at {a}" for t in TRAINING_TYPES
              for i, a in enumerate(self.cluster.get(t, ()))
              if (t, i) != (self.type, self.index)]
    return (f"{self.type} {self.index} of {self.num_training_workers} "
            f"training tasks, at {self.address}: waiting for "
            f"{', '.join(others) or 'no other task'} to start (TensorFlow "
            "waits without a time limit, and until they have, only SIGKILL "
            "stops this process)")


def parse(text: str) -> Task:
  """Reads a TF_CONFIG value.

  Args:
    text: the JSON of TF_CONFIG.

  Returns:
    The task it describes.

  Raises:
    ClusterError: naming what is wrong: not JSON, no `cluster` or `task`, an
      unsupported task type (`ps`, `master`), an index outside its type's
      list, more than one evaluator, or no chief or worker to train.
  """
  try:
    config = json.loads(text)
  except json.JSONDecodeError as e:
    raise ClusterError(f"{TF_CONFIG} is not JSON ({e}): {text[:200]!r}") from e
  if not isinstance(config, dict):
    raise ClusterError(f"{TF_CONFIG} must be a JSON object, not {text[:200]!r}")
  if "sparseCluster" in config:
    raise ClusterError(
        f"{TF_CONFIG} has a `sparseCluster` (TFJob's enableDynamicWorker, for "
        "ParameterServerStrategy): MultiWorkerMirroredStrategy needs the "
        "whole `cluster`; set enableDynamicWorker: false")
  cluster = config.get("cluster")
  task = config.get("task")
  if not isinstance(cluster, dict) or not cluster:
    raise ClusterError(f"{TF_CONFIG} has no `cluster`: {text[:200]!r}")
  if not isinstance(task, dict) or "type" not in task:
    raise ClusterError(f"{TF_CONFIG} has no `task` with a `type`: "
                       f"{text[:200]!r}")
  task_type = str(task["type"]).lower()
  try:
    index = int(task.get("index", 0))
  except (TypeError, ValueError) as e:
    raise ClusterError(
        f"{TF_CONFIG}'s task index must be an integer, not "
        f"{task.get('index')!r}") from e
  if task_type == "ps" or "ps" in cluster:
    raise ClusterError(
        f"{TF_CONFIG} has a `ps` task: ParameterServerStrategy is not "
        "supported; training runs under MultiWorkerMirroredStrategy, whose "
        "cluster is `chief`/`worker` tasks (and one `evaluator`) with no `ps` "
        "(in a TFJob: drop the PS replica spec)")
  if task_type == "master" or "master" in cluster:
    raise ClusterError(
        f"{TF_CONFIG} has a `master` task (TFJob's legacy Master replica "
        "type), which MultiWorkerMirroredStrategy does not know: use a "
        "`Chief` replica instead")
  if task_type not in SUPPORTED_TYPES:
    raise ClusterError(
        f"{TF_CONFIG}'s task type must be one of {SUPPORTED_TYPES}, not "
        f"{task_type!r}")
  addresses = {}
  for name, hosts in cluster.items():
    if (not isinstance(hosts, list)
        or not all(isinstance(h, str) for h in hosts)):
      raise ClusterError(f"{TF_CONFIG}'s cluster[{name!r}] must be a list of "
                         f"'host:port' strings, not {hosts!r}")
    if name not in SUPPORTED_TYPES:
      raise ClusterError(
          f"{TF_CONFIG}'s cluster has a {name!r} job; the supported task "
          f"types are {SUPPORTED_TYPES}")
    addresses[name] = tuple(hosts)
  if len(addresses.get(CHIEF, ())) > 1:
    raise ClusterError(f"{TF_CONFIG}'s cluster has "
                       f"{len(addresses[CHIEF])} chiefs; at most one")
  if len(addresses.get(EVALUATOR, ())) > 1:
    raise ClusterError(f"{TF_CONFIG}'s cluster has "
                       f"{len(addresses[EVALUATOR])} evaluators; at most one")
  if not any(addresses.get(t) for t in TRAINING_TYPES):
    raise ClusterError(f"{TF_CONFIG}'s cluster has no `chief` or `worker` "
                       "task to train")
  if not 0 <= index < len(addresses.get(task_type, ())):
    raise ClusterError(
        f"{TF_CONFIG}'s task is {task_type} {index}, but the cluster lists "
        f"{len(addresses.get(task_type, ()))} {task_type} task(s)")
  environment = config.get("environment")
  return Task(type=task_type, index=index, cluster=addresses,
              environment=None if environment is None else str(environment))


def from_environment(
    environ: Optional[Mapping[str, str]] = None) -> Optional[Task]:
  """This process's task from TF_CONFIG, or None when it is unset or empty.

  Raises:
    ClusterError: as `parse`.
  """
  environ = os.environ if environ is None else environ
  text = environ.get(TF_CONFIG, "").strip()
  if not text:
    return None
  return parse(text)
