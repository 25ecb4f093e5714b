"""The binaries' start-up: TensorFlow's C++ logs silenced unless asked for."""

import io
import os
import subprocess
import sys
import types
from unittest import mock

from absl.testing import absltest

from tf_resnet import startup
from tf_resnet.testing import processes


class QuietTest(absltest.TestCase):

  def test_silences_unless_the_user_asked(self):
    with mock.patch.dict(os.environ, clear=True):
      self.assertTrue(startup.quiet_tensorflow_logs(["train", "--depth=20"]))
      self.assertEqual(os.environ["TF_CPP_MIN_LOG_LEVEL"], "3")
    for argv in (["t", "--verbosity=1"], ["t", "-v", "1"], ["t", "-v=0"],
                 ["t", "--verbosity", "0"]):
      with mock.patch.dict(os.environ, clear=True):
        self.assertFalse(startup.quiet_tensorflow_logs(argv), argv)
        self.assertNotIn("TF_CPP_MIN_LOG_LEVEL", os.environ)
    with mock.patch.dict(os.environ, {"TF_CPP_MIN_LOG_LEVEL": "0"},
                         clear=True):
      self.assertFalse(startup.quiet_tensorflow_logs(["t"]))
      self.assertEqual(os.environ["TF_CPP_MIN_LOG_LEVEL"], "0")

  def test_onednn_on_x86_64_unless_the_user_chose(self):
    with mock.patch.dict(os.environ, clear=True):
      self.assertTrue(startup.use_onednn("x86_64"))
      self.assertEqual(os.environ["TF_ENABLE_ONEDNN_OPTS"], "1")
    with mock.patch.dict(os.environ, clear=True):
      self.assertFalse(startup.use_onednn("aarch64"))
      self.assertNotIn("TF_ENABLE_ONEDNN_OPTS", os.environ)
    with mock.patch.dict(os.environ, {"TF_ENABLE_ONEDNN_OPTS": "0"},
                         clear=True):
      self.assertFalse(startup.use_onednn("x86_64"))
      self.assertEqual(os.environ["TF_ENABLE_ONEDNN_OPTS"], "0")

  def test_binaries_started_from_here_make_their_own_onednn_choice(self):
    with mock.patch.dict(os.environ, {"A": "1"}, clear=True), \
         mock.patch.object(startup, "_SET_HERE", set()):
      startup.use_onednn("x86_64")
      self.assertEqual(startup.user_environ(B="2"), {"A": "1", "B": "2"})
    with mock.patch.dict(os.environ, {"TF_ENABLE_ONEDNN_OPTS": "1"},
                         clear=True), \
         mock.patch.object(startup, "_SET_HERE", set()):
      startup.use_onednn("x86_64")  # The user's choice: passed on.
      self.assertEqual(startup.user_environ(), {"TF_ENABLE_ONEDNN_OPTS": "1"})

  def test_keras_preload_skipped_unless_the_user_or_tf_keras_decides(self):
    with mock.patch.dict(os.environ, {"A": "1"}, clear=True), \
         mock.patch.object(startup, "_SET_HERE", set()):
      self.assertTrue(startup.skip_keras_preload())
      self.assertEqual(os.environ["TF_USE_LEGACY_KERAS"], "1")
      self.assertEqual(startup.user_environ(), {"A": "1"})
    with mock.patch.dict(os.environ, {"TF_USE_LEGACY_KERAS": "0"},
                         clear=True):
      self.assertFalse(startup.skip_keras_preload())
      self.assertEqual(os.environ["TF_USE_LEGACY_KERAS"], "0")
    with mock.patch.dict(os.environ, clear=True), \
         mock.patch("importlib.util.find_spec", return_value=object()):
      # With tf_keras installed the variable would switch tf.keras to it.
      self.assertFalse(startup.skip_keras_preload())
      self.assertNotIn("TF_USE_LEGACY_KERAS", os.environ)

  def test_prepare_does_all_three_then_imports_tensorflow_when_quiet(self):
    with mock.patch.dict(os.environ, clear=True), \
         mock.patch("platform.machine", return_value="x86_64"), \
         mock.patch.object(startup, "_SET_HERE", set()), \
         mock.patch.object(startup, "import_tensorflow") as import_tf:
      startup.prepare_tensorflow(["train"])
      self.assertEqual(os.environ["TF_CPP_MIN_LOG_LEVEL"], "3")
      self.assertEqual(os.environ["TF_ENABLE_ONEDNN_OPTS"], "1")
      self.assertEqual(os.environ["TF_USE_LEGACY_KERAS"], "1")
      import_tf.assert_called_once_with(3)
    with mock.patch.dict(os.environ, clear=True), \
         mock.patch.object(startup, "_SET_HERE", set()), \
         mock.patch.object(startup, "import_tensorflow") as import_tf:
      startup.prepare_tensorflow(["train", "--verbosity=0"])
      import_tf.assert_not_called()  # The user asked for TensorFlow's logs.


