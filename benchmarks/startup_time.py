r"""Start-up time of the binaries, with and without TensorFlow's preload of Keras.

Every binary pays for `import tensorflow` at every start, and TensorFlow 2.21
imports Keras 3 as part of it (`keras.src.optimizers`, and through Keras
matplotlib and scikit-learn when installed). The binaries skip that preload
(`startup.skip_keras_preload`, TF_USE_LEGACY_KERAS=1 when tf_keras is
absent); the peer, in the same run, is the same binary with the user's
TF_USE_LEGACY_KERAS=0, which keeps TensorFlow's own import. A start is
`python -m BINARY --helpshort`: the import, then absl's flag parsing, then
exit (status 1, absl's for --helpshort). Arms are interleaved start by start; the figures are the medians of
the wall time and of the CPU time the child process used (user + system,
from wait4), and `others_cores` is the CPU other processes kept busy
(neither this process nor its children) while the arm ran.

  python benchmarks/startup_time.py [--rounds=5]
      [--binaries=tf_resnet.train,tf_resnet.serving.server] [--format=json]
"""

import os
import statistics
import subprocess
import sys
import time

from absl import app
from absl import flags

import machine  # Beside this file. pylint: disable=g-bad-import-order

_ROUNDS = flags.DEFINE_integer("rounds", 5, "Starts per binary and arm.")
_BINARIES = flags.DEFINE_list(
    "binaries", ["tf_resnet.train", "tf_resnet.serving.server",
                 "tf_resnet.evaluate"], "Modules to start with --helpshort.")
_FORMAT = flags.DEFINE_enum("format", "table", ["table", "json"],
                            "Output format.")

# The arms: name, and what the user's environment says.
_ARMS = (("as shipped", {}),
         ("Keras preloaded", {"TF_USE_LEGACY_KERAS": "0"}))


def _busy_seconds() -> float:
  with open("/proc/stat") as f:
    ticks = [int(v) for v in f.readline().split()[1:9]]
  return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _start(module: str, extra_env: dict[str, str]) -> tuple[float, float,
                                                           float]:
  """One start: wall seconds, the child's CPU seconds, others' CPU seconds."""
  env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  env.update(extra_env)
  busy, began = _busy_seconds(), time.perf_counter()
  proc = subprocess.Popen([sys.executable, "-m", module, "--helpshort"],
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, env=env)
  with proc.stderr:
    stderr = proc.stderr.read().decode(errors="replace")  # Until it exits.
  _, status, usage = os.wait4(proc.pid, 0)
  wall = time.perf_counter() - began
  proc.returncode = os.waitstatus_to_exitcode(status)
  # absl's --helpshort prints the flags and exits with 1.
  if proc.returncode != 1 or "Traceback" in stderr:
    raise SystemExit(f"{module} --helpshort failed:\n{stderr[-2000:]}")
  cpu = usage.ru_utime + usage.ru_stime
  others = max(_busy_seconds() - busy - cpu, 0.0)
  return wall, cpu, others


def main(argv):
  del argv
  samples = {(b, arm): [] for b in _BINARIES.value for arm, _ in _ARMS}
  for _ in range(_ROUNDS.value):
    for binary in _BINARIES.value:
      for arm, extra_env in _ARMS:
        samples[(binary, arm)].append(_start(binary, extra_env))
  rows = []
  for binary in _BINARIES.value:
    medians = {}
    for arm, _ in _ARMS:
      walls, cpus, others = zip(*samples[(binary, arm)])
      medians[arm] = statistics.median(cpus)
      rows.append({
          "binary": binary, "arm": arm,
          "wall_s": round(statistics.median(walls), 2),
          "cpu_s": round(medians[arm], 2),
          "others_cores": round(sum(others) / sum(walls), 2)})
    rows[-2]["cpu_over_preloaded"] = round(
        medians["as shipped"] / medians["Keras preloaded"], 2)
  machine.print_rows(
      rows,
      lambda r: (f"{r['binary']:28} {r['arm']:16} wall {r['wall_s']:5.2f} s"
                 f"  CPU {r['cpu_s']:5.2f} s  others {r['others_cores']:.2f}"
                 " cores" + (f"  CPU / preloaded {r['cpu_over_preloaded']}"
                             if "cpu_over_preloaded" in r else "")),
      {"cpu": machine.cpu_model(), "rounds": _ROUNDS.value},
      _FORMAT.value == "json")


if __name__ == "__main__":
  app.run(main)
