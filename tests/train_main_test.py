"""The training binary as a user runs it: resume, signals, errors, flagfiles.

(Over 350 lines: one binary's behaviours as a user meets them, each a few
subprocess runs; the shared helpers are in tf_resnet/testing.)
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from tf_resnet.testing import cpu
from tf_resnet.testing import images
from tf_resnet.testing import processes

# The source tree (under Bazel, resolving the runfiles symlink leads there).
_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
_FLAGFILES = sorted(glob.glob(os.path.join(_ROOT, "flags", "*.flags")))

# ResNet-8 on the embedded digits: a few seconds per run beyond the import.
_TINY = ("--dataset=digits", "--depth=8", "--batch_size=32",
         "--steps_per_loop=5")
_PROGRESS = re.compile(r"^step (\d+)/(\d+) loss \S+ train_error ", re.M)

# Parses each flagfile given on the command line with the binary's own flags
# (and validators) and prints the values that define the run, one JSON line
# per file.
_PARSE_FLAGFILES = """
import json
import sys
from absl import flags
import tf_resnet.train  # Defines the binary's flags.
FLAGS = flags.FLAGS
for path in sys.argv[1:]:
  FLAGS.unparse_flags()
  FLAGS(["train", "--flagfile=" + path])
  print(json.dumps({"path": path, **{name: FLAGS[name].value for name in (
      "dataset", "model", "depth", "shortcut", "batch_size", "train_steps",
      "schedule", "lr_boundaries", "learning_rate", "momentum", "holdout",
      "monitor_test", "plateau_patience", "plateau_threshold",
      "min_learning_rate",
      "weight_decay", "warmup_learning_rate")}}))
"""


def _train(*args: str) -> subprocess.CompletedProcess:
  return processes.run("tf_resnet.train", *args)


def _progress_steps(stdout: str) -> list[int]:
  return [int(m[1]) for m in _PROGRESS.finditer(stdout)]


def _step_of(checkpoint: str) -> int:
  match = re.fullmatch(r".*/ckpt-(\d+)", checkpoint)
  if not match:
    raise ValueError(f"not a CheckpointManager path: {checkpoint}")
  return int(match[1])


def _metrics(model_dir: str, kind: str) -> list[dict]:
  with open(os.path.join(model_dir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return [r for r in records if r["kind"] == kind]


def _error_line(stderr: str, prefix: str) -> str:
  """The line of stderr that starts with `prefix`, or '' if there is none."""
  lines = [line for line in stderr.splitlines() if line.startswith(prefix)]
  return lines[-1] if lines else ""


class _BinaryTestCase(parameterized.TestCase):
  """Runs of the binary in temporary directories of the test's own."""

  def _tempdir(self) -> str:
    # Not create_tempdir(): it needs absl's flags parsed, which pytest skips.
    path = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
    self.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return path

  def _start(self, *args: str) -> tuple[subprocess.Popen, str]:
    """Starts the binary with stdout piped; returns it and its stderr file."""
    stderr_path = os.path.join(self._tempdir(), "stderr")
    with open(stderr_path, "w") as stderr:
      proc = subprocess.Popen(processes.command("tf_resnet.train", *args),
                              stdout=subprocess.PIPE, stderr=stderr,
                              text=True, env=processes.env())
    self.addCleanup(proc.stdout.close)
    self.addCleanup(processes.stop, proc)
    return proc, stderr_path

  def _read_until_step(self, proc: subprocess.Popen, stderr_path: str,
                       min_step: int) -> list[str]:
    """Lines of stdout up to the first progress line at `min_step` or later."""
    watchdog = threading.Timer(processes.TIMEOUT_SECS, proc.kill)
    watchdog.start()
    lines = []
    try:
      for line in proc.stdout:
        lines.append(line)
        match = _PROGRESS.match(line)
        if match and int(match[1]) >= min_step:
          return lines
    finally:
      watchdog.cancel()
    with open(stderr_path) as f:
      stderr = f.read()
    self.fail(f"the run ended (status {proc.wait()}) before step {min_step}:"
              f"\n{''.join(lines)}\n{stderr}")


