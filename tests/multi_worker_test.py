"""Two local workers train one run with MultiWorkerMirroredStrategy."""

import glob
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest
import numpy as np

from tf_resnet.testing import processes

# The worker program (under Bazel, resolving the runfiles symlink leads to
# the source tree, where it sits beside this file).
_WORKER = os.path.join(os.path.dirname(os.path.realpath(__file__)),
                       "multi_worker_main.py")
# After one worker fails, how long the other may take to notice and exit.
_GRACE_SECS = 30
_TRAIN_STEPS = 6  # multi_worker_main's default --train_steps, in steps of 3.


class MultiWorkerTest(absltest.TestCase):

  def _tempdir(self) -> str:
    # Not create_tempdir(): it needs absl's flags parsed, which pytest skips.
    path = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  def _run_workers(self, model_dir: str, root: str,
                   *extra: str) -> tuple[list[str], int]:
    """Runs both workers to the end; returns their .npz files, chief pid."""
    cluster = {
        "worker": [f"127.0.0.1:{port}" for port in processes.free_ports(2)]
    }
    workers, logs, outputs = [], [], []
    for index in range(2):
      tf_config = {"cluster": cluster,
                   "task": {"type": "worker", "index": index}}
      env = processes.env(TF_CONFIG=json.dumps(tf_config))
      logs.append(os.path.join(root, f"worker{index}.log"))
      outputs.append(os.path.join(root, f"worker{index}.npz"))
      with open(logs[-1], "w") as log:
        workers.append(subprocess.Popen(
            [sys.executable, _WORKER, f"--model_dir={model_dir}",
             f"--output={outputs[-1]}", *extra],
            stdout=log, stderr=subprocess.STDOUT, env=env))
    for w in workers:
      self.addCleanup(processes.stop, w)

    deadline = time.monotonic() + processes.TIMEOUT_SECS
    while (any(w.poll() is None for w in workers)
           and time.monotonic() < deadline):
      if any(w.poll() not in (None, 0) for w in workers):
        # A worker failed: the other waits for it in a collective.
        deadline = min(deadline, time.monotonic() + _GRACE_SECS)
      time.sleep(0.5)
    for w in workers:
      processes.stop(w)
    statuses = [w.returncode for w in workers]
    if statuses != [0, 0]:
      text = []
      for index, path in enumerate(logs):
        with open(path) as f:
          text.append(f"--- worker {index} (status {statuses[index]}):\n"
                      + f.read()[-20000:])
      self.fail(f"the workers exited with {statuses} (negative: killed "
                f"after {processes.TIMEOUT_SECS} s or after the other failed)\n"
                + "\n".join(text))
    return outputs, workers[0].pid

  def test_two_workers_hold_the_same_network_and_only_the_chief_writes(self):
    root = self._tempdir()
    model_dir = os.path.join(root, "run")
    outputs, chief_pid = self._run_workers(model_dir, root)

    with np.load(outputs[0]) as chief, np.load(outputs[1]) as other:
      self.assertNotEmpty(chief.files)
      self.assertCountEqual(chief.files, other.files)
      for name in chief.files:
        np.testing.assert_allclose(chief[name], other[name], rtol=0,
                                   atol=1e-6, err_msg=name)

    # One writer: each step logged once, by the chief.
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
      records = [json.loads(line) for line in f]
    train = [r for r in records if r["kind"] == "train"]
    self.assertEqual([r["step"] for r in train], [3, _TRAIN_STEPS])
    self.assertTrue(math.isfinite(train[-1]["loss"]))
    self.assertEqual([r["step"] for r in records if r["kind"] == "eval"],
                     [_TRAIN_STEPS])

    # The chief's checkpoint; nothing of worker 1's in the shared model_dir.
    with open(os.path.join(model_dir, "checkpoint")) as f:
      self.assertEqual(f.readline().strip(),
                       f'model_checkpoint_path: "ckpt-{_TRAIN_STEPS}"')
    self.assertTrue(os.path.exists(
        os.path.join(model_dir, f"ckpt-{_TRAIN_STEPS}.index")))
    entries = os.listdir(model_dir)
    self.assertCountEqual(
        [e for e in entries if os.path.isdir(os.path.join(model_dir, e))],
        ["train", "eval", "best"])
    unexpected = [e for e in entries
                  if os.path.isfile(os.path.join(model_dir, e))
                  and e not in ("checkpoint", "config.json", "stats.json",
                                "labels.txt", "metrics.jsonl")
                  and not e.startswith("ckpt-")]
    self.assertEmpty(unexpected)
    for kind in ("train", "eval"):
      events = glob.glob(os.path.join(model_dir, kind, "events.out.*"))
      self.assertLen(events, 1, kind)
      # Summary files are named ...<host>.<pid>.<n>.v2.
      self.assertEqual(int(events[0].split(".")[-3]), chief_pid)

  def test_workers_resume_together_and_export(self):
    root = self._tempdir()
    model_dir = os.path.join(root, "run")
    export_dir = os.path.join(root, "export")
    self._run_workers(model_dir, root, f"--export_dir={export_dir}")
    outputs, _ = self._run_workers(model_dir, root, "--train_steps=9",
                                   f"--export_dir={export_dir}")
    with np.load(outputs[0]) as chief, np.load(outputs[1]) as other:
      for name in chief.files:
        np.testing.assert_allclose(chief[name], other[name], rtol=0,
                                   atol=1e-6, err_msg=name)
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
      steps = [json.loads(line)["step"] for line in f
               if json.loads(line)["kind"] == "train"]
    self.assertEqual(steps, [3, _TRAIN_STEPS, 9])
    # One version per run, written by the chief alone.
    self.assertEqual(sorted(os.listdir(export_dir)), ["1", "2"])


if __name__ == "__main__":
  absltest.main()
