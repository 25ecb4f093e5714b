"""docs/reproduction.md shows what the committed run logs say, as tf_resnet.plot wrote it.

The reproduction's numbers must come from the runs' logs through the plotting
tool, never typed by hand: this regenerates the tables from the logs kept in
docs/reproduction/runs/ and checks them against results.md, and checks that
docs/reproduction.md quotes results.md verbatim.
"""

import json
import os

from absl.testing import absltest

from tf_resnet.reporting import logs
from tf_resnet.reporting import tables

_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
_DOCS = os.path.join(_ROOT, "docs")
_OUT = os.path.join(_DOCS, "reproduction")
_NETS = ("plain20", "plain56", "resnet20", "resnet56")


def _read(path: str) -> str:
  with open(path) as f:
    return f.read()


class ReproductionDocsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.results = json.loads(_read(os.path.join(_OUT, "results.json")))
    self.runs = [logs.read_run(os.path.join(_OUT, "runs", net))
                 for net in _NETS]

  def test_the_four_nets_are_reported_in_order(self):
    self.assertEqual([r["network"] for r in self.results["runs"]],
                     ["plain-20", "plain-56", "ResNet-20", "ResNet-56"])
    self.assertEqual([r.name for r in self.runs],
                     ["plain-20", "plain-56", "ResNet-20", "ResNet-56"])

  def test_results_table_regenerates_from_the_kept_logs(self):
    examples = {run.model_dir: entry["train_examples"]
                for run, entry in zip(self.runs, self.results["runs"])}
    table = tables.results_table(self.runs, examples)
    self.assertIn(table, _read(os.path.join(_OUT, "results.md")))
    self.assertIn(tables.schedule_table(self.runs),
                  _read(os.path.join(_OUT, "results.md")))
    for run, entry in zip(self.runs, self.results["runs"]):
      self.assertEqual(run.test_error.last, entry["test_error"])
      self.assertEqual(run.validation_error.last, entry["validation_error"])
      self.assertEqual(run.finished, entry["finished"])

  def test_the_document_quotes_the_tools_output(self):
    document = _read(os.path.join(_DOCS, "reproduction.md"))
    results = _read(os.path.join(_OUT, "results.md"))
    # Every table row the tool wrote appears in the document.
    for line in results.splitlines():
      if line.startswith("|"):
        self.assertIn(line, document)
    readme = _read(os.path.join(_ROOT, "README.md"))
    for line in results.split("### Recipe")[0].splitlines():
      if line.startswith("|"):
        self.assertIn(line, readme)  # The README's summary table too.
    for png in ("curves.png", "responses.png"):
      self.assertTrue(os.path.exists(os.path.join(_OUT, png)), png)
      self.assertIn(f"reproduction/{png}", document)


if __name__ == "__main__":
  absltest.main()