class InProcessesTest(absltest.TestCase):
  """What a binary's process loaded, as TensorFlow and Python report it."""

  def _loaded(self, *imports: str, **env: str) -> dict[str, bool]:
    # processes.env() leaves out the oneDNN setting conftest made for the
    # test process: what a user's shell would give.
    code = "".join(f"import {m}\n" for m in imports) + (
        "import sys\n"
        "from tensorflow.python.util import _pywrap_util_port\n"
        "print(_pywrap_util_port.IsMklEnabled(), 'keras' in sys.modules)\n")
    run = subprocess.run([sys.executable, "-c", code],
                         env=processes.env(**env), capture_output=True,
                         text=True, check=False,
                         timeout=processes.TIMEOUT_SECS)
    self.assertEqual(run.returncode, 0, run.stderr[-2000:])
    onednn, keras = run.stdout.strip().splitlines()[-1].split()
    return {"onednn": onednn == "True", "keras": keras == "True"}

  def test_the_server_keeps_tensorflows_onednn_choice_and_skips_keras(self):
    # A request of one image runs ~14-20x longer under oneDNN on AVX2 CPUs,
    # where TensorFlow keeps it off (benchmarks/onednn_inference.py); the
    # training binaries turn it on (test_onednn_on_x86_64_...).
    server = self._loaded("tf_resnet.serving.server")
    bare = self._loaded("tensorflow")
    self.assertEqual(server["onednn"], bare["onednn"])
    # TensorFlow itself imports Keras (tensorflow/__init__.py's preload of
    # keras.src.optimizers); the server skips it (skip_keras_preload).
    self.assertTrue(bare["keras"])
    self.assertFalse(server["keras"])

  def test_a_training_binary_skips_keras_unless_the_user_chose(self):
    self.assertFalse(self._loaded("tf_resnet.evaluate")["keras"])
    self.assertTrue(
        self._loaded("tf_resnet.evaluate", TF_USE_LEGACY_KERAS="0")["keras"])


# What TensorFlow 2.21 writes to standard error while its libraries load.
_LOAD_TIME = (
    "WARNING: All log messages before absl::InitializeLog() is called are "
    "written to STDERR\n"
    "I0000 00:00:1796222882.203520    7780 port.cc:153] oneDNN custom "
    "operations are on.\n"
    "W0000 00:00:1796222882.203831    7780 some.cc:31] a warning\n"
    "E0000 00:00:1796222882.203831    7780 cuda_platform.cc:52] failed call "
    "to cuInit\n"
    "F1202 14:47:09.123456    7780 fatal.cc:1] the end\n"
    "Traceback (most recent call last):\n"
    "ImportError: I0000 is not an absl line here\n")


