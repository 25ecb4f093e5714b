"""What a binary does before TensorFlow loads: quiet logs, oneDNN kernels, no Keras.

A binary calls `prepare_tensorflow()` as its first statement, before anything
imports TensorFlow. It does three things, each only when the user has not
chosen otherwise through TensorFlow's own environment variable.

Logs. On a machine without a GPU, TensorFlow 2.21 logs `E0000 ... failed call to
cuInit: ... CUDA error` at its first device query (in an absl binary, when
`app.run` starts: see Devices below), which a new user reads as a failure:
`quiet_tensorflow_logs()` silences it; `--verbosity`/`-v` on the command
line, or a TF_CPP_MIN_LOG_LEVEL the user set, keep TensorFlow's own logging.
Python errors are not affected: they still raise with their messages.
TF_CPP_MIN_LOG_LEVEL does not reach the lines TensorFlow's shared libraries
print while they load, before absl's logging is initialised (`WARNING: All
log messages before absl::InitializeLog() ...`, `I0000 ... oneDNN custom
operations are on`, `Could not find cuda drivers`, twice: two libraries):
`import_tensorflow(min_level)` imports TensorFlow with its standard error
captured and writes back everything except absl-format lines below the
level (and absl's notice about them).

oneDNN. TensorFlow 2.21's x86 build turns its oneDNN kernels on by default
only on CPUs with the newer neural-network instructions (AVX-512 VNNI/BF16,
AMX); elsewhere convolutions run on Eigen. On a 2-core AMD EPYC with AVX2
(2026-12-02) the CIFAR ResNet-20 training step ran at 132 images/s by
default and 245 with oneDNN (the 3x3-convolution peak 81 and 122 GFLOP/s);
PyTorch, whose CPU convolutions are oneDNN's everywhere, ran the same step at
224. `use_onednn()` sets TF_ENABLE_ONEDNN_OPTS=1 on x86-64 (on CPUs where it
is already TensorFlow's default this changes nothing); TF_ENABLE_ONEDNN_OPTS=0
keeps Eigen. The server does not call it: on the same AVX2 CPUs oneDNN runs a
batch of one image 14-20x longer than Eigen (a batch of 32 about as fast), and
a server answers single requests (benchmarks/onednn_inference.py,
docs/performance.md#onednn-and-the-server).

Devices. The server keeps TensorFlow's errors visible (level 2), so its
first device query printed `E0000 ... failed call to cuInit: ... CUDA error`
on every CPU-only machine; `find_gpus()` makes that query with standard
error captured and, when there is no GPU, hands the line back to be said as
"no GPU" instead. It has to come before absl's `app.run`: importing
TensorFlow imports `tensorflow.python.distribute.combinations`, which
registers an `app.call_after_init` hook that counts the GPUs.

Keras. `import tensorflow` (2.21) imports `keras.src.optimizers`, which
loads all of Keras 3 and, through it, matplotlib and scikit-learn when they
are installed (as they are for this project), so that Keras objects
register with the SavedModel loader: 2.5-3.5 s of the 7-8 s that importing
TensorFlow takes on these 2-core machines, paid by every binary at every
start (benchmarks/startup_time.py, docs/performance.md#start-up-time). No
binary here uses `tf.keras` or revives Keras objects (the Keras converter
imports Keras 3 by its own name, which is unaffected). `skip_keras_preload()`
sets TF_USE_LEGACY_KERAS=1 when the `tf_keras` package is not installed:
TensorFlow then looks for `tf_keras.src.optimizers` instead, finds nothing
and goes on, and `tf.keras` in such a process would say that tf_keras is
missing. A TF_USE_LEGACY_KERAS the user set, or an installed tf_keras,
keeps TensorFlow's own behaviour.

Nothing here imports TensorFlow except `import_tensorflow` and `find_gpus`.
"""

import contextlib
import importlib
import importlib.util
import os
import platform
import re
import sys
import tempfile
from typing import Callable, Iterator, Optional, Sequence

# absl's verbosity flag and its short form, as absl parses them.
_VERBOSITY = re.compile(r"^(--verbosity(=.*)?|-v(=?-?\d+)?)$")
# A line of absl's C++ log format: severity, date, time, thread, file:line.
_ABSL_LINE = re.compile(r"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] ")
_ABSL_NOTICE = ("WARNING: All log messages before absl::InitializeLog() is "
                "called are written to STDERR")
_SEVERITIES = "IWEF"  # TF_CPP_MIN_LOG_LEVEL 0, 1, 2, 3.
# What TensorFlow's CUDA platform logs (at E) without a usable CUDA driver.
_CUINIT_ERROR = "failed call to cuInit: "


def quiet_tensorflow_logs(argv: Optional[Sequence[str]] = None) -> bool:
  """Sets TF_CPP_MIN_LOG_LEVEL=3 unless the user asked for TensorFlow's logs.

  Args:
    argv: the command line (default sys.argv).

  Returns:
    Whether the logs were silenced.
  """
  argv = sys.argv if argv is None else argv
  if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
    return False
  if any(_VERBOSITY.match(arg) for arg in argv[1:]):
    return False
  os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
  return True


