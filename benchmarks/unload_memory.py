r"""Does the server's memory come back after a ResNet-50 version unloads? (TF Serving #1664)

Starts the real server binary (`python -m tf_resnet.serving.server`) with a
tiny model and reads its RSS (/proc/PID/status VmRSS) before any ResNet-50
has loaded ("cold"). With `--warmup` (the default) it then adds and drops
another ResNet-50 (a copy of the export under another name) and reads RSS
again ("warm"): what the process keeps from a first model of this kind and
reuses for the next. Then, `--cycles` times, it adds the ResNet-50 under test
with HandleReloadConfigRequest, sends it Classify requests (timed), and drops
it again with a second reload, reading RSS after each. Arms of one run:

* `no trim`: the binary with memory.release_freed_memory disabled (glibc's
  defaults: what the server did before malloc_trim was added);
* `malloc_trim`: the binary as shipped (malloc_trim(0) after an unload);
* `malloc_trim Eigen`: as shipped with TF_ENABLE_ONEDNN_OPTS=0, i.e. without
  oneDNN's CPU allocator, whose BFC pool keeps the largest tensors' memory
  (the weights) after they are freed;
* only with --arms: `malloc_trim Eigen function runner` (the same with
  --saved_model_runner=function: TF2 exports by tf.saved_model.load, the
  default until 2026-12-07), `jemalloc` (Debian's libjemalloc2 by
  LD_PRELOAD, freed pages purged at once), `MALLOC_ARENA_MAX=2 no trim`,
  and `malloc_trim oneDNN cache off` (ONEDNN_PRIMITIVE_CACHE_CAPACITY=0).

Rows in JSON also carry the RSS split by mapping (/proc/PID/smaps: the
[heap], anonymous mappings, file-backed pages) at each reading.

  python benchmarks/unload_memory.py [--cycles=3] [--nowarmup]
      [--arms=malloc_trim,...] [--format=json]

"Unloaded / before" within 1.10 is issue 26's bar; both baselines are
reported.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from tf_resnet import startup

startup.prepare_tensorflow()

# pylint: disable=g-import-not-at-top,g-bad-import-order
from absl import app
from absl import flags
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

import machine
from tf_resnet.exporting import serving_module
from tf_resnet.exporting import writer
from tf_resnet.model import resnet
from tf_resnet.serving import model_config
from tf_resnet.serving import protocol
from tf_resnet.testing import exports
from tf_resnet.testing import processes
# pylint: enable=g-import-not-at-top,g-bad-import-order

_CYCLES = flags.DEFINE_integer("cycles", 3, "Load/unload cycles per arm.")
_WARMUP = flags.DEFINE_bool(
    "warmup", True, "Load and unload another ResNet-50 before the cycles.")
_ARMS = flags.DEFINE_list("arms", ["no trim", "malloc_trim",
                                     "malloc_trim Eigen"],
                           "Which arms to run.")
_FORMAT = flags.DEFINE_enum("format", "table", ["table", "json"], "Output.")

# The server binary's own main, with the release after unload switched off.
_NO_TRIM = ("from tf_resnet.serving import memory\n"
            "memory.release_freed_memory = lambda: False\n"
            "from tf_resnet.serving import server\n"
            "server.run()\n")
_JEMALLOC = "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
# (name, code, environment, server flags)
ARMS = (("no trim", _NO_TRIM, {}, ()),
        ("malloc_trim", None, {}, ()),
        ("malloc_trim Eigen", None, {"TF_ENABLE_ONEDNN_OPTS": "0"}, ()),
        # TF2 exports loaded by tf.saved_model.load, the default until
        # 2026-12-07 (the Session is the default since).
        ("malloc_trim Eigen function runner", None,
         {"TF_ENABLE_ONEDNN_OPTS": "0"}, ("--saved_model_runner=function",)),
        # Loads and unloads in the calling thread, as before 2026-12-07's
        # load thread (glibc gives each thread an arena of its own).
        ("malloc_trim Eigen loads at nice 0", None,
         {"TF_ENABLE_ONEDNN_OPTS": "0"}, ("--model_load_niceness=0",)),
        # jemalloc returns freed pages by its own decay (10 s by default);
        # decay 0 purges at once, as malloc_trim does, so one reading fits.
        ("jemalloc", _NO_TRIM, {"LD_PRELOAD": _JEMALLOC,
                                "MALLOC_CONF": "dirty_decay_ms:0,"
                                               "muzzy_decay_ms:0"}, ()),
        ("MALLOC_ARENA_MAX=2 no trim", _NO_TRIM, {"MALLOC_ARENA_MAX": "2"},
         ()),
        # Diagnosis, not a setting to ship: is what stays oneDNN's cache?
        ("malloc_trim oneDNN cache off", None,
         {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0"}, ()))


def _rss_mib(pid: int) -> float:
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  raise RuntimeError(f"no VmRSS for process {pid}")


def _smaps_mib(pid: int) -> dict:
  """RSS by kind of mapping: the [heap], anonymous mmaps, file-backed pages."""
  kib = {"heap": 0, "anon": 0, "file": 0, "other": 0}
  kind = "other"
  with open(f"/proc/{pid}/smaps") as f:
    for line in f:
      fields = line.split()
      if not fields[0].endswith(":"):  # A mapping's header line.
        path = fields[5] if len(fields) > 5 else ""
        kind = ("heap" if path == "[heap]" else "anon" if not path else
                "other" if path.startswith("[") else "file")
      elif fields[0] == "Rss:":
        kib[kind] += int(fields[1])
  return {k: round(v / 1024, 1) for k, v in kib.items()}


def _jpeg(seed: int) -> bytes:
  rng = np.random.RandomState(seed)
  image = rng.uniform(0, 255, [375, 500, 3]).astype(np.uint8)
  return tf.io.encode_jpeg(image, quality=90).numpy()


def _arm(code, env_extra, extra_flags, tiny: str, big: str, warmup,
         cycles: int) -> dict:
  port = processes.free_port()
  config_path = os.path.join(tempfile.mkdtemp(), "models.config")
  with open(config_path, "w") as f:
    f.write(str(model_config.models_config({"tiny": tiny})))
  args = [f"--port={port}", f"--model_config_file={config_path}",
          "--file_system_poll_wait_seconds=0",
          # Warm-up replays every signature's records (ten-crop and
          # multi-scale included): minutes per load on a loaded machine,
          # and the requests below run the model anyway.
          "--enable_model_warmup=false", *extra_flags]
  command = ([sys.executable, "-c", code, *args] if code else
             processes.command("tf_resnet.serving.server", *args))
  env = startup.user_environ(TF_CPP_MIN_LOG_LEVEL="2", **env_extra)
  stderr = tempfile.TemporaryFile("w+")
  server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                            stderr=stderr, text=True)
  try:
    line = server.stdout.readline()
    if "Serving gRPC" not in line:
      stderr.seek(0)
      raise RuntimeError(f"the server did not start: {line}\n"
                         f"{stderr.read()[-3000:]}")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    image = [_jpeg(0)]

    def classify(name: str, signature: str) -> float:
      began = time.perf_counter()
      predictions.Classify(protocol.classify_request(image, name, signature),
                           timeout=300)
      return (time.perf_counter() - began) * 1000

    def reload(wanted: dict) -> None:
      request = model_management_pb2.ReloadConfigRequest(
          config=model_config.models_config(wanted))
      status = models.HandleReloadConfigRequest(request, timeout=1800).status
      if status.error_code:
        raise RuntimeError(f"reload failed: {status}")

    def settle_and_read(key: str) -> None:
      time.sleep(1.0)
      row[key].append(_rss_mib(server.pid))
      row["smaps_mib"][key].append(_smaps_mib(server.pid))

    classify("tiny", "serving_default")
    keys = ("before_mib", "warm_mib", "loaded_mib", "unloaded_mib")
    row = {k: [] for k in keys}
    row["smaps_mib"] = {k: [] for k in keys}
    row["classify_ms"] = []
    settle_and_read("before_mib")
    if warmup:
      reload({"tiny": tiny, "resnet50_warmup": warmup})
      classify("resnet50_warmup", "classify_single_view")
      reload({"tiny": tiny})
      settle_and_read("warm_mib")
    for _ in range(cycles):
      reload({"tiny": tiny, "resnet50": big})
      # The first request builds the kernels; the median of the next three
      # is the model's latency.
      times = [classify("resnet50", "classify_single_view") for _ in range(4)]
      row["classify_ms"].append(round(statistics.median(times[1:]), 1))
      settle_and_read("loaded_mib")
      reload({"tiny": tiny})
      settle_and_read("unloaded_mib")
    channel.close()
    row["before_mib"] = row["before_mib"][0]
    row["warm_mib"] = row["warm_mib"][0] if warmup else None
    row["unloaded_over_before"] = round(
        row["unloaded_mib"][-1] / row["before_mib"], 3)
    row["unloaded_over_warm"] = (round(
        row["unloaded_mib"][-1] / row["warm_mib"], 3) if warmup else None)
    return row
  finally:
    server.terminate()
    server.wait(timeout=60)


def main(argv):
  del argv
  root = tempfile.mkdtemp()
  tiny = os.path.join(root, "tiny")
  exports.tiny_export(tiny)
  big = os.path.join(root, "resnet50")
  net = resnet.resnet50()
  net(tf.random.normal([2, 224, 224, 3], stddev=50.0), is_training=True)
  writer.write(serving_module.for_run(
      net, "imagenet", np.full([224, 224, 3], 110.0),
      [str(i) for i in range(1000)]), big)
  del net
  warmup = None
  if _WARMUP.value:  # Another model of the same kind: a copy of the export.
    warmup = shutil.copytree(big, os.path.join(root, "resnet50_warmup"))
  unknown = set(_ARMS.value) - {name for name, _, _, _ in ARMS}
  if unknown:
    raise app.UsageError(f"`--arms` has unknown arms: {sorted(unknown)}")
  rows = []
  for name, code, env_extra, extra_flags in ARMS:
    if name not in _ARMS.value:
      continue
    if "LD_PRELOAD" in env_extra and not os.path.exists(
        env_extra["LD_PRELOAD"]):
      raise app.UsageError(f"arm {name!r} needs {env_extra['LD_PRELOAD']} "
                           "(Debian: apt-get install libjemalloc2)")
    rows.append({"arm": name, **_arm(code, env_extra, extra_flags, tiny, big,
                                     warmup, _CYCLES.value)})
  context = {"cpu": machine.cpu_model(), "load_average": os.getloadavg()}

  def line(r):
    loaded = ", ".join(f"{m:.0f}" for m in r["loaded_mib"])
    unloaded = ", ".join(f"{m:.0f}" for m in r["unloaded_mib"])
    warm = ("" if r["warm_mib"] is None else
            f", after a warm-up ResNet-50 {r['warm_mib']:.0f}")
    over_warm = ("" if r["warm_mib"] is None else
                 f", / warm {r['unloaded_over_warm']:.3f}")
    return (f"{r['arm']:<28} RSS before {r['before_mib']:.0f} MiB{warm}; "
            f"loaded {loaded}; unloaded {unloaded}; last unloaded / before "
            f"{r['unloaded_over_before']:.3f}{over_warm}; classify "
            f"{statistics.median(r['classify_ms']):.0f} ms")

  machine.print_rows(rows, line, context, _FORMAT.value == "json")


if __name__ == "__main__":
  app.run(main)
