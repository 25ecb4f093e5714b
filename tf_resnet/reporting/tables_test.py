"""Tests of the results tables: logged numbers, the paper's, unfinished runs."""

import os
import tempfile

from absl.testing import absltest

from tf_resnet.analysis import responses
from tf_resnet.reporting import logs
from tf_resnet.reporting import tables
from tf_resnet.reporting import testing


class TablesTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    root = tempfile.mkdtemp()
    self.done = logs.read_run(testing.write_run(
        os.path.join(root, "r56"), depth=56, train_steps=200, batch=100,
        train=[(100, 0.30, 50.0, 200.0), (200, 0.20, 100.0, 400.0)],
        evals=[(200, 0.25, 401.0)], tests=[(200, 0.2468, 402.0)]))
    self.unfinished = logs.read_run(testing.write_run(
        os.path.join(root, "p20"), architecture="plain", depth=20,
        train_steps=400, batch=100, train=[(100, 0.5, 100.0, 100.0)]))

  def test_rows_hold_the_logged_numbers_and_the_papers(self):
    table = tables.results_table([self.done, self.unfinished],
                                 {self.done.model_dir: 10_000})
    rows = table.splitlines()
    self.assertLen(rows, 4)
    cells = [c.strip() for c in rows[2].split("|")[1:-1]]
    # 200 iterations of 100 = 2 epochs of 10,000; training error: the mean of
    # the last lines (25%); 100 steps at 50 + 100 at 100 img/s = 300 s.
    self.assertEqual(cells, ["ResNet-56", "200", "2.0", "25.00", "25.00",
                             "24.68", "6.97 (Table 6)", "0h05m", "0h07m"])
    cells = [c.strip() for c in rows[3].split("|")[1:-1]]
    self.assertEqual(cells[:3], ["plain-20", "100 of 400 (**not finished**)",
                                 "n/a"])
    self.assertEqual(cells[4:7], ["n/a", "n/a", "~8-10 (read off Fig. 6)"])

  def test_schedule_table_says_shared_settings_once(self):
    table = tables.schedule_table([self.done, self.unfinished])
    self.assertIn("| learning rate | 0.1 |", table)
    self.assertIn("| schedule | x0.1 at 150, 225 |", table)
    self.assertIn("| iterations | ResNet-56: 200; plain-20: 400 |", table)

  def test_responses_and_json(self):
    measured = {"ResNet-56": [responses.LayerResponse(i + 1, "p", s, 500, n)
                              for i, (s, n) in enumerate([(1.0, 9.0),
                                                          (2.0, 3.0),
                                                          (4.0, 5.0)])]}
    table = tables.responses_table(measured)
    self.assertIn("| ResNet-56 | 3 | 500 | 2.333 | 2.000 | 1.000 | 4.000 "
                  "| 9.0 | 5.0 |", table)
    out = tables.results_json([self.done, self.unfinished], measured,
                              {self.done.model_dir: 10_000})
    self.assertEqual(out["runs"][0]["test_error"], 0.2468)
    self.assertEqual([r["train_examples"] for r in out["runs"]],
                     [10_000, None])
    self.assertFalse(out["runs"][1]["finished"])
    self.assertEqual([r["std"] for r in out["responses"]["ResNet-56"]],
                     [1.0, 2.0, 4.0])


if __name__ == "__main__":
  absltest.main()