# The variables `use_onednn` and `skip_keras_preload` set in this process
# (not the user).
_SET_HERE: set[str] = set()


def use_onednn(machine: Optional[str] = None) -> bool:
  """Sets TF_ENABLE_ONEDNN_OPTS=1 on x86-64 unless the user set it.

  Args:
    machine: the processor architecture (default `platform.machine()`).

  Returns:
    Whether the variable was set.
  """
  machine = platform.machine() if machine is None else machine
  if "TF_ENABLE_ONEDNN_OPTS" in os.environ:
    return False
  if machine.lower() not in ("x86_64", "amd64"):
    return False
  os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
  _SET_HERE.add("TF_ENABLE_ONEDNN_OPTS")
  return True


def skip_keras_preload() -> bool:
  """Sets TF_USE_LEGACY_KERAS=1 unless the user set it or tf_keras is installed.

  Importing TensorFlow then skips its preload of Keras (see the module's
  doc). Must run before TensorFlow is imported.

  Returns:
    Whether the variable was set.
  """
  if "TF_USE_LEGACY_KERAS" in os.environ:
    return False
  if importlib.util.find_spec("tf_keras") is not None:
    return False
  os.environ["TF_USE_LEGACY_KERAS"] = "1"
  _SET_HERE.add("TF_USE_LEGACY_KERAS")
  return True


def user_environ(**extra: str) -> dict[str, str]:
  """This process's environment without the choices this module made.

  For another binary started from here (a benchmark's server): it makes its
  own choice, as when a user starts it, instead of inheriting this one's.
  """
  env = {k: v for k, v in os.environ.items() if k not in _SET_HERE}
  env.update(extra)
  return env


def drop_log_lines(text: str, min_level: int) -> str:
  """`text` without absl-format log lines below `min_level` (0-3, as
  TF_CPP_MIN_LOG_LEVEL) and without absl's pre-initialisation notice when
  anything is dropped; every other line is kept as it was."""
  if min_level <= 0:
    return text
  kept = []
  for line in text.splitlines(keepends=True):
    match = _ABSL_LINE.match(line)
    if line.rstrip("\n") == _ABSL_NOTICE or (
        match and _SEVERITIES.index(match.group(1)) < min_level):
      continue
    kept.append(line)
  return "".join(kept)


@contextlib.contextmanager
def _stderr_rewritten(rewrite: Callable[[str], str]) -> Iterator[None]:
  """Runs the block with standard error (file descriptor 2, where
  TensorFlow's C++ code writes) captured in a temporary file, then writes
  back `rewrite` of what it caught, also when the block raises."""
  sys.stderr.flush()
  try:
    saved = os.dup(2)
  except OSError:  # No standard error (closed): nothing to rewrite.
    saved = None
  if saved is None:
    yield
    return
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      sys.stderr.write(
          rewrite(captured.read().decode("utf-8", errors="replace")))
      sys.stderr.flush()


def import_tensorflow(min_level: int) -> None:
  """Imports TensorFlow, its load-time log lines below `min_level` dropped
  (`drop_log_lines`); a failing import's lines are all kept. Nothing happens
  if TensorFlow is already imported."""
  if "tensorflow" in sys.modules:
    return
  with _stderr_rewritten(lambda text: drop_log_lines(text, min_level)):
    importlib.import_module("tensorflow")


def split_cuinit_error(text: str) -> tuple[str, Optional[str]]:
  """`text` without TensorFlow's `failed call to cuInit` log line, and that
  line's message (None if there was none)."""
  kept, error = [], None
  for line in text.splitlines(keepends=True):
    match = _ABSL_LINE.match(line)
    message = line[match.end():] if match and match.group(1) == "E" else ""
    if message.startswith(_CUINIT_ERROR) and error is None:
      error = message[len(_CUINIT_ERROR):].strip()
    else:
      kept.append(line)
  return "".join(kept), error


def find_gpus() -> tuple[list, Optional[str]]:
  """TensorFlow's GPUs, looked for once (TensorFlow's first device query).

  On a machine without a CUDA driver that query logs `E0000 ...
  cuda_platform.cc:...] failed call to cuInit: ...` at error level, which
  an operator of a CPU-only server reads as a failure. When no GPU is found
  that line is not printed but returned, for the caller to say "no GPU" in
  its own words; everything else the query printed is written back, and
  with a GPU found nothing is changed.

  Returns:
    (TensorFlow's physical GPU devices, the cuInit error or None).
  """
  tf = importlib.import_module("tensorflow")
  found = {}

  def rewrite(text: str) -> str:
    if found.get("gpus"):
      return text
    text, found["error"] = split_cuinit_error(text)
    return text

  with _stderr_rewritten(rewrite):
    found["gpus"] = tf.config.list_physical_devices("GPU")
  return found["gpus"], found.get("error")


def prepare_tensorflow(argv: Optional[Sequence[str]] = None) -> None:
  """What every binary does before TensorFlow loads (see the module's doc):
  sets its environment and, when the logs are silenced, imports it with its
  load-time lines dropped."""
  quiet = quiet_tensorflow_logs(argv)
  use_onednn()
  skip_keras_preload()
  if quiet:
    import_tensorflow(int(os.environ["TF_CPP_MIN_LOG_LEVEL"]))
