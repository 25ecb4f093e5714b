r"""Does the server's memory come back after a ResNet-50 version unloads? (TF Serving #1664)

Starts the real server binary (`python -m tf_resnet.serving.server`) with a
tiny model, then, `--cycles` times, adds a ResNet-50 (random weights) with
HandleReloadConfigRequest, sends it a few Classify requests, and drops it
again with a second reload. The server's RSS (/proc/PID/status VmRSS) is
read before the first load, after each load and after each unload, in three
arms of one run:

* `no trim`: the binary with memory.release_freed_memory disabled (glibc's
  defaults: what the server did before malloc_trim was added);
* `malloc_trim`: the binary as shipped (malloc_trim(0) after an unload);
* `MALLOC_ARENA_MAX=2 no trim`: fewer arenas instead of trimming;
* `malloc_trim oneDNN cache off` (only with --arms): whether what stays
  after a trim is oneDNN's primitive cache.

  python benchmarks/unload_memory.py [--cycles=2] [--arms=malloc_trim,...]
      [--format=json]

"After unload / before load" within 1.10 is issue 26's bar.
"""

import os
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

_CYCLES = flags.DEFINE_integer("cycles", 2, "Load/unload cycles per arm.")
_ARMS = flags.DEFINE_list("arms", ["no trim", "malloc_trim",
                                     "MALLOC_ARENA_MAX=2 no trim"],
                           "Which arms to run.")
_FORMAT = flags.DEFINE_enum("format", "table", ["table", "json"], "Output.")

# The server binary's own main, with the release after unload switched off.
_NO_TRIM = ("from tf_resnet.serving import memory\n"
            "memory.release_freed_memory = lambda: False\n"
            "from tf_resnet.serving import server\n"
            "server.run()\n")
ARMS = (("no trim", _NO_TRIM, {}),
        ("malloc_trim", None, {}),
        ("MALLOC_ARENA_MAX=2 no trim", _NO_TRIM, {"MALLOC_ARENA_MAX": "2"}),
        # Diagnosis, not a setting to ship: is what stays oneDNN's cache?
        ("malloc_trim oneDNN cache off", None,
         {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0"}))


def _rss_mib(pid: int) -> float:
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith("VmRSS:"):
        return int(line.split()[1]) / 1024
  raise RuntimeError(f"no VmRSS for process {pid}")


def _jpeg(seed: int) -> bytes:
  rng = np.random.RandomState(seed)
  image = rng.uniform(0, 255, [375, 500, 3]).astype(np.uint8)
  return tf.io.encode_jpeg(image, quality=90).numpy()


def _arm(code, env_extra, tiny: str, big: str, cycles: int) -> dict:
  port = processes.free_port()
  config_path = os.path.join(tempfile.mkdtemp(), "models.config")
  with open(config_path, "w") as f:
    f.write(str(model_config.models_config({"tiny": tiny})))
  args = [f"--port={port}", f"--model_config_file={config_path}",
          "--file_system_poll_wait_seconds=0",
          # Warm-up replays every signature's records (ten-crop and
          # multi-scale included): minutes per load on a loaded machine,
          # and the requests below run the model anyway.
          "--enable_model_warmup=false"]
  command = ([sys.executable, "-c", code, *args] if code else
             processes.command("tf_resnet.serving.server", *args))
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **env_extra)
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
    predictions.Classify(
        protocol.classify_request(image, "tiny", "serving_default"),
        timeout=120)
    time.sleep(1.0)
    row = {"before_mib": _rss_mib(server.pid), "loaded_mib": [],
           "unloaded_mib": []}
    for _ in range(cycles):
      for wanted, key in (({"tiny": tiny, "resnet50": big}, "loaded_mib"),
                          ({"tiny": tiny}, "unloaded_mib")):
        request = model_management_pb2.ReloadConfigRequest(
            config=model_config.models_config(wanted))
        status = models.HandleReloadConfigRequest(request, timeout=1800).status
        if status.error_code:
          raise RuntimeError(f"reload failed: {status}")
        if key == "loaded_mib":
          for _ in range(3):
            predictions.Classify(protocol.classify_request(
                image, "resnet50", "classify_single_view"), timeout=300)
        time.sleep(1.0)
        row[key].append(_rss_mib(server.pid))
    channel.close()
    row["unloaded_over_before"] = row["unloaded_mib"][-1] / row["before_mib"]
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
  rows = []
  for name, code, env_extra in ARMS:
    if name not in _ARMS.value:
      continue
    rows.append({"arm": name, **_arm(code, env_extra, tiny, big,
                                     _CYCLES.value)})
  context = {"cpu": machine.cpu_model(), "load_average": os.getloadavg()}

  def line(r):
    loaded = ", ".join(f"{m:.0f}" for m in r["loaded_mib"])
    unloaded = ", ".join(f"{m:.0f}" for m in r["unloaded_mib"])
    return (f"{r['arm']:<28} RSS before {r['before_mib']:.0f} MiB; loaded "
            f"{loaded}; unloaded {unloaded}; last unloaded / before "
            f"{r['unloaded_over_before']:.3f}")

  machine.print_rows(rows, line, context, _FORMAT.value == "json")

if __name__ == "__main__":
  app.run(main)
