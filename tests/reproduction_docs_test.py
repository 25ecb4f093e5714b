"""docs/reproduction.md shows what the committed run logs say, as tf_resnet.plot wrote it.

The reproduction's numbers must come from the runs' logs through the plotting
tool, never typed by hand: for each budget (4,000 and 16,000 iterations) this
regenerates the tables from the logs kept in the budget's runs/ folder and
checks them against its results.md, and checks that docs/reproduction.md
quotes every results.md verbatim, and that the README's headline rows give
the longer budget's errors as results.json holds them.
"""

import json
import os

from absl.testing import absltest

from tf_resnet.reporting import logs
from tf_resnet.reporting import tables

_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
_DOCS = os.path.join(_ROOT, "docs")
_NETS = ("plain20", "plain56", "resnet20", "resnet56")
_NAMES = ["plain-20", "plain-56", "ResNet-20", "ResNet-56"]
# Each budget's folder under docs/ and its iterations; the README's headline
# gives the last one's errors.
_BUDGETS = (("reproduction", 4000), ("reproduction/16k", 16000))


def _read(path: str) -> str:
  with open(path) as f:
    return f.read()


class ReproductionDocsTest(absltest.TestCase):

  def _budget(self, folder: str):
    out = os.path.join(_DOCS, folder)
    results = json.loads(_read(os.path.join(out, "results.json")))
    runs = [logs.read_run(os.path.join(out, "runs", net)) for net in _NETS]
    return out, results, runs

  def test_the_four_nets_finished_their_budget_in_order(self):
    for folder, iterations in _BUDGETS:
      with self.subTest(folder):
        _, results, runs = self._budget(folder)
        self.assertEqual([r["network"] for r in results["runs"]], _NAMES)
        self.assertEqual([r.name for r in runs], _NAMES)
        for entry in results["runs"]:
          self.assertTrue(entry["finished"], entry["network"])
          self.assertEqual(entry["planned_steps"], iterations)
          self.assertEqual(entry["steps_done"], iterations)

  def test_results_table_regenerates_from_the_kept_logs(self):
    for folder, _ in _BUDGETS:
      with self.subTest(folder):
        out, results, runs = self._budget(folder)
        examples = {run.model_dir: entry["train_examples"]
                    for run, entry in zip(runs, results["runs"])}
        written = _read(os.path.join(out, "results.md"))
        self.assertIn(tables.results_table(runs, examples), written)
        self.assertIn(tables.schedule_table(runs), written)
        for run, entry in zip(runs, results["runs"]):
          self.assertEqual(run.test_error.last, entry["test_error"])
          self.assertEqual(run.validation_error.last,
                           entry["validation_error"])
          self.assertEqual(run.finished, entry["finished"])

  def test_the_document_quotes_the_tools_output(self):
    document = _read(os.path.join(_DOCS, "reproduction.md"))
    readme = _read(os.path.join(_ROOT, "README.md"))
    for folder, _ in _BUDGETS:
      with self.subTest(folder):
        out = os.path.join(_DOCS, folder)
        results = _read(os.path.join(out, "results.md"))
        for line in results.splitlines():  # Every table row the tool wrote.
          if line.startswith("|"):
            self.assertIn(line, document)
        for png in ("curves.png", "responses.png"):
          self.assertTrue(os.path.exists(os.path.join(out, png)), png)
          self.assertIn(f"{folder}/{png}", document)
    # The README's headline rows: the last budget's errors, as results.json
    # holds them (test error of each net; training error beside the plain
    # nets, the degradation problem).
    results = json.loads(_read(os.path.join(_DOCS, _BUDGETS[-1][0],
                                            "results.json")))
    errors = {entry["network"]: entry for entry in results["runs"]}
    rows = [line for line in readme.splitlines()
            if line.startswith("| CIFAR-10 test error, 16,000 iterations")
            or line.startswith("| the degradation problem")]
    self.assertLen(rows, 2)
    self.assertIn(f"{_BUDGETS[-1][1]:,} iterations", rows[0])
    for name in ("ResNet-20", "ResNet-56"):
      self.assertIn(f"{name} {100 * errors[name]['test_error']:.2f}%",
                    rows[0])
    for name in ("plain-20", "plain-56"):
      train_error = 100 * errors[name]["train_error_last_intervals"]
      self.assertIn(f"{name} {train_error:.2f}%", rows[1])
    self.assertIn("test {:.2f}%, {:.2f}%".format(
        100 * errors["plain-20"]["test_error"],
        100 * errors["plain-56"]["test_error"]), rows[1])


if __name__ == "__main__":
  absltest.main()