class LoadTimeLinesTest(absltest.TestCase):

  def test_drops_absl_lines_below_the_level_and_keeps_the_rest(self):
    lines = lambda level: startup.drop_log_lines(_LOAD_TIME, level).split(
        "\n")[:-1]
    self.assertEqual(startup.drop_log_lines(_LOAD_TIME, 0), _LOAD_TIME)
    self.assertEqual([l[:5] for l in lines(1)],
                     ["W0000", "E0000", "F1202", "Trace", "Impor"])
    self.assertEqual([l[:5] for l in lines(2)],
                     ["E0000", "F1202", "Trace", "Impor"])
    self.assertEqual([l[:5] for l in lines(3)], ["F1202", "Trace", "Impor"])

  def test_import_writes_back_what_it_keeps_even_when_the_import_fails(self):
    def failing_import(name):
      self.assertEqual(name, "tensorflow")
      os.write(2, _LOAD_TIME.encode())  # As C++ code writes: file descriptor 2.
      raise ImportError("no TensorFlow")

    stderr = io.StringIO()
    with mock.patch.dict(sys.modules), \
         mock.patch.object(startup, "importlib",
                           types.SimpleNamespace(import_module=failing_import)), \
         mock.patch("sys.stderr", stderr):
      sys.modules.pop("tensorflow", None)
      with self.assertRaisesRegex(ImportError, "no TensorFlow"):
        startup.import_tensorflow(3)
    self.assertEqual(stderr.getvalue(),
                     startup.drop_log_lines(_LOAD_TIME, 3))
    self.assertIn("Traceback", stderr.getvalue())
    os.write(2, b"")  # File descriptor 2 is usable again.

  def test_the_cuinit_error_is_taken_out_and_handed_back(self):
    cuinit = ("E0000 00:00:1796238038.858682    8980 cuda_platform.cc:52] "
              "failed call to cuInit: INTERNAL: CUDA error: Failed call to "
              "cuInit: UNKNOWN ERROR (303)\n")
    other = "W0000 00:00:1796238038.9    8980 some.cc:31] a warning\n"
    self.assertEqual(
        startup.split_cuinit_error(other + cuinit + "plain text\n"),
        (other + "plain text\n", "INTERNAL: CUDA error: Failed call to "
         "cuInit: UNKNOWN ERROR (303)"))
    self.assertEqual(startup.split_cuinit_error(other), (other, None))

    def fake_tensorflow(gpus):
      def list_physical_devices(kind):
        self.assertEqual(kind, "GPU")
        os.write(2, (other + cuinit).encode())  # As TensorFlow's C++ code.
        return gpus
      config = types.SimpleNamespace(
          list_physical_devices=list_physical_devices)
      return types.SimpleNamespace(
          import_module=lambda name: types.SimpleNamespace(config=config))

    for gpus, printed, error in (
        ([], other, "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN "
         "ERROR (303)"),
        (["GPU:0"], other + cuinit, None)):  # A GPU: nothing is changed.
      stderr = io.StringIO()
      with mock.patch.object(startup, "importlib", fake_tensorflow(gpus)), \
           mock.patch("sys.stderr", stderr):
        self.assertEqual(startup.find_gpus(), (gpus, error))
      self.assertEqual(stderr.getvalue(), printed)

  def test_a_binary_prints_no_tensorflow_errors_on_a_cpu_machine(self):
    env = {k: v for k, v in processes.env().items()
           if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = processes.run("tf_resnet.summary", "--depth=18",
                          "--format=json", env=env)
    self.assertEqual(quiet.returncode, 0, quiet.stderr)
    self.assertNotRegex(quiet.stderr, r"(?m)^E0000|cuInit")
    self.assertNotRegex(quiet.stderr, r"(?m)^I0000|absl::InitializeLog")
    loud = processes.run("tf_resnet.summary", "--depth=18", "--format=json",
                         "--verbosity=0", env=env)
    self.assertEqual(loud.returncode, 0, loud.stderr)
    if "cuInit" not in loud.stderr:
      self.skipTest("this TensorFlow logs no cuInit error here: nothing to "
                    "silence")


if __name__ == "__main__":
  absltest.main()