class ResumeTest(_BinaryTestCase):
  """A run stopped by a signal or damage is resumed by the same command."""

  def test_kill_9_then_the_same_command_resumes_and_finishes(self):
    model_dir = self._tempdir()
    args = _TINY + ("--train_steps=60", "--checkpoint_every_steps=10",
                    "--eval_every_steps=1000", f"--model_dir={model_dir}")
    proc, stderr_path = self._start(*args)
    lines = self._read_until_step(proc, stderr_path, 25)
    proc.kill()
    rest, _ = proc.communicate(timeout=60)
    self.assertEqual(proc.returncode, -signal.SIGKILL)
    printed = _progress_steps("".join(lines) + rest)
    last = printed[-1]
    self.assertLess(last, 60, "the run finished before it was killed")

    # Saves come right after the progress line of their step, so the one at
    # the last printed step may have been cut short; any earlier one is done.
    checkpoint = tf.train.latest_checkpoint(model_dir)
    self.assertIsNotNone(checkpoint)
    resumed_at = _step_of(checkpoint)
    due = last // 10 * 10
    self.assertIn(resumed_at, {due, due - 10} if due == last else {due})
    self.assertGreaterEqual(resumed_at, 20)

    result = _train(*args)
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertIn(f"Resumed from {checkpoint} at step {resumed_at}\n",
                  result.stdout)
    resumed_steps = list(range(resumed_at + 5, 61, 5))
    self.assertEqual(_progress_steps(result.stdout), resumed_steps)
    self.assertStartsWith(result.stdout.strip().splitlines()[-1],
                          "Done at step 60: top-1 error ")

    # The killed run logged steps 5, 10, ... up to the last printed one (its
    # record may not have been written); the resumed run continues from the
    # checkpoint, never repeating a step at or before it.
    # Each process logged where it started.
    self.assertEqual([r["step"] for r in _metrics(model_dir, "start")],
                     [0, resumed_at])
    steps = [r["step"] for r in _metrics(model_dir, "train")]
    first_run = steps[:-len(resumed_steps)]
    self.assertEqual(steps[-len(resumed_steps):], resumed_steps)
    self.assertIn(first_run[-1], {last, last - 5})
    self.assertEqual(first_run, list(range(5, first_run[-1] + 1, 5)))
    self.assertGreaterEqual(first_run[-1], resumed_at)
    # Without a holdout the final evaluation is of the test split, logged.
    evals = _metrics(model_dir, "test")
    self.assertEqual([r["step"] for r in evals], [60])

    evaluation = processes.run("tf_resnet.evaluate", f"--model_dir={model_dir}",
                               "--format=json")
    self.assertEqual(evaluation.returncode, 0, evaluation.stderr)
    output = evaluation.stdout.strip().splitlines()
    self.assertLen(output, 1)
    record = json.loads(output[0])
    self.assertEqual(record["step"], 60)
    self.assertEqual(record["checkpoint"], os.path.join(model_dir, "ckpt-60"))
    self.assertEqual(record["examples"], 360)  # The digits test split.
    self.assertBetween(record["top5_error"], 0.0, record["top1_error"])
    # The same weights on the same images as the run's final evaluation; a
    # different batch size may round a near-tie the other way.
    self.assertAlmostEqual(record["top1_error"], evals[0]["top1_error"],
                           delta=1.01 / 360)

  def test_a_damaged_checkpoint_is_named_and_training_falls_back(self):
    model_dir = self._tempdir()
    args = _TINY + ("--checkpoint_every_steps=2", "--steps_per_loop=2",
                    f"--model_dir={model_dir}")
    first = _train(*args, "--train_steps=6")
    self.assertEqual(first.returncode, 0, first.stderr)
    newest = os.path.join(model_dir, "ckpt-6")
    (data,) = glob.glob(newest + ".data-*")
    with open(data, "r+b") as f:
      f.truncate(os.path.getsize(data) // 2)
    for module, extra in (("tf_resnet.evaluate", ()),
                          ("tf_resnet.export",
                           (f"--export_dir={self._tempdir()}",))):
      with self.subTest(module):
        result = processes.run(module, f"--model_dir={model_dir}", *extra)
        self.assertEqual(result.returncode, 1)
        line = _error_line(result.stderr, "error: ")
        self.assertIn(f"the newest checkpoint {newest} is damaged", line)
        self.assertIn(f"pass --checkpoint={model_dir}/ckpt-4", line)
        self.assertNotIn("Traceback", result.stderr)
    resumed = _train(*args, "--train_steps=8")
    self.assertEqual(resumed.returncode, 0, resumed.stderr)
    self.assertIn(f"skipped damaged checkpoint(s) {newest}", resumed.stdout)
    self.assertIn(f"Resumed from {model_dir}/ckpt-4 at step 4",
                  resumed.stdout)
    self.assertEqual(_progress_steps(resumed.stdout), [6, 8])
    self.assertNotEmpty(glob.glob(os.path.join(
        model_dir, "damaged", "*", os.path.basename(data))))

  def test_sigterm_saves_and_the_same_command_resumes(self):
    model_dir = self._tempdir()
    proc, stderr_path = self._start(*_TINY, "--train_steps=100000",
                                    "--eval_every_steps=1000",
                                    f"--model_dir={model_dir}")
    lines = self._read_until_step(proc, stderr_path, 1)
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=processes.TIMEOUT_SECS)
    stdout = "".join(lines) + rest
    with open(stderr_path) as f:
      self.assertEqual(proc.returncode, 128 + signal.SIGTERM, f.read())
    match = re.search(r"^Stopped by signal 15 at step (\d+); saved (\S+)\. "
                      r"Run the same command to resume\.$", stdout, re.M)
    self.assertIsNotNone(match, stdout)
    step = int(match[1])
    self.assertEqual(step, _progress_steps(stdout)[-1])
    checkpoint = os.path.join(model_dir, f"ckpt-{step}")
    self.assertEqual(match[2], checkpoint)
    self.assertEqual(tf.train.latest_checkpoint(model_dir), checkpoint)

    result = _train(*_TINY, f"--train_steps={step + 10}",
                    f"--model_dir={model_dir}")
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertIn(f"Resumed from {checkpoint} at step {step}\n",
                  result.stdout)
    self.assertEqual(_progress_steps(result.stdout), [step + 5, step + 10])
    self.assertIn(f"Done at step {step + 10}: top-1 error ", result.stdout)


