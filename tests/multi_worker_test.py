"""Two workers of the real training binary, started as Kubeflow's TFJob starts them.

Every run here is `python -m tf_resnet.train` as a local process on
127.0.0.1 with exactly the TF_CONFIG the training-operator writes into each
pod (`{"cluster": ..., "task": {"type": ..., "index": ...}, "environment":
"cloud"}`) and no --strategy flag. The runs are shared between the tests
(the class sets them up once, two at a time):

  reference: a chief and a worker train 8 steps undisturbed and end;
  killed:    two workers; worker 1 is SIGKILLed after the checkpoint of
             step 2, and worker 0 must fail on its own, with a clear error;
  resumed:   both restarted: they resume at step 2; worker 1 gets SIGTERM,
             and both save the same step and exit with 143;
  finished:  both restarted again: they resume at that step and end;
             beside it, a `ps` task, which must be refused.

The losses of resumed and finished, interval by interval, must be those of
the undisturbed reference.
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Optional, Sequence

from absl.testing import absltest

from tf_resnet.testing import processes

_TRAIN_STEPS = 8
_TINY = ("--dataset=digits", "--depth=8", "--batch_size=16",
         "--steps_per_loop=2", "--eval_examples=40", "--stats_max_images=200",
         f"--train_steps={_TRAIN_STEPS}")
# After a peer is SIGKILLed, how long the survivor may take to fail (on
# 127.0.0.1 its connection is reset at once; a machine that vanishes
# without a reset is noticed by the coordination service's heartbeats,
# docs/cluster.md).
_FAIL_WITHIN_SECS = 60
_PROGRESS = re.compile(r"^step (\d+)/\d+ loss (\S+) ", re.M)


def _tf_config(cluster: dict[str, list[str]], task_type: str,
               index: int) -> str:
  """What the training-operator writes into a replica's TF_CONFIG."""
  return json.dumps({"cluster": cluster,
                     "task": {"type": task_type, "index": index},
                     "environment": "cloud"})


class _Cluster:
  """The processes of one run, each logging stdout and stderr to a file."""

  def __init__(self, root: str, name: str, tasks: Sequence[tuple[str, int]],
               args: Sequence[str]):
    ports = processes.free_ports(len(tasks))
    cluster: dict[str, list[str]] = {}
    for (task_type, _), port in zip(tasks, ports):
      cluster.setdefault(task_type, []).append(f"127.0.0.1:{port}")
    self.logs, self.procs = [], []
    for i, (task_type, index) in enumerate(tasks):
      self.logs.append(os.path.join(root, f"{name}.{task_type}{index}.log"))
      with open(self.logs[-1], "w") as log:
        self.procs.append(processes.start(
            "tf_resnet.train", *args, stdout=log, stderr=subprocess.STDOUT,
            env=processes.env(
                TF_CONFIG=_tf_config(cluster, task_type, index))))
    self.ended_at: list[Optional[float]] = [None] * len(tasks)

  def text(self, i: int) -> str:
    with open(self.logs[i]) as f:
      return f.read()

  def wait_for(self, pattern: str, i: int = 0) -> None:
    """Waits until process `i` logs a line matching `pattern`."""
    deadline = time.monotonic() + processes.TIMEOUT_SECS
    while not re.search(pattern, self.text(i), re.M):
      if self.procs[i].poll() is not None or time.monotonic() > deadline:
        raise AssertionError(f"no line {pattern!r} from process {i}:\n"
                             + self.report())
      time.sleep(0.2)

  def wait(self) -> list[int]:
    """Waits for every process to end (kills them after the timeout)."""
    deadline = time.monotonic() + processes.TIMEOUT_SECS
    while any(p.poll() is None for p in self.procs):
      for i, p in enumerate(self.procs):
        if p.poll() is not None and self.ended_at[i] is None:
          self.ended_at[i] = time.monotonic()
      if time.monotonic() > deadline:
        break
      time.sleep(0.1)
    for i, p in enumerate(self.procs):
      processes.stop(p)
      if self.ended_at[i] is None:
        self.ended_at[i] = time.monotonic()
    return [p.returncode for p in self.procs]

  def stop(self) -> None:
    for p in self.procs:
      processes.stop(p)

  def report(self) -> str:
    return "\n".join(f"--- process {i} (status {p.poll()}):\n"
                     + self.text(i)[-6000:]
                     for i, p in enumerate(self.procs))


