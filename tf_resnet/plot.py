r"""Redraws the paper's CIFAR-10 figures and tables from training runs.

Examples:
  python -m tf_resnet.plot --output_dir=docs/reproduction \
      --run_dirs=runs/plain20,runs/plain56,runs/resnet20,runs/resnet56
  python -m tf_resnet.plot --output_dir=/tmp/fig --norun_responses \
      --run_dirs=docs/reproduction/runs/plain20,...

Writes into --output_dir:
  curves.png     Fig. 6: training error (dashed) and test error (bold)
                 against iterations; plain nets left, ResNets right.
  responses.png  Fig. 7: standard deviations of every 3x3 layer's response
                 (after BN, before ReLU/addition) on test images, from each
                 run's latest checkpoint (with --run_responses).
  results.md     the tables: errors next to the paper's (Table 6, with
                 the spread over seeds where a network ran several times,
                 and the validation-selected checkpoint's test error), the
                 test error per budget (--compare_with), the recipe used,
                 the responses summarised.
  results.json   the same numbers, machine-readable.

The curves and errors come from each run's `metrics.jsonl` and `config.json`
only, so copies of those two files are enough to redraw them. The responses
need the run's checkpoint, statistics and data set (--dataset overrides where
the data set is read from).
"""

import functools
import json
import os
import sys

from tf_resnet import startup

startup.prepare_tensorflow()

# pylint: disable=g-import-not-at-top,g-bad-import-order
from absl import app
from absl import flags

from tf_resnet import cli
from tf_resnet.data import pipeline
from tf_resnet.data import sources
from tf_resnet.analysis import responses as responses_lib
from tf_resnet.reporting import figures
from tf_resnet.reporting import logs
from tf_resnet.reporting import tables
from tf_resnet.training import run_dir
# pylint: enable=g-import-not-at-top,g-bad-import-order

_RUN_DIRS = flags.DEFINE_list(
    "run_dirs", None, "Training runs (model_dirs of tf_resnet.train), in the "
    "order of the tables and legends.", required=True)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where the figures and tables are written.",
    required=True)
_RUN_RESPONSES = flags.DEFINE_bool(
    "run_responses", True, "Measure the Fig. 7 layer responses from each "
    "run's latest checkpoint on the test split (needs the data set).")
_RESPONSES_EXAMPLES = flags.DEFINE_integer(
    "responses_examples", 10_000, "Test images the responses are measured "
    "on.")
_DATASET = flags.DEFINE_string(
    "dataset", None, "Read the runs' data from here instead (e.g. "
    "folder:/data/cifar10).")
_DATA_DIR = flags.DEFINE_string("data_dir", None,
                                "Override TFDS's data directory.")
_Y_MAX = flags.DEFINE_float("y_max", None, "Top of Fig. 6's error axis, in %.")
_COMPARE_WITH = flags.DEFINE_list(
    "compare_with", [], "Folders of earlier runs of the same networks with "
    "other budgets (each holding one run directory per network, e.g. "
    "docs/reproduction/16k/runs): results.md then tabulates each network's "
    "test error per budget, shortest budget first.")
flags.register_validator("responses_examples", lambda n: n > 0,
                         "--responses_examples must be positive")


# Runs of one experiment share their data set: list it once.
_parse_source = functools.lru_cache(maxsize=None)(sources.parse)


def _source(run_log: logs.RunLog) -> sources.Source:
  """The run's data set (or --dataset's), as its config.json describes it."""
  data = run_log.config["data"]
  return _parse_source(_DATASET.value or data["dataset"],
                       data_dir=_DATA_DIR.value or data.get("data_dir"),
                       family=run_log.config["model"]["family"],
                       holdout=int(data.get("holdout", 0)),
                       on_bad_file=data.get("on_bad_file", "skip"))