class RunTest(_BinaryTestCase):
  """Runs that start from another, stop on a bad loss, or come from a flagfile."""

  def test_fine_tunes_from_another_run_with_a_new_head(self):
    source = self._tempdir()
    first = _train(*_TINY, "--train_steps=2", f"--model_dir={source}")
    self.assertEqual(first.returncode, 0, first.stderr)
    data = self._tempdir()
    for c in range(3):
      for split in ("train", "test"):
        for i in range(3):
          images.write_file(f"{data}/{split}/k{c}/{i}.png",
                            images.png(10 * c + i))
    model_dir = os.path.join(self._tempdir(), "run")
    tuned = _train(f"--init_from={source}", f"--dataset=folder:{data}",
                   "--trainable=head", "--head_learning_rate=1.0",
                   "--batch_size=3", "--train_steps=2", "--steps_per_loop=1",
                   f"--model_dir={model_dir}")
    self.assertEqual(tuned.returncode, 0, tuned.stderr)
    # The source's network (no --depth given), with the folder's classes.
    self.assertStartsWith(tuned.stdout, "Training ResNet-8 (A) on folder:")
    self.assertIn(f"Initialized from {source}/ckpt-2: restored", tuned.stdout)
    self.assertIn("new: head/fc/kernel (shape [64, 3], the source's [64, 10])",
                  tuned.stdout)
    with open(os.path.join(model_dir, "config.json")) as f:
      config = json.load(f)
    self.assertEqual((config["trainable"], config["head_learning_rate"],
                      config["model"]["num_classes"]), ("head", 1.0, 3))
    wrong = _train(f"--init_from={source}", f"--dataset=folder:{data}",
                   "--depth=20", f"--model_dir={self._tempdir()}")
    self.assertEqual(wrong.returncode, 1)
    self.assertIn(f"--depth=20 contradicts --init_from={source}, a "
                  "ResNet-8 (A)", _error_line(wrong.stderr, "error: "))

  def test_diverging_loss_stops_and_keeps_the_last_good_checkpoint(self):
    model_dir = self._tempdir()
    # Ten warm-up steps at 0.01 (checkpoints at 5 and 10), then 1e30.
    result = _train(*_TINY, "--train_steps=30", "--checkpoint_every_steps=5",
                    "--warmup_learning_rate=0.01", "--warmup_max_steps=10",
                    "--warmup_until_error=0.001", "--learning_rate=1e30",
                    f"--model_dir={model_dir}")
    self.assertEqual(result.returncode, 1, result.stdout)
    line = _error_line(result.stderr, "error: ")
    match = re.search(r"at step (\d+); training stopped\. The last good "
                      r"checkpoint is (\S+); ", line)
    self.assertIsNotNone(match, result.stderr)
    bad_step = int(match[1])
    self.assertBetween(bad_step, 11, 15)
    checkpoint = tf.train.latest_checkpoint(model_dir)
    self.assertEqual(match[2], checkpoint)
    self.assertEqual(_step_of(checkpoint), 10)
    saved = [_step_of(p[:-len(".index")])
             for p in glob.glob(os.path.join(model_dir, "ckpt-*.index"))]
    self.assertCountEqual(saved, [5, 10])
    # Its weights and momenta are finite (best_error is inf until the first
    # evaluation, by design).
    reader = tf.train.load_checkpoint(checkpoint)
    weights = [
        name for name, dtype in reader.get_variable_to_dtype_map().items()
        if dtype.is_floating and name.startswith(("model/", "optimizer/"))]
    self.assertNotEmpty(weights)
    for name in weights:
      self.assertTrue(np.all(np.isfinite(reader.get_tensor(name))), name)
    train = _metrics(model_dir, "train")
    self.assertEqual([r["step"] for r in train], [5, 10])
    self.assertTrue(all(np.isfinite(r["loss"]) for r in train))

  def test_cifar_flagfile_trains_with_overrides(self):
    model_dir = self._tempdir()
    result = _train(
        "--flagfile=" + os.path.join(_ROOT, "flags", "resnet20_cifar10.flags"),
        "--dataset=digits", "--holdout=100", "--train_steps=2",
        "--steps_per_loop=1", "--batch_size=16", f"--model_dir={model_dir}",
        "--precision=mixed_bfloat16")
    self.assertEqual(result.returncode, 0, result.stderr)
    # Warned exactly where TensorFlow keeps bfloat16 off oneDNN: CPUs
    # without AVX-512 or AVX-NE-CONVERT (the flags Linux reports).
    self.assertEqual(
        "--precision=mixed_bfloat16: this CPU has no bfloat16 support"
        in result.stderr, not cpu.has_onednn_bfloat16(),
        result.stderr)
    self.assertStartsWith(result.stdout, "Training ResNet-20 (A) on digits")
    self.assertEqual(_progress_steps(result.stdout), [1, 2])
    self.assertIn("Done at step 2: ", result.stdout)
    with open(os.path.join(model_dir, "config.json")) as f:
      config = json.load(f)
    self.assertEqual(config["model"]["depth"], 20)
    self.assertEqual(config["input"]["global_batch_size"], 16)
    self.assertEqual(config["schedule"]["boundaries"], [32000, 48000])
    self.assertEqual(config["train_steps"], 2)
    self.assertEqual(config["precision"], "mixed_bfloat16")


