"""Tests of the results tables: logged numbers, the paper's, unfinished runs."""

import json
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

  def test_the_validation_split_selects_the_checkpoint_not_the_test_set(self):
    root = tempfile.mkdtemp()
    # Validation is lowest at 200 (the earliest of the two 0.20s); the test
    # set would have picked 300.
    run = logs.read_run(testing.write_run(
        os.path.join(root, "r20"), train_steps=300,
        train=[(100, 0.5, 10.0, 1.0), (200, 0.4, 10.0, 2.0),
               (300, 0.3, 10.0, 3.0)],
        evals=[(100, 0.30, 1.1), (200, 0.20, 2.1), (300, 0.20, 3.1)],
        tests=[(100, 0.31, 1.2), (200, 0.25, 2.2), (300, 0.22, 3.2)]))
    self.assertEqual(tables.selected_test_error(run), (200, 0.25))
    self.assertIsNone(tables.selected_test_error(self.unfinished))
    entry = tables.results_json([run])["runs"][0]
    self.assertEqual((entry["selected_step"], entry["selected_test_error"]),
                     (200, 0.25))
    self.assertEqual(entry["seed"], 0)

  def _seeded(self, root, name, seed, test_error, **kwargs):
    path = testing.write_run(
        os.path.join(root, name), train_steps=kwargs.pop("train_steps", 100),
        train=[(100, 0.1, 10.0, 1.0)], evals=[(100, test_error, 1.1)],
        tests=[(100, test_error, 1.2)], **kwargs)
    config_path = os.path.join(path, "config.json")
    with open(config_path) as f:
      config = json.load(f)
    config["input"]["seed"] = seed
    with open(config_path, "w") as f:
      json.dump(config, f)
    return logs.read_run(path)

  def test_table6_pools_seeds_of_a_network(self):
    root = tempfile.mkdtemp()
    runs = [self._seeded(root, "r20", 0, 0.080),
            self._seeded(root, "r20_seed1", 1, 0.090),
            self._seeded(root, "r20_seed2", 2, 0.100),
            self._seeded(root, "r56", 0, 0.070, depth=56)]
    rows = tables.table6(runs).splitlines()
    self.assertLen(rows, 4)  # Header, rule, one row per network.
    cells = [c.strip() for c in rows[2].split("|")[1:-1]]
    # Mean 9.00, sample std 1.00; Table 6's ResNet-20 is 8.75.
    self.assertEqual(cells, [
        "ResNet-20", "0, 1, 2", "8.00, 9.00, 10.00", "9.00 +- 1.00 (n=3)",
        "8.00 (it. 100), 9.00 (it. 100), 10.00 (it. 100)", "8.75 (Table 6)",
        "+0.25"])
    cells = [c.strip() for c in rows[3].split("|")[1:-1]]
    self.assertEqual(cells[:4], ["ResNet-56", "0", "7.00", "(one run)"])
    self.assertEqual(cells[-1], "+0.03")  # 7.00 against 6.97.

  def test_budgets_table_lines_up_each_networks_budgets(self):
    root = tempfile.mkdtemp()
    short = [self._seeded(root, "a/r20", 0, 0.20)]
    long = [self._seeded(root, "b/r20", 0, 0.09, train_steps=4000),
            self._seeded(root, "b/r20_seed1", 1, 0.10, train_steps=4000),
            self._seeded(root, "b/p20", 0, 0.12, architecture="plain",
                         train_steps=4000)]
    table = tables.budgets_table([short, long])
    self.assertIn("| network | 100 iterations | 4k iterations |", table)
    self.assertIn("| ResNet-20 | 20.00 | 9.50 (mean of 2) (**not "
                  "finished**) | 8.75 (Table 6) |", table)
    self.assertIn("| plain-20 | n/a | 12.00 (**not finished**) |", table)
    with self.assertRaisesRegex(ValueError, "plan different iterations"):
      tables.budgets_table([short + long])


if __name__ == "__main__":
  absltest.main()
