"""Reading a training run's machine-readable log: the curves and the final numbers.

`tf_resnet.train` writes `config.json` when it starts and appends one JSON
line to `metrics.jsonl` per logging interval (`"kind": "train"`: the loss,
training error, learning rate and speed of the steps since the last line) and
per evaluation (`"eval"`: the validation split; `"test"`: the test split,
with `--monitor_test`), after a `"start"` line from each process of the run
(the step it began at and when). An evaluator beside the trainers
(`--mode=continuous_eval`) writes its `eval` and `test` lines into a file of
its own, `evaluator_metrics.jsonl`, read here with the trainer's. Everything
the figures and tables of docs/reproduction.md show is read from these
files, by this module.
"""

import dataclasses
import json
import os
from typing import Optional

from tf_resnet.training import run_dir


class RunLogError(ValueError):
  """A run directory lacks its log, or the log is not tf_resnet.train's."""


@dataclasses.dataclass(frozen=True)
class Curve:
  """A logged value against the iteration it was logged at."""

  steps: tuple[int, ...] = ()
  values: tuple[float, ...] = ()

  def __bool__(self) -> bool:
    return bool(self.steps)

  @property
  def last(self) -> Optional[float]:
    return self.values[-1] if self.values else None

  @property
  def last_step(self) -> Optional[int]:
    return self.steps[-1] if self.steps else None


@dataclasses.dataclass(frozen=True)
class RunLog:
  """One training run as its log tells it.

  Attributes:
    model_dir: where the log was read from.
    name: the paper's name for the network (`plain-20`, `ResNet-56`).
    architecture: `resnet`, `plain` or `vgg19`.
    depth: weighted layers.
    config: the run's `config.json`, as written.
    train_error: top-1 error on the (augmented) training mini-batches of each
      logging interval.
    loss: the training loss (cross-entropy plus the weight-decay penalty).
    learning_rate: at the start of each logging interval.
    validation_error: top-1 error on the validation split (the holdout, or the
      test split when there is none) at each evaluation.
    test_error: top-1 error on the test split at each evaluation, when the
      run monitored it (or when the test split was its validation split).
    train_seconds: time spent in training steps, from the logged speeds.
    elapsed_seconds: the time the run's processes ran, evaluations
      included: from each process's start to its last log line. For a log
      from before processes logged their start, from the run's (estimated)
      start to its last line, time stopped between processes included.
    resumed: whether the log shows the run stopping and resuming.
  """

  model_dir: str
  name: str
  architecture: str
  depth: int
  config: dict
  train_error: Curve
  loss: Curve
  learning_rate: Curve
  validation_error: Curve
  test_error: Curve
  train_seconds: float
  elapsed_seconds: float
  resumed: bool

  @property
  def planned_steps(self) -> int:
    return int(self.config["train_steps"])

  @property
  def batch_size(self) -> int:
    return int(self.config["input"]["global_batch_size"])

  @property
  def steps_done(self) -> int:
    return self.train_error.last_step or 0

  @property
  def finished(self) -> bool:
    return self.steps_done >= self.planned_steps

  @property
  def holdout(self) -> int:
    return int(self.config["data"].get("holdout", 0))


def _network_name(model: dict) -> str:
  if model["architecture"] == "plain":
    return f"plain-{model['depth']}"
  if model["architecture"] == "vgg19":
    return "VGG-19"
  return f"ResNet-{model['depth']}"


def _curve(records: list[dict], key: str) -> Curve:
  # A resumed run logs again the steps after its last checkpoint: the later
  # line for a step is the one the surviving weights went through.
  by_step = {}
  for record in records:
    if key in record:
      by_step[int(record["step"])] = float(record[key])
  steps = tuple(sorted(by_step))
  return Curve(steps, tuple(by_step[s] for s in steps))