def _measure_responses(run_log: logs.RunLog):
  run = run_dir.load(run_log.model_dir)
  source = _source(run_log)
  model, step, path = run_dir.restore(run)
  print(f"{run_log.name}: measuring layer responses at step {step} ({path}) "
        f"on {min(_RESPONSES_EXAMPLES.value, source.num_examples('test')):,} "
        "test images", flush=True)
  dataset = pipeline.eval_dataset(source, run.statistics, run.input,
                                  split="test", mode="center",
                                  batch_size=250)
  batches = dataset.unbatch().take(_RESPONSES_EXAMPLES.value).batch(250)
  return responses_lib.layer_response_stds(model, batches)


def _train_examples(run_log: logs.RunLog):
  """The run's training-split size (for epochs), or None without its data."""
  try:
    return _source(run_log).num_examples("train")
  except (sources.DataError, ValueError) as e:
    spec = _DATASET.value or run_log.config["data"]["dataset"]
    print(f"{run_log.name}: epochs not shown, {spec} is not readable here "
          f"({e})", file=sys.stderr)
    return None


def _read_folder(folder: str) -> list[logs.RunLog]:
  """Every run directory (one holding config.json) directly in `folder`."""
  if not os.path.isdir(folder):
    raise logs.RunLogError(f"{folder} is not a folder of run directories")
  dirs = sorted(os.path.join(folder, name) for name in os.listdir(folder)
                if os.path.exists(os.path.join(folder, name,
                                               run_dir.CONFIG_FILE)))
  if not dirs:
    raise logs.RunLogError(f"{folder} holds no run directory "
                           f"(*/{run_dir.CONFIG_FILE})")
  return [logs.read_run(d) for d in dirs]


def main(argv):
  cli.start(argv)
  try:
    runs = [logs.read_run(d) for d in _RUN_DIRS.value]
  except logs.RunLogError as e:
    cli.fail(str(e))
  for run in runs:
    state = ("finished" if run.finished else
             f"NOT FINISHED: {run.steps_done:,} of {run.planned_steps:,} "
             "iterations")
    print(f"{run.name}: {run.model_dir}, {state}", flush=True)

  responses, train_examples = {}, {}
  for run in runs:
    if _RUN_RESPONSES.value:
      try:
        responses[run.name] = _measure_responses(run)
      except (sources.DataError, run_dir.RunDirError, ValueError) as e:
        cli.fail(f"{run.model_dir}: {e} (--norun_responses draws the rest "
                 "from the logs alone)")
    train_examples[run.model_dir] = _train_examples(run)

  os.makedirs(_OUTPUT_DIR.value, exist_ok=True)
  written = []
  try:
    figure = figures.learning_curves(runs, y_max=_Y_MAX.value)
  except ValueError as e:
    cli.fail(str(e))
  written.append(os.path.join(_OUTPUT_DIR.value, "curves.png"))
  figure.savefig(written[-1], dpi=120)
  if responses:
    written.append(os.path.join(_OUTPUT_DIR.value, "responses.png"))
    figures.layer_responses(responses).savefig(written[-1], dpi=120)

  sections = ["### Test error\n", tables.results_table(runs, train_examples),
              "\n### Beside Table 6\n", tables.table6(runs)]
  if _COMPARE_WITH.value:
    try:
      budgets = [_read_folder(folder) for folder in _COMPARE_WITH.value]
      budgets.append(runs)
      budgets.sort(key=lambda b: b[0].planned_steps)
      sections += ["\n### Test error by budget\n",
                   tables.budgets_table(budgets)]
    except (logs.RunLogError, ValueError) as e:
      cli.fail(f"--compare_with: {e}")
  sections += ["\n### Recipe\n", tables.schedule_table(runs)]
  if responses:
    sections += ["\n### Layer responses (Fig. 7)\n",
                 tables.responses_table(responses)]
  text = "\n".join(sections) + "\n"
  written.append(os.path.join(_OUTPUT_DIR.value, "results.md"))
  with open(written[-1], "w") as f:
    f.write(text)
  written.append(os.path.join(_OUTPUT_DIR.value, "results.json"))
  with open(written[-1], "w") as f:
    json.dump(tables.results_json(runs, responses, train_examples), f,
              indent=2)
    f.write("\n")
  print(text)
  print("Wrote " + ", ".join(written))


def run():
  """Console-script entry point."""
  app.run(main)


if __name__ == "__main__":
  run()
