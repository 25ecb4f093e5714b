"""The evaluator as a user runs it: `tf_resnet.train --mode=continuous_eval` beside a trainer.

Real binaries as local processes on one model_dir: a trainer in
`--mode=train` and an evaluator beside it, the evaluator killed with SIGKILL
midway and started again as TF_CONFIG's `evaluator` task, without --mode.
Two workers and an evaluator from the TFJob's TF_CONFIG, the workers' plateau
schedule moved by the evaluator's errors, run in tests/deploy_test.py
(OperatorTFConfigRunTest): one cluster serves both.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading

from absl.testing import absltest

from tf_resnet.reporting import logs
from tf_resnet.testing import processes

# ResNet-8 on the embedded digits, a checkpoint every 5 of 20 steps, kept.
_RUN = ("--dataset=digits", "--depth=8", "--batch_size=32",
        "--steps_per_loop=5", "--holdout=100", "--monitor_test",
        "--train_steps=20", "--checkpoint_every_steps=5",
        "--keep_checkpoints=10")
_STEPS = [5, 10, 15, 20]
_VALIDATION_LINE = re.compile(r"^step (\d+): holdout top-1 error ", re.M)


def _tf_config(cluster: dict[str, list[str]], task_type: str,
               index: int) -> str:
  """TF_CONFIG exactly as the training-operator writes it (Go's
  json.Marshal of its TFConfig: compact, the cluster's jobs sorted)."""
  return json.dumps({"cluster": dict(sorted(cluster.items())),
                     "task": {"type": task_type, "index": index},
                     "environment": "cloud"}, separators=(",", ":"))


def _records(model_dir: str, name: str) -> list[dict]:
  path = os.path.join(model_dir, name)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f]


def _steps(records: list[dict], kind: str) -> list[int]:
  return [r["step"] for r in records if r["kind"] == kind]


class ContinuousEvalMainTest(absltest.TestCase):

  def _tempdir(self) -> str:
    path = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  def _start(self, *args: str, **env: str) -> subprocess.Popen:
    proc = processes.start("tf_resnet.train", *args,
                           env=processes.env(**env))
    self.addCleanup(processes.stop, proc)
    return proc

  def _finish(self, proc: subprocess.Popen) -> tuple[str, str]:
    out, err = proc.communicate(timeout=processes.TIMEOUT_SECS)
    self.assertEqual(proc.returncode, 0, f"{out}\n{err}")
    return out, err

  def test_beside_a_trainer_killed_and_restarted_as_tf_configs_evaluator(
      self):
    model_dir = os.path.join(self._tempdir(), "run")
    export_dir = os.path.join(self._tempdir(), "exports")
    # Started together, as a cluster starts its tasks: the evaluator waits
    # for the run, then evaluates each checkpoint as it appears.
    trainer = self._start(*_RUN, "--mode=train", f"--model_dir={model_dir}",
                          f"--export_dir={export_dir}", "--export_best")
    first = self._start("--mode=continuous_eval", f"--model_dir={model_dir}")
    # SIGKILL while it evaluates the second checkpoint.
    watchdog = threading.Timer(processes.TIMEOUT_SECS, first.kill)
    watchdog.start()
    first_out = []
    try:
      for line in first.stdout:
        first_out.append(line)
        if line.startswith("step 10: holdout"):
          first.send_signal(signal.SIGKILL)
          break
    finally:
      watchdog.cancel()
    self.assertEqual(first.wait(), -signal.SIGKILL, "".join(first_out))
    self._finish(trainer)
    before = _steps(_records(model_dir, "evaluator_metrics.jsonl"),
                    "evaluated")
    self.assertIn(5, before)
    self.assertNotIn(15, before)

    # Again, as the evaluator task of the TF_CONFIG the training-operator
    # writes for a one-worker TFJob with an evaluator, with the trainer's
    # command line and no --mode. Nothing listens at the worker's address:
    # the evaluator must not join the workers' collectives.
    worker, evaluator = processes.free_ports(2)
    tf_config = _tf_config({"worker": [f"127.0.0.1:{worker}"],
                            "evaluator": [f"127.0.0.1:{evaluator}"]},
                           "evaluator", 0)
    second = self._start(*_RUN, f"--model_dir={model_dir}",
                         f"--export_dir={export_dir}", "--export_best",
                         "--eval_timeout_secs=120", TF_CONFIG=tf_config)
    out, _ = self._finish(second)  # It ends by itself, after step 20.
    self.assertIn(f"{len(before)} were evaluated before", out)
    self.assertEqual([int(s) for s in _VALIDATION_LINE.findall(out)],
                     [s for s in _STEPS if s not in before])

    # The trainer did not evaluate; the evaluators did, each checkpoint once.
    trained = _records(model_dir, "metrics.jsonl")
    self.assertEqual(_steps(trained, "eval") + _steps(trained, "test"), [])
    records = _records(model_dir, "evaluator_metrics.jsonl")
    for kind in ("eval", "test", "evaluated"):
      self.assertEqual(_steps(records, kind), _STEPS, kind)
    evals = [r for r in records if r["kind"] == "eval"]
    self.assertEqual({r["examples"] for r in evals}, {100.0})

    # The best checkpoint is the first lowest validation error's, and each
    # improvement was exported once (the trainer exported the last step).
    errors = [r["top1_error"] for r in evals]
    with open(os.path.join(model_dir, "best", "checkpoint")) as f:
      self.assertIn(
          f'model_checkpoint_path: "ckpt-{_STEPS[errors.index(min(errors))]}"',
          f.read())
    improvements = [s for i, s in enumerate(_STEPS)
                    if errors[i] < min(errors[:i], default=2.0)]
    self.assertEqual(
        [int(s) for s in re.findall(
            r"^step (\d+): exported .* \(best validation error so far\)$",
            "".join(first_out) + out, re.M)], improvements)

    # What the reports read: the evaluator's curves beside the training.
    run = logs.read_run(model_dir)
    self.assertEqual(run.validation_error.steps, tuple(_STEPS))
    self.assertEqual(run.validation_error.values, tuple(errors))
    self.assertEqual(run.test_error.steps, tuple(_STEPS))
    self.assertTrue(run.finished)


if __name__ == "__main__":
  absltest.main()
