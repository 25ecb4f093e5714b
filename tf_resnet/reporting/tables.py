"""Markdown and JSON summaries of runs, next to the paper's numbers.

Every figure in these tables is read from the runs' logs (`logs.RunLog`) or
measured by `tf_resnet.plot` (layer responses); the paper's come from
`model/paper.py`. A run that did not reach its planned iterations is marked
as such: its last numbers are shown for what they are, never extrapolated.
"""

from typing import Mapping, Optional, Sequence

import numpy as np

from tf_resnet.analysis import paper
from tf_resnet.analysis import responses as responses_lib
from tf_resnet.reporting import logs


def _percent(value: Optional[float]) -> str:
  return "n/a" if value is None else f"{100 * value:.2f}"


def _duration(seconds: float) -> str:
  minutes = int(round(seconds / 60))
  return f"{minutes // 60}h{minutes % 60:02d}m"


def papers_test_error(run: logs.RunLog) -> str:
  """The paper's CIFAR-10 test error (%) for the run's network, as text."""
  if run.architecture == "resnet" and run.depth in paper.CIFAR_TEST_ERROR:
    return f"{paper.CIFAR_TEST_ERROR[run.depth]:.2f} (Table 6)"
  if (run.architecture == "plain"
      and run.depth in paper.CIFAR_PLAIN_TEST_ERROR_READ_OFF_FIG6):
    low, high = paper.CIFAR_PLAIN_TEST_ERROR_READ_OFF_FIG6[run.depth]
    return f"~{low:.0f}-{high:.0f} (read off Fig. 6)"
  return "not published"


def _mean_of_last(curve: logs.Curve, count: int) -> Optional[float]:
  return float(np.mean(curve.values[-count:])) if curve else None


def results_table(runs: Sequence[logs.RunLog],
                  train_examples: Optional[Mapping[str, int]] = None) -> str:
  """One markdown row per run: iterations, errors, the paper's, time.

  Args:
    runs: the runs, in the table's order.
    train_examples: model_dir to the size of its training split, for the
      epochs column (the log does not hold it).
  """
  lines = [
      "| network | iterations | epochs | training error (%) | validation "
      "error (%) | test error (%) | paper's test error (%) | time in steps "
      "| elapsed |",
      "|---|---|---|---|---|---|---|---|---|"]
  for run in runs:
    examples = (train_examples or {}).get(run.model_dir)
    iterations = f"{run.steps_done:,}"
    if not run.finished:
      iterations += f" of {run.planned_steps:,} (**not finished**)"
    epochs = (f"{run.steps_done * run.batch_size / examples:.1f}"
              if examples else "n/a")
    validation = (_percent(run.validation_error.last) if run.holdout
                  else "(no holdout)")
    lines.append(
        f"| {run.name} | {iterations} | {epochs} "
        f"| {_percent(_mean_of_last(run.train_error, 5))} "
        f"| {validation} | {_percent(run.test_error.last)} "
        f"| {papers_test_error(run)} | {_duration(run.train_seconds)} "
        f"| {_duration(run.elapsed_seconds)} |")
  return "\n".join(lines)


def selected_test_error(run: logs.RunLog) -> Optional[tuple[int, float]]:
  """The test error of the evaluation the validation split selects.

  The strict protocol takes every decision on the validation split: the
  checkpoint kept is the one with the lowest validation error (the earliest
  of equals), and its test error is reported without the test set having
  chosen anything.

  Returns:
    (step, test error) of that evaluation, or None when the run has no
    validation split or no test error logged at the selected step.
  """
  if not run.holdout or not run.validation_error or not run.test_error:
    return None
  tests = dict(zip(run.test_error.steps, run.test_error.values))
  candidates = [(error, step) for step, error in
                zip(run.validation_error.steps, run.validation_error.values)
                if step in tests]
  if not candidates:
    return None
  _, step = min(candidates)
  return step, tests[step]


def _seed(run: logs.RunLog) -> int:
  return int(run.config["input"].get("seed", 0))