class RefusalTest(_BinaryTestCase):
  """What the binary refuses, and how it says so."""

  @parameterized.named_parameters(
      ("cifar_depth_not_6n_plus_2", ("--dataset=digits", "--depth=21"),
       "FATAL Flags parsing error: ",
       "CIFAR-10 networks have depth 6n+2"),
      ("imagenet_depth_not_in_table_1", ("--depth=42",),
       "FATAL Flags parsing error: ",
       "no ImageNet network has depth 42; valid depths are 18, 34, 50, 101, "
       "152"),
      ("missing_folder", ("--dataset=folder:/nonexistent",), "error: ",
       "/nonexistent/train does not exist"),
      ("batch_not_divisible_among_replicas",
       ("--dataset=digits", "--depth=8", "--num_cpu_devices=2",
        "--batch_size=7"), "error: ",
       "--batch_size=7 must be divisible by the number of replicas (2)"),
  )
  def test_refuses_before_writing_anything(self, args, prefix, message):
    model_dir = os.path.join(self._tempdir(), "run")
    result = _train(*args, f"--model_dir={model_dir}")
    self.assertEqual(result.returncode, 1)
    self.assertIn(message, _error_line(result.stderr, prefix), result.stderr)
    self.assertEmpty(_progress_steps(result.stdout))
    self.assertFalse(os.path.exists(model_dir))

  def test_evaluator_without_a_run_gives_up_retryably(self):
    # Exit 1 is permanent under TFJob's ExitCode restart policy and fails
    # the job; an evaluator that outwaits restarting trainers must not.
    empty = self._tempdir()
    result = _train("--mode=continuous_eval", f"--model_dir={empty}",
                    "--eval_timeout_secs=1")
    self.assertEqual(result.returncode, 138, result.stderr)
    self.assertIn(f"no new checkpoint in {empty} for 1 s: waited for the "
                  "run's config.json", _error_line(result.stderr, "error: "))
    self.assertEqual(os.listdir(empty), [])

  def test_imagenet_not_on_disk_says_where_to_put_it(self):
    data_dir = self._tempdir()
    model_dir = os.path.join(self._tempdir(), "run")
    result = _train("--depth=34", f"--data_dir={data_dir}",
                    f"--model_dir={model_dir}")
    self.assertEqual(result.returncode, 1)
    line = _error_line(result.stderr, "error: ")
    self.assertIn("ILSVRC2012_img_train.tar", line, result.stderr)
    self.assertIn(os.path.join(data_dir, "downloads", "manual"), line)
    self.assertFalse(os.path.exists(model_dir))

  def test_model_dir_under_a_file_is_not_writable(self):
    not_a_dir = os.path.join(self._tempdir(), "file")
    with open(not_a_dir, "w") as f:
      f.write("not a directory")
    model_dir = os.path.join(not_a_dir, "sub")
    result = _train(*_TINY, f"--model_dir={model_dir}")
    self.assertEqual(result.returncode, 1)
    self.assertIn(f"--model_dir={model_dir} is not writable",
                  _error_line(result.stderr, "error: "), result.stderr)

  def test_model_dir_of_another_network_is_refused_and_kept(self):
    model_dir = self._tempdir()
    first = _train(*_TINY, "--train_steps=5", f"--model_dir={model_dir}")
    self.assertEqual(first.returncode, 0, first.stderr)
    checkpoint = tf.train.latest_checkpoint(model_dir)
    with open(os.path.join(model_dir, "config.json")) as f:
      config = f.read()

    result = _train("--dataset=digits", "--depth=14", "--batch_size=32",
                    "--train_steps=10", f"--model_dir={model_dir}")
    self.assertEqual(result.returncode, 1)
    line = _error_line(result.stderr, "error: ")
    self.assertIn(f"{model_dir} holds a run of ResNet-8 (A)", line,
                  result.stderr)
    self.assertIn("builds ResNet-14 (A)", line)
    self.assertEmpty(_progress_steps(result.stdout))
    self.assertEqual(tf.train.latest_checkpoint(model_dir), checkpoint)
    with open(os.path.join(model_dir, "config.json")) as f:
      self.assertEqual(f.read(), config)

  def test_every_flagfile_is_the_run_its_name_says(self):
    self.assertNotEmpty(_FLAGFILES)
    result = subprocess.run(
        [sys.executable, "-c", _PARSE_FLAGFILES, *_FLAGFILES],
        capture_output=True,
        text=True,
        env=processes.env(),
        timeout=processes.TIMEOUT_SECS,
        check=False)
    self.assertEqual(result.returncode, 0, result.stderr)
    parsed = [json.loads(line) for line in result.stdout.splitlines()]
    self.assertEqual([p["path"] for p in parsed], _FLAGFILES)
    names = set()
    for values in parsed:
      name = os.path.basename(values["path"])
      with self.subTest(name):
        match = re.fullmatch(r"(resnet|plain)(\d+)([ac]?)_(imagenet|cifar10)"
                             r"\.flags", name)
        self.assertIsNotNone(match, "the name does not say the run")
        model, depth, letter, data = match.groups()
        names.add(f"{model}{depth}{letter}_{data}")
        imagenet = data == "imagenet"
        self.assertEqual(values["model"], model)
        self.assertEqual(values["depth"], int(depth))
        self.assertEqual(values["shortcut"],
                         None if model == "plain" else
                         letter.upper() or ("B" if imagenet else "A"))
        self.assertEqual(values["dataset"],
                         "imagenet2012" if imagenet else "cifar10")
        self.assertEqual(values["learning_rate"], 0.1)
        self.assertEqual(values["momentum"], 0.9)
        self.assertEqual(values["weight_decay"], 1e-4)
        # Decisions on a split of the training set; the test (ImageNet:
        # validation) set is only logged.
        self.assertTrue(values["monitor_test"])
        if imagenet:  # Section 3.4.
          self.assertEqual(values["batch_size"], 256)
          self.assertEqual(values["train_steps"], 600_000)
          self.assertEqual(values["schedule"], "plateau")
          self.assertIsNone(values["lr_boundaries"])
          self.assertEqual(values["holdout"], 50_000)
          self.assertEqual(values["plateau_patience"], 3)
          self.assertEqual(values["plateau_threshold"], 0.001)
          self.assertEqual(values["min_learning_rate"], 0.001)
        else:  # Section 4.2.
          self.assertEqual(values["holdout"], 5000)
          self.assertEqual(values["batch_size"], 128)
          self.assertEqual(values["train_steps"], 64_000)
          self.assertEqual(values["schedule"], "steps")
          self.assertEqual(values["lr_boundaries"], ["32000", "48000"])
        warmup = model == "resnet" and int(depth) >= 110 and not imagenet
        self.assertEqual(values["warmup_learning_rate"],
                         0.01 if warmup else None)
    # The warm-up runs exist, so the check above is not vacuous.
    self.assertContainsSubset({"resnet110_cifar10", "resnet1202_cifar10"},
                              names)


if __name__ == "__main__":
  absltest.main()