def _timing(in_order: list[dict], *, batch: int,
            per_line: int) -> tuple[float, float, bool]:
  """(train_seconds, elapsed_seconds, resumed) of a log's records.

  Each process of the run logged a `start` record (its first step and
  time) before its lines, so its running time is from there to its last
  line, and the time a run spent stopped between processes is not counted.
  Logs from before `start` records existed hold one segment whose start is
  estimated from its first line's speed; a restart in them shows only as a
  step logged again, and its stopped time is counted.
  """
  segments = []  # [start record or None, records...] per process.
  for record in in_order:
    if record["kind"] == run_dir.START_RECORD:
      segments.append([record])
    elif segments:
      segments[-1].append(record)
    else:
      segments.append([None, record])
  train_seconds = elapsed_seconds = 0.0
  previous_step, resumed = 0, False
  for number, (start, *lines) in enumerate(segments):
    if start is not None:
      previous_step = int(start["step"])
      resumed = resumed or number > 0 or previous_step > 0
    train = [r for r in lines if r["kind"] == "train"]
    for record in train:
      step = int(record["step"])
      if step <= previous_step:
        # Restarted from a checkpoint before this step (a log without
        # `start` records): the line covers at most one logging interval.
        resumed = True
        previous_step = max(step - per_line, 0)
      rate = float(record.get("images_per_sec") or 0.0)
      if rate > 0:
        train_seconds += (step - previous_step) * batch / rate
      previous_step = step
    if not lines:
      continue  # Stopped before its first line: no time to go by.
    if start is not None:
      began = float(start["time"])
    elif train:
      # The first line comes after the first interval's steps: their time
      # is known from that line's speed.
      first = train[0]
      rate = float(first.get("images_per_sec") or 0.0)
      began = float(first["time"]) - (int(first["step"]) * batch / rate
                                      if rate > 0 else 0.0)
    else:
      began = min(float(r["time"]) for r in lines)
    elapsed_seconds += max(float(r["time"]) for r in lines) - began
  return train_seconds, elapsed_seconds, resumed


def _records(path: str) -> list[dict]:
  """The records of a JSON-lines log, in file order.

  Raises:
    RunLogError: for a complete line that is not a record.
  """
  records = []
  with open(path) as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
        int(record["step"]), float(record["time"])
      except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        # A run killed mid-write leaves a partial last line; anything else
        # is not our log.
        if line.endswith("\n"):
          raise RunLogError(f"{path}:{number} is not a metrics "
                            f"record: {line[:80]!r}") from None
        continue
      records.append(record)
  return records


def read_run(model_dir: str) -> RunLog:
  """Reads a run directory's config and metrics log.

  Raises:
    RunLogError: naming the missing or unreadable file.
  """
  config_path = os.path.join(model_dir, run_dir.CONFIG_FILE)
  metrics_path = os.path.join(model_dir, run_dir.METRICS_FILE)
  for path in (config_path, metrics_path):
    if not os.path.exists(path):
      raise RunLogError(f"{path} does not exist: {model_dir} is not a "
                        "tf_resnet.train run directory (or it has not logged "
                        "yet)")
  try:
    with open(config_path) as f:
      config = json.load(f)
    model = config["model"]
    int(config["train_steps"]), int(config["input"]["global_batch_size"])
  except (json.JSONDecodeError, KeyError, TypeError) as e:
    raise RunLogError(f"{config_path} is not a tf_resnet.train config: "
                      f"{e!r}") from None
  records = {"train": [], "eval": [], "test": []}
  # Every record in file order, each process's lines after its `start`.
  in_order = []
  for record in _records(metrics_path):
    kind = record.get("kind")
    if kind in records:
      records[kind].append(record)
    if kind in records or kind == run_dir.START_RECORD:
      in_order.append(record)
  # An evaluator's evaluations are curves like the trainer's own; its time
  # is its own (it ran beside the trainers), so it is not in the timing.
  evaluator_path = os.path.join(model_dir, run_dir.EVALUATOR_METRICS_FILE)
  if os.path.exists(evaluator_path):
    for record in _records(evaluator_path):
      if record.get("kind") in ("eval", "test"):
        records[record["kind"]].append(record)
  train = records["train"]
  if not train:
    raise RunLogError(f"{metrics_path} has no training record yet")
  train_seconds, elapsed_seconds, resumed = _timing(
      in_order, batch=int(config["input"]["global_batch_size"]),
      per_line=int(config.get("steps_per_loop", 100)))

  validation = _curve(records["eval"], "top1_error")
  test = _curve(records["test"], "top1_error")
  if not test and not int(config["data"].get("holdout", 0)):
    test = validation  # The test split was the validation split.
  return RunLog(
      model_dir=model_dir, name=_network_name(model),
      architecture=model["architecture"], depth=int(model["depth"]),
      config=config, train_error=_curve(train, "train_error"),
      loss=_curve(train, "loss"), learning_rate=_curve(train, "learning_rate"),
      validation_error=validation, test_error=test,
      train_seconds=train_seconds, elapsed_seconds=elapsed_seconds,
      resumed=resumed)