def _groups(runs: Sequence[logs.RunLog]) -> dict[str, list[logs.RunLog]]:
  """Runs by network name, in order of first appearance."""
  groups = {}
  for run in runs:
    groups.setdefault(run.name, []).append(run)
  return groups


def _mean_std(values: Sequence[float]) -> str:
  """`mean +- std` in % (std over runs, n - 1 in the denominator)."""
  if len(values) < 2:
    return "(one run)"
  values = np.asarray(values) * 100
  return f"{values.mean():.2f} +- {values.std(ddof=1):.2f} (n={len(values)})"


def table6(runs: Sequence[logs.RunLog]) -> str:
  """Table 6 beside ours: each network's runs (seeds), their spread, the paper's.

  Runs of the same network (different seeds) share a row. "at the end" is
  the test error after the last iteration; "validation-selected" is the test
  error of the checkpoint the validation split picks (`selected_test_error`).
  A network whose runs did not all finish is marked, and its numbers are the
  last logged ones.
  """
  lines = [
      "| network | seeds | test error at the end (%) | mean +- std (%) "
      "| validation-selected test error (%) | paper's test error (%) "
      "| ours - paper (points) |",
      "|---|---|---|---|---|---|---|"]
  for name, group in _groups(runs).items():
    seeds = ", ".join(str(_seed(r)) for r in group)
    if not all(r.finished for r in group):
      seeds += " (**not all finished**)"
    ends = [r.test_error.last for r in group if r.test_error]
    end_text = ", ".join(_percent(v) for v in ends) or "n/a"
    selected = [selected_test_error(r) for r in group]
    selected_text = ", ".join(
        f"{_percent(s[1])} (it. {s[0]:,})" if s else "n/a" for s in selected)
    paper_value = None
    if group[0].architecture == "resnet":
      paper_value = paper.CIFAR_TEST_ERROR.get(group[0].depth)
    difference = ("n/a" if paper_value is None or not ends else
                  f"{100 * float(np.mean(ends)) - paper_value:+.2f}")
    lines.append(f"| {name} | {seeds} | {end_text} | {_mean_std(ends)} "
                 f"| {selected_text} | {papers_test_error(group[0])} "
                 f"| {difference} |")
  return "\n".join(lines)


def _budget_label(runs: Sequence[logs.RunLog]) -> str:
  steps = {r.planned_steps for r in runs}
  if len(steps) != 1:
    raise ValueError(f"the runs of one budget plan different iterations: "
                     f"{sorted(steps)}")
  steps = steps.pop()
  return f"{steps / 1000:g}k" if steps % 1000 == 0 else f"{steps:,}"


def budgets_table(budgets: Sequence[Sequence[logs.RunLog]]) -> str:
  """Test error (%) per network at each budget of iterations, as a table.

  Args:
    budgets: the runs of each budget (each budget's runs plan the same
      number of iterations), shortest first. Several runs of a network in
      one budget (seeds) show as their mean and count.

  Raises:
    ValueError: if one budget's runs plan different numbers of iterations.
  """
  labels = [_budget_label(runs) for runs in budgets]
  names = []
  for runs in budgets:
    for name in _groups(runs):
      if name not in names:
        names.append(name)
  lines = ["| network | " + " | ".join(f"{label} iterations"
                                        for label in labels)
           + " | paper's test error (%) |",
           "|---|" + "---|" * (len(labels) + 1)]
  for name in names:
    cells, first = [], None
    for runs in budgets:
      group = _groups(runs).get(name, [])
      first = first or (group[0] if group else None)
      ends = [r.test_error.last for r in group if r.test_error]
      if not ends:
        cells.append("n/a")
        continue
      text = _percent(float(np.mean(ends)))
      if len(ends) > 1:
        text += f" (mean of {len(ends)})"
      if not all(r.finished for r in group):
        text += " (**not finished**)"
      cells.append(text)
    lines.append(f"| {name} | " + " | ".join(cells)
                 + f" | {papers_test_error(first)} |")
  return "\n".join(lines)


