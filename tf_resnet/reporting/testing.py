"""Hand-written run logs for the reporting tests, in tf_resnet.train's format."""

import json
import os
from typing import Optional


def write_run(model_dir: str, *, architecture: str = "resnet", depth: int = 20,
              train_steps: int = 300, batch: int = 10, holdout: int = 50,
              boundaries=(150, 225), train: Optional[list] = None,
              evals: Optional[list] = None, tests: Optional[list] = None,
              starts: Optional[list] = None, tail: str = "") -> str:
  """Writes `config.json` and `metrics.jsonl` as tf_resnet.train does.

  Args:
    model_dir: created if missing.
    architecture, depth, train_steps, batch, holdout, boundaries: the config.
    train: (step, train_error, images_per_sec, time) per training line.
    evals / tests: (step, top1_error, time) per validation / test line.
    starts: (step, time) per process's `start` line (none: a log from
      before processes logged their start).
    tail: appended raw to the log (e.g. a partial line).

  Returns:
    model_dir.
  """
  os.makedirs(model_dir, exist_ok=True)
  config = {
      "model": {"architecture": architecture, "depth": depth,
                "family": "cifar", "num_classes": 10, "shortcut": "A"},
      "data": {"dataset": "synthetic", "holdout": holdout},
      "input": {"global_batch_size": batch, "seed": 0},
      "schedule": {"kind": "steps", "learning_rate": 0.1, "factor": 0.1,
                   "boundaries": list(boundaries)},
      "train_steps": train_steps, "momentum": 0.9, "weight_decay": 1e-4,
      "eval_every_steps": 100, "steps_per_loop": 50,
  }
  with open(os.path.join(model_dir, "config.json"), "w") as f:
    json.dump(config, f)
  lines = []
  for step, error, rate, time in train or ():
    lines.append({"kind": "train", "step": step, "time": time, "loss": 2.0,
                  "train_error": error, "learning_rate": 0.1,
                  "images_per_sec": rate})
  for kind, records in (("eval", evals), ("test", tests)):
    for step, error, time in records or ():
      lines.append({"kind": kind, "step": step, "time": time,
                    "top1_error": error, "top5_error": error / 2,
                    "examples": 50.0})
  for step, time in starts or ():
    lines.append({"kind": "start", "step": step, "time": time})
  # In time order; a start before a line of the same time.
  lines.sort(key=lambda r: (r["time"], r["kind"] != "start"))
  with open(os.path.join(model_dir, "metrics.jsonl"), "w") as f:
    for line in lines:
      f.write(json.dumps(line) + "\n")
    f.write(tail)
  return model_dir