def _latest_checkpoint(model_dir: str) -> Optional[str]:
  """The newest checkpoint the chief recorded (TensorFlow's state file)."""
  try:
    with open(os.path.join(model_dir, "checkpoint")) as f:
      line = f.readline()
  except FileNotFoundError:
    return None
  match = re.match(r'^model_checkpoint_path: "(.+)"$', line.strip())
  return os.path.join(model_dir, match[1]) if match else None


def _losses(text: str) -> dict[int, float]:
  return {int(m[1]): float(m[2]) for m in _PROGRESS.finditer(text)}


class MultiWorkerTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    cls.model_dir = os.path.join(cls.root, "run")
    cls.reference_dir = os.path.join(cls.root, "reference")
    cls.export_dir = os.path.join(cls.root, "export")
    workers = [("worker", 0), ("worker", 1)]
    run = _TINY + (f"--model_dir={cls.model_dir}",
                   "--checkpoint_every_steps=2")

    # The reference runs beside the whole chain.
    cls.reference = _Cluster(
        cls.root, "reference", [("chief", 0), ("worker", 0)],
        _TINY + (f"--model_dir={cls.reference_dir}",
                 f"--export_dir={cls.export_dir}"))
    cls.killed = _Cluster(cls.root, "killed", workers, run)
    try:
      cls.killed.wait_for(r"^step 2/")
      deadline = time.monotonic() + processes.TIMEOUT_SECS
      while (_latest_checkpoint(cls.model_dir) is None
             and time.monotonic() < deadline):
        time.sleep(0.05)
      cls.killed.procs[1].kill()
      cls.killed_at = time.monotonic()
      cls.killed_status = cls.killed.wait()
      # What the killed run kept: the checkpoint of step 2 (rarely 4, if
      # both workers saved it before the kill).
      cls.last_checkpoint = _latest_checkpoint(cls.model_dir)

      # The reference (its export at the end) goes on beside the chain.
      cls.resumed = _Cluster(cls.root, "resumed", workers, run)
      cls.resumed.wait_for(r"^Resumed from ")
      cls.resumed.wait_for(r"^step \d+/")
      cls.resumed.procs[1].send_signal(signal.SIGTERM)
      cls.resumed_status = cls.resumed.wait()

      cls.finished = _Cluster(cls.root, "finished", workers, run)
      # A `ps` task's refusal, beside the last run.
      cls.ps_log = os.path.join(cls.root, "ps.log")
      with open(cls.ps_log, "w") as log:
        cls.ps = processes.start(
            "tf_resnet.train", *_TINY,
            f"--model_dir={os.path.join(cls.root, 'ps')}",
            stdout=subprocess.DEVNULL, stderr=log, env=processes.env(TF_CONFIG=_tf_config(
                {"ps": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}, "ps",
                0)))
      cls.finished_status = cls.finished.wait()
      cls.reference_status = cls.reference.wait()
      cls.ps_status = cls.ps.wait(timeout=processes.TIMEOUT_SECS)
    finally:
      for c in ("reference", "killed", "resumed", "finished"):
        if hasattr(cls, c):
          getattr(cls, c).stop()
      if hasattr(cls, "ps"):
        processes.stop(cls.ps)

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def test_two_workers_train_from_tf_config_alone_and_agree(self):
    self.assertEqual(self.reference_status, [0, 0],
                     self.reference.report())
    # Each worker evaluates its own copy of the network at the end: the
    # same weights give the same errors.
    done = [re.findall(r"^Done at step 8: .*$", self.reference.text(i), re.M)
            for i in range(2)]
    self.assertLen(done[0], 1, self.reference.report())
    self.assertEqual(done[0], done[1])
    # Each said whom it waited for before the strategy's silent start.
    for i, (me, other) in enumerate((("chief 0", "worker 0"),
                                     ("worker 0", "chief 0"))):
      text = self.reference.text(i)
      waiting = re.search(
          rf"^{me} of 2 training tasks, at 127\.0\.0\.1:\d+: waiting for "
          rf"{other} at 127\.0\.0\.1:\d+ to start \(", text, re.M)
      self.assertIsNotNone(waiting, text[-3000:])
      self.assertLess(waiting.start(), text.index("Training ResNet-8"))
    with open(os.path.join(self.reference_dir, "config.json")) as f:
      self.assertEqual(json.load(f)["strategy"], "multi_worker")

  def test_the_chief_alone_writes_every_file_of_the_run(self):
    model_dir = self.reference_dir
    with open(os.path.join(model_dir, "checkpoint")) as f:
      self.assertEqual(f.readline().strip(),
                       f'model_checkpoint_path: "ckpt-{_TRAIN_STEPS}"')
    for name in ("config.json", "stats.json", "labels.txt",
                 f"ckpt-{_TRAIN_STEPS}.index"):
      self.assertTrue(os.path.exists(os.path.join(model_dir, name)), name)
    with open(os.path.join(model_dir, "metrics.jsonl")) as f:
      records = [json.loads(line) for line in f]
    self.assertEqual([r["step"] for r in records if r["kind"] == "train"],
                     [2, 4, 6, 8])
    self.assertEqual([r["step"] for r in records if r["kind"] == "test"],
                     [8])
    chief_pid = self.reference.procs[0].pid
    for kind in ("train", "test"):
      events = glob.glob(os.path.join(model_dir, kind, "events.out.*"))
      self.assertLen(events, 1, kind)
      # Summary files are named ...<host>.<pid>.<n>.v2.
      self.assertEqual(int(events[0].split(".")[-3]), chief_pid)
    self.assertEqual(os.listdir(self.export_dir), ["1"])

  def test_a_killed_worker_fails_the_other_with_a_clear_error(self):
    self.assertEqual(self.killed_status, [138, -signal.SIGKILL],
                     self.killed.report())
    took = self.killed.ended_at[0] - self.killed_at
    self.assertLess(took, _FAIL_WITHIN_SECS)
    errors = re.findall(r"^error: .*$", self.killed.text(0), re.M)
    self.assertLen(errors, 1, self.killed.report())
    self.assertRegex(
        errors[0], r"^error: lost another worker of the cluster \(\w+Error: "
        r".+\); restart every worker to resume from the last checkpoint, "
        + re.escape(str(self.last_checkpoint)) + "$")
    self.assertNotIn("Traceback", self.killed.text(0))

  def test_restart_resumes_from_the_last_checkpoint(self):
    self.assertRegex(self.last_checkpoint, r"/ckpt-[24]$")
    step = int(self.last_checkpoint.rsplit("-", 1)[1])
    self.assertIn(f"Resumed from {self.last_checkpoint} at step {step}",
                  self.resumed.text(0))

  def test_sigterm_to_one_worker_saves_every_worker_at_one_step(self):
    self.assertEqual(self.resumed_status, [143, 143], self.resumed.report())
    signalled = re.search(r"^Stopped by signal 15 at step (\d+); saved "
                          r"(\S+)\. Run the same command to resume\.$",
                          self.resumed.text(1), re.M)
    other = re.search(r"^Stopped because another worker was stopped by a "
                      r"signal at step (\d+); saved (\S+)\. Run the same "
                      r"command to resume\.$", self.resumed.text(0), re.M)
    self.assertIsNotNone(signalled, self.resumed.report())
    self.assertIsNotNone(other, self.resumed.report())
    step = int(other[1])
    self.assertEqual(int(signalled[1]), step)
    self.assertLess(step, _TRAIN_STEPS)
    self.assertEqual(max(_losses(self.resumed.text(0))), step)
    checkpoint = os.path.join(self.model_dir, f"ckpt-{step}")
    self.assertEqual((other[2], signalled[2]), (checkpoint, checkpoint))
    self.assertTrue(os.path.exists(checkpoint + ".index"))

  def test_restarted_workers_resume_at_that_step_and_end_cleanly(self):
    self.assertEqual(self.finished_status, [0, 0], self.finished.report())
    step = max(_losses(self.resumed.text(0)))
    self.assertIn(f"Resumed from {os.path.join(self.model_dir, f'ckpt-{step}')}"
                  f" at step {step}", self.finished.text(0))
    with open(os.path.join(self.model_dir, "checkpoint")) as f:
      self.assertEqual(f.readline().strip(),
                       f'model_checkpoint_path: "ckpt-{_TRAIN_STEPS}"')
    # Interval by interval, the losses of the undisturbed run.
    reference = _losses(self.reference.text(0))
    self.assertEqual(sorted(reference), [2, 4, 6, 8])
    chain = {**_losses(self.killed.text(0)), **_losses(self.resumed.text(0)),
             **_losses(self.finished.text(0))}
    self.assertEqual(sorted(chain), [2, 4, 6, 8])
    for s in reference:
      self.assertAlmostEqual(chain[s], reference[s], places=4, msg=s)

  def test_a_ps_task_is_refused_in_one_line(self):
    with open(self.ps_log) as f:
      stderr = f.read()
    self.assertEqual(self.ps_status, 1, stderr)
    self.assertRegex(stderr.strip().splitlines()[-1],
                     r"^error: TF_CONFIG has a `ps` task: "
                     "ParameterServerStrategy is not supported")
    self.assertNotIn("Traceback", stderr)


if __name__ == "__main__":
  absltest.main()
