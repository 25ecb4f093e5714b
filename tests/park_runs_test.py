"""reproduction/park_runs.sh: stops the trainers, keeps what resuming needs."""

import os
import signal
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest
import tensorflow as tf

_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
_SCRIPT = os.path.join(_ROOT, "reproduction", "park_runs.sh")

# A stand-in trainer: on SIGTERM it writes its newest checkpoint, as
# tf_resnet.train does, and exits.
_TRAINER = """
import os, signal, sys, time
run = sys.argv[1]
def stop(*_):
  for ext in ("index", "data-00000-of-00001"):
    open(os.path.join(run, "ckpt-300." + ext), "w").write("final " + ext)
  with open(os.path.join(run, "checkpoint"), "w") as f:
    f.write('model_checkpoint_path: "ckpt-300"\\n'
            'all_model_checkpoint_paths: "ckpt-200"\\n'
            'all_model_checkpoint_paths: "ckpt-300"\\n')
  sys.exit(0)
signal.signal(signal.SIGTERM, stop)
open(os.path.join(run, "..", "ready"), "w").close()
time.sleep(60)
"""


def _write(path, text=""):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)


class ParkRunsTest(absltest.TestCase):

  def test_stops_the_trainer_and_keeps_only_what_resuming_needs(self):
    out = tempfile.mkdtemp()
    park = os.path.join(tempfile.mkdtemp(), "parked")
    run = os.path.join(out, "resnet20")
    for name in ("config.json", "stats.json", "labels.txt"):
      _write(os.path.join(run, name), name)
    _write(os.path.join(run, "metrics.jsonl"),
           '{"kind": "start", "step": 100, "time": 1765062000.5}\n'
           '{"kind": "train", "step": 200}\n{"kind": "eval", "step": 250}\n')
    # An earlier session's segment, carried with the run.
    _write(os.path.join(run, "segments.txt"), "steps 0-100, earlier\n")
    for step in (100, 200):
      for ext in ("index", "data-00000-of-00001"):
        _write(os.path.join(run, f"ckpt-{step}.{ext}"), "old")
    _write(os.path.join(run, "checkpoint"),
           'model_checkpoint_path: "ckpt-200"\n')
    for ext in ("index", "data-00000-of-00001"):
      _write(os.path.join(run, "best", f"ckpt-150.{ext}"), "best")
    _write(os.path.join(run, "best", "checkpoint"),
           'model_checkpoint_path: "ckpt-150"\n')
    _write(os.path.join(run, "train", "events.out.tfevents.1"), "events")
    _write(os.path.join(out, "resnet20.command"), "python -m tf_resnet.train")
    trainer = subprocess.Popen([sys.executable, "-c", _TRAINER, run])
    self.addCleanup(trainer.kill)
    while not os.path.exists(os.path.join(out, "ready")):
      time.sleep(0.05)
    _write(os.path.join(out, "resnet20.pid"), str(trainer.pid))

    result = subprocess.run([_SCRIPT, out, park], capture_output=True,
                            text=True, check=True)
    self.assertEqual(trainer.wait(timeout=30), 0)  # Stopped by SIGTERM.
    self.assertIn("resnet20: stopping trainer", result.stdout)
    self.assertIn("resnet20: parked at step 250", result.stdout)
    parked = os.path.join(park, "resnet20")
    self.assertCountEqual(
        os.listdir(parked),
        ["config.json", "stats.json", "labels.txt", "metrics.jsonl",
         "segments.txt", "checkpoint", "ckpt-300.index", "ckpt-300.data-00000-of-00001",
         "best"])
    self.assertCountEqual(os.listdir(os.path.join(parked, "best")),
                          ["checkpoint", "ckpt-150.index",
                           "ckpt-150.data-00000-of-00001"])
    with open(os.path.join(parked, "segments.txt")) as f:
      segments = f.read().splitlines()
    self.assertEqual(segments[0], "steps 0-100, earlier")
    # This machine's segment: from the last start record (2025-12-06 23:00
    # UTC) to the last logged step, and this machine's CPU.
    self.assertLen(segments, 2)
    self.assertRegex(segments[1], r"^steps 100-250, 2025-12-06T23:00Z to "
                     r"\d{4}-\d\d-\d\dT\d\d:\d\dZ: .* \(family \S+ model "
                     r"\S+; .*\), \d+ cores$")
    with open(os.path.join(parked, "ckpt-300.index")) as f:
      self.assertEqual(f.read(), "final index")  # Saved at the stop.
    self.assertTrue(os.path.exists(os.path.join(park, "resnet20.command")))
    # The index names the one kept checkpoint, and a resumed
    # CheckpointManager manages it.
    manager = tf.train.CheckpointManager(
        tf.train.Checkpoint(), parked, max_to_keep=2)
    self.assertEqual(manager.latest_checkpoint,
                     os.path.join(parked, "ckpt-300"))
    self.assertEqual(manager.checkpoints, [os.path.join(parked, "ckpt-300")])

  def test_no_runs_is_an_error(self):
    result = subprocess.run([_SCRIPT, tempfile.mkdtemp(), tempfile.mkdtemp()],
                            capture_output=True, text=True)
    self.assertEqual(result.returncode, 2)
    self.assertIn("no runs (*/config.json)", result.stderr)


if __name__ == "__main__":
  absltest.main()