def schedule_table(runs: Sequence[logs.RunLog]) -> str:
  """The recipe the runs actually used, one row per setting that matters."""
  keys = ("dataset", "holdout", "batch", "iterations", "learning rate",
          "schedule", "momentum", "weight decay", "evaluations", "seed")
  rows = {key: [] for key in keys}
  for run in runs:
    c, s = run.config, run.config["schedule"]
    rows["dataset"].append(c["data"]["dataset"])
    rows["holdout"].append(str(c["data"].get("holdout", 0)))
    rows["batch"].append(str(run.batch_size))
    rows["iterations"].append(f"{run.planned_steps:,}")
    rows["learning rate"].append(f"{s['learning_rate']:g}")
    if s["kind"] == "steps":
      rows["schedule"].append(
          f"x{s['factor']:g} at " + ", ".join(f"{b:,}" for b in
                                               s["boundaries"]))
    else:
      rows["schedule"].append(s["kind"])
    rows["momentum"].append(f"{c['momentum']:g}")
    rows["weight decay"].append(f"{c['weight_decay']:g}")
    rows["evaluations"].append(f"every {c.get('eval_every_steps')} "
                               "iterations")
    rows["seed"].append(str(c["input"]["seed"]))
  lines = ["| setting | value |", "|---|---|"]
  for key in keys:
    values = rows[key]
    if len(set(values)) == 1:  # The same for every run: say it once.
      lines.append(f"| {key} | {values[0]} |")
    else:
      lines.append(f"| {key} | " + "; ".join(
          f"{run.name}: {value}" for run, value in zip(runs, values)) + " |")
  return "\n".join(lines)


def responses_table(
    responses: Mapping[str, Sequence[responses_lib.LayerResponse]]) -> str:
  """Summary of Fig. 7: the layers' response std per network."""
  lines = ["| network | 3x3 layers | images | mean std | median std | "
           "min std | max std | kernel norm: first layer | median |",
           "|---|---|---|---|---|---|---|---|---|"]
  for name, layers in responses.items():
    stds = np.array([r.std for r in layers])
    norms = np.array([r.kernel_norm for r in layers])
    lines.append(f"| {name} | {len(layers)} | {layers[0].examples:,} "
                 f"| {stds.mean():.3f} | {np.median(stds):.3f} "
                 f"| {stds.min():.3f} | {stds.max():.3f} "
                 f"| {norms[0]:.1f} | {np.median(norms):.1f} |")
  return "\n".join(lines)


def results_json(runs: Sequence[logs.RunLog],
                 responses: Optional[Mapping[
                     str, Sequence[responses_lib.LayerResponse]]] = None,
                 train_examples: Optional[Mapping[str, int]] = None) -> dict:
  """Everything in the tables, machine-readable (arguments as the tables')."""
  out = {"runs": [], "responses": {}}
  for run in runs:
    selected = selected_test_error(run)
    out["runs"].append({
        "network": run.name, "model_dir": run.model_dir,
        "train_examples": (train_examples or {}).get(run.model_dir),
        "steps_done": run.steps_done, "planned_steps": run.planned_steps,
        "finished": run.finished,
        "train_error_last_intervals": _mean_of_last(run.train_error, 5),
        "validation_error": run.validation_error.last,
        "test_error": run.test_error.last,
        "test_error_step": run.test_error.last_step,
        "seed": _seed(run),
        "precision": run.config.get("precision"),
        "selected_step": selected[0] if selected else None,
        "selected_test_error": selected[1] if selected else None,
        "train_seconds": run.train_seconds,
        "elapsed_seconds": run.elapsed_seconds, "resumed": run.resumed})
  for name, layers in (responses or {}).items():
    out["responses"][name] = [{"index": r.index, "path": r.path, "std": r.std,
                               "kernel_norm": r.kernel_norm,
                               "examples": r.examples} for r in layers]
  return out
