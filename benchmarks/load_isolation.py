r"""Does loading and unloading model B hurt model A's latency? (TF Serving #1866, #881)

Starts the server binary with a tiny model A, runs `--clients` closed-loop
gRPC clients on A's Classify, and measures A's latency in alternating
phases of one run: quiet (nothing else happens) and churn (a ResNet-50, B,
is added by HandleReloadConfigRequest, answers one Classify and is dropped
again, over and over). Prints A's p50/p99 in each and churn's p99 over
quiet's (issue 26's bar: within 1.5).

  python benchmarks/load_isolation.py [--phases=2] [--seconds=30]
      [--clients=2] [--format=json]
"""

import os
import subprocess
import tempfile
import threading
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

_PHASES = flags.DEFINE_integer("phases", 2, "Quiet/churn pairs.")
_SECONDS = flags.DEFINE_float("seconds", 30.0, "Seconds per phase (at least).")
_CLIENTS = flags.DEFINE_integer("clients", 2, "Clients of model A.")
_FORMAT = flags.DEFINE_enum("format", "table", ["table", "json"], "Output.")


def _export_resnet50(base: str) -> None:
  net = resnet.resnet50()
  net(tf.random.normal([2, 224, 224, 3], stddev=50.0), is_training=True)
  writer.write(serving_module.for_run(
      net, "imagenet", np.full([224, 224, 3], 110.0),
      [str(i) for i in range(1000)]), base)


def _churn(models, predictions, tiny, big, image, stop: threading.Event,
           cycles: list) -> None:
  while not stop.is_set():
    for wanted in ({"a": tiny, "b": big}, {"a": tiny}):
      status = models.HandleReloadConfigRequest(
          model_management_pb2.ReloadConfigRequest(
              config=model_config.models_config(wanted)),
          timeout=1800).status
      if status.error_code:
        raise RuntimeError(f"reload failed: {status}")
      if "b" in wanted:
        predictions.Classify(protocol.classify_request(
            image, "b", "classify_single_view"), timeout=300)
    cycles.append(1)


def main(argv):
  del argv
  root = tempfile.mkdtemp()
  tiny = os.path.join(root, "tiny")
  exports.tiny_export(tiny)
  big = os.path.join(root, "resnet50")
  _export_resnet50(big)
  port = processes.free_port()
  config_path = os.path.join(root, "models.config")
  with open(config_path, "w") as f:
    f.write(str(model_config.models_config({"a": tiny})))
  server = subprocess.Popen(
      processes.command("tf_resnet.serving.server", f"--port={port}",
                        f"--model_config_file={config_path}",
                        "--file_system_poll_wait_seconds=0",
                        "--enable_model_warmup=false"),
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), stdout=subprocess.PIPE,
      stderr=subprocess.DEVNULL, text=True)
  try:
    if "Serving gRPC" not in server.stdout.readline():
      raise RuntimeError("the server did not start")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    predictions = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    image_a = [tf.io.encode_png(np.full([32, 32, 3], 90, np.uint8)).numpy()]
    image_b = [tf.io.encode_jpeg(np.random.RandomState(0).uniform(
        0, 255, [375, 500, 3]).astype(np.uint8)).numpy()]
    request = protocol.classify_request(image_a, "a", "serving_default")
    predictions.Classify(request, timeout=120)
    rows = []
    for phase in range(2 * _PHASES.value):
      churn = phase % 2 == 1
      latencies, stop, cycles = [], threading.Event(), []

      def client():
        while not stop.is_set():
          began = time.perf_counter()
          predictions.Classify(request, timeout=120)
          latencies.append(time.perf_counter() - began)

      threads = [threading.Thread(target=client)
                 for _ in range(_CLIENTS.value)]
      if churn:
        threads.append(threading.Thread(target=_churn, args=(
            models, predictions, tiny, big, image_b, stop, cycles)))
      for t in threads:
        t.start()
      time.sleep(_SECONDS.value)
      stop.set()
      for t in threads:
        t.join()  # A churn phase ends with B unloaded.
      ms = np.array(latencies) * 1000
      rows.append({"phase": "churn" if churn else "quiet",
                   "requests": len(ms),
                   "p50_ms": round(float(np.percentile(ms, 50)), 1),
                   "p99_ms": round(float(np.percentile(ms, 99)), 1),
                   "b_load_unload_cycles": len(cycles)})
    channel.close()
  finally:
    server.terminate()
    server.wait(timeout=60)
  quiet = [r["p99_ms"] for r in rows if r["phase"] == "quiet"]
  churn = [r["p99_ms"] for r in rows if r["phase"] == "churn"]
  summary = {"churn_p99_over_quiet_p99": round(max(churn) / max(quiet), 2),
             "cpu": machine.cpu_model(), "load_average": os.getloadavg()}
  machine.print_rows(rows, lambda r: (
      f"{r['phase']:<5} {r['requests']:>6} requests of A, p50 "
      f"{r['p50_ms']} ms, p99 {r['p99_ms']} ms; B loaded and unloaded "
      f"{r['b_load_unload_cycles']} times"), summary, _FORMAT.value == "json")


if __name__ == "__main__":
  app.run(main)
