"""The plotting binary as a user runs it, on real runs of the trainer."""

import io
import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest
import matplotlib.image

from tf_resnet.data import pipeline
from tf_resnet.model import zoo
from tf_resnet.training import config as config_lib
from tf_resnet.training import train_lib

_TIMEOUT_SECS = 240
# The source tree (under Bazel, resolving the runfiles symlink leads there).
_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))


def _plot(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "tf_resnet.plot", *args],
                        capture_output=True, text=True, timeout=_TIMEOUT_SECS,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                        check=False)


def _records(model_dir: str, kind: str) -> list[dict]:
  with open(os.path.join(model_dir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if r["kind"] == kind]


class PlotMainTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # Plain-8 and ResNet-8 on the embedded digits, held out and test-monitored
    # as reproduction/cifar10.sh runs them; ResNet-8 stops short of its plan.
    cls.root = tempfile.mkdtemp()
    cls.runs = {}
    for name, architecture, steps, planned in (
        ("plain8", "plain", 12, 12), ("resnet8", "resnet", 12, 24)):
      model_dir = os.path.join(cls.root, name)
      config = config_lib.TrainConfig(
          model=zoo.ModelConfig(family="cifar", architecture=architecture,
                                depth=8, num_classes=10),
          data=config_lib.DataConfig(dataset="digits", holdout=100,
                                     stats_max_images=200),
          input=pipeline.InputConfig(global_batch_size=32, seed=1),
          schedule=config_lib.ScheduleConfig(kind="steps", boundaries=(6, 9)),
          model_dir=model_dir, train_steps=steps, steps_per_loop=3,
          eval_every_steps=6, monitor_test=True)
      train_lib.train(config, progress_stream=io.StringIO())
      if planned != steps:  # As if stopped by the session's end.
        with open(os.path.join(model_dir, "config.json")) as f:
          values = json.load(f)
        values["train_steps"] = planned
        with open(os.path.join(model_dir, "config.json"), "w") as f:
          json.dump(values, f)
      cls.runs[name] = model_dir

  def test_figures_and_tables_from_the_logs_and_checkpoints(self):
    out_dir = os.path.join(self.root, "report")
    result = _plot(f"--run_dirs={self.runs['plain8']},{self.runs['resnet8']}",
                   f"--output_dir={out_dir}", "--responses_examples=50")
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertIn("plain-8: ", result.stdout)
    self.assertIn("NOT FINISHED: 12 of 24 iterations", result.stdout)
    for png in ("curves.png", "responses.png"):
      image = matplotlib.image.imread(os.path.join(out_dir, png))
      self.assertGreater(image[..., :3].std(), 0.05, png)
    with open(os.path.join(out_dir, "results.json")) as f:
      results = json.load(f)
    for run, name in zip(results["runs"], ("plain8", "resnet8")):
      tests = _records(self.runs[name], "test")
      evals = _records(self.runs[name], "eval")
      self.assertEqual([r["step"] for r in tests], [6, 12])
      self.assertEqual(run["test_error"], tests[-1]["top1_error"])
      self.assertEqual(run["validation_error"], evals[-1]["top1_error"])
      self.assertEqual(run["steps_done"], 12)
    self.assertEqual([r["finished"] for r in results["runs"]], [True, False])
    # 6n+2 = 8: seven 3x3 layers, measured on the 50 images asked for.
    for name in ("plain-8", "ResNet-8"):
      layers = results["responses"][name]
      self.assertLen(layers, 7)
      self.assertEqual({r["examples"] for r in layers}, {50})
    with open(os.path.join(out_dir, "results.md")) as f:
      text = f.read()
    self.assertIn(text.strip(), result.stdout)  # Also printed.
    test_error = 100 * results["runs"][0]["test_error"]
    # 12 iterations of 32 over digits' 1,337 training images (1,437 - 100).
    self.assertIn("| plain-8 | 12 | 0.3 |", text)
    self.assertIn(f"| {test_error:.2f} |", text)
    self.assertIn("12 of 24 (**not finished**)", text)

  def test_logs_alone_redraw_the_curves(self):
    copy = os.path.join(self.root, "copy")
    os.makedirs(copy)
    for f in ("config.json", "metrics.jsonl"):
      with open(os.path.join(self.runs["plain8"], f)) as src, \
          open(os.path.join(copy, f), "w") as dst:
        dst.write(src.read())
    out_dir = os.path.join(self.root, "from_logs")
    # The committed 16k runs as an earlier budget (the logs alone).
    sixteen = os.path.join(_ROOT, "docs", "reproduction", "16k", "runs")
    result = _plot(f"--run_dirs={copy}", f"--output_dir={out_dir}",
                   "--norun_responses", f"--compare_with={sixteen}")
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertTrue(os.path.exists(os.path.join(out_dir, "curves.png")))
    self.assertFalse(os.path.exists(os.path.join(out_dir, "responses.png")))
    with open(os.path.join(out_dir, "results.md")) as f:
      text = f.read()
    self.assertIn("### Beside Table 6", text)
    # Shortest budget first; plain-56 ran only in the 16k budget, at
    # 32.11% (docs/reproduction/16k/results.md).
    self.assertIn("| network | 12 iterations | 16k iterations |", text)
    self.assertIn("| plain-56 | n/a | 32.11 |", text)
    result = _plot(f"--run_dirs={copy}", f"--output_dir={out_dir}",
                   "--norun_responses", f"--compare_with={self.root}/none")
    self.assertEqual(result.returncode, 1)
    self.assertIn("--compare_with: ", result.stderr)
    self.assertIn("none is not a folder of run directories", result.stderr)

  def test_bad_input_is_named(self):
    result = _plot(f"--run_dirs={self.root}/nowhere",
                   f"--output_dir={self.root}/x")
    self.assertEqual(result.returncode, 1)
    self.assertIn("nowhere/config.json does not exist", result.stderr)
    copy = os.path.join(self.root, "no_checkpoint")
    os.makedirs(copy)
    for f in ("config.json", "metrics.jsonl", "stats.json"):
      with open(os.path.join(self.runs["resnet8"], f)) as src, \
          open(os.path.join(copy, f), "w") as dst:
        dst.write(src.read())
    result = _plot(f"--run_dirs={copy}", f"--output_dir={self.root}/y")
    self.assertEqual(result.returncode, 1)
    self.assertIn("no checkpoint in", result.stderr)
    self.assertIn("--norun_responses", result.stderr)
    result = _plot("--output_dir=/tmp/z")
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("--run_dirs", result.stderr)


if __name__ == "__main__":
  absltest.main()
