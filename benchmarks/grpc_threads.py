r"""How `--grpc_max_threads` sheds load: N clients against T threads, counted.

Starts the real server binary (`python -m tf_resnet.serving.server`) on a tiny
model with `--grpc_max_threads=T`, with and without `--enable_batching`, and
runs N closed-loop gRPC clients (each sends its next Classify as soon as the
last one answered) for `--seconds`, for N from T-2 to T+1. Prints, per (T,
batching, N), the calls answered and the calls refused with
RESOURCE_EXHAUSTED: the thread quota an operator should set for N clients is
the smallest T whose row refuses none.

  python benchmarks/grpc_threads.py [--threads=4,8] [--seconds=8]
      [--format=json]
"""

import os
import subprocess
import sys
import tempfile
import threading
import time

from absl import app
from absl import flags
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

import machine
from tf_resnet.serving import protocol
from tf_resnet.testing import exports
from tf_resnet.testing import processes

_THREADS = flags.DEFINE_list("threads", ["4", "8"],
                             "--grpc_max_threads values.")
_SECONDS = flags.DEFINE_float("seconds", 8.0, "Load time per row.")
_FORMAT = flags.DEFINE_enum("format", "table", ["table", "json"], "Output.")


def _start(base: str, threads: int, batching: bool):
  port = processes.free_port()
  args = [f"--port={port}", "--model_name=m", f"--model_base_path={base}",
          "--file_system_poll_wait_seconds=0", f"--grpc_max_threads={threads}"]
  if batching:
    params = os.path.join(tempfile.mkdtemp(), "batching.config")
    with open(params, "w") as f:
      f.write(f"max_batch_size {{ value: {2 * threads} }}\n"
              "batch_timeout_micros { value: 2000 }\n"
              "max_enqueued_batches { value: 100 }\n"
              "num_batch_threads { value: 1 }\n")
    args += ["--enable_batching", f"--batching_parameters_file={params}"]
  stderr = tempfile.TemporaryFile("w+")
  server = subprocess.Popen(
      processes.command("tf_resnet.serving.server", *args),
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), stdout=subprocess.PIPE,
      stderr=stderr, text=True)
  line = server.stdout.readline()
  if "Serving gRPC" not in line:
    server.kill()
    server.wait()
    stderr.seek(0)
    raise RuntimeError(f"the server did not start: {line}\n"
                       f"{stderr.read()[-3000:]}")
  return server, port


def _load(port: int, clients: int, seconds: float, request) -> dict:
  codes: dict[str, int] = {}
  lock = threading.Lock()
  start = threading.Barrier(clients)

  def client():
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      grpc.channel_ready_future(channel).result(timeout=60)
      start.wait()
      stop = time.monotonic() + seconds
      while time.monotonic() < stop:
        try:
          stub.Classify(request, timeout=60)
          code = "OK"
        except grpc.RpcError as e:
          code = e.code().name
        with lock:
          codes[code] = codes.get(code, 0) + 1

  threads = [threading.Thread(target=client) for _ in range(clients)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  total = sum(codes.values())
  return {"answered": codes.get("OK", 0),
          "resource_exhausted": codes.get("RESOURCE_EXHAUSTED", 0),
          "other_errors": total - codes.get("OK", 0)
                          - codes.get("RESOURCE_EXHAUSTED", 0),
          "refused_fraction": round(
              codes.get("RESOURCE_EXHAUSTED", 0) / max(total, 1), 4)}


def main(argv):
  del argv
  base = tempfile.mkdtemp()
  exports.tiny_export(base)
  image = tf.io.encode_png(np.full([32, 32, 3], 90, np.uint8)).numpy()
  request = protocol.classify_request([image], "m", "serving_default")
  rows = []
  for threads in (int(t) for t in _THREADS.value):
    for batching in (False, True):
      server, port = _start(base, threads, batching)
      try:
        for clients in range(max(1, threads - 2), threads + 2):
          rows.append({"grpc_max_threads": threads, "batching": batching,
                       "clients": clients,
                       **_load(port, clients, _SECONDS.value, request)})
      finally:
        server.terminate()
        server.wait(timeout=60)
  context = {"cpu": machine.cpu_model(), "load_average": os.getloadavg()}
  machine.print_rows(rows, lambda r: (
      f"threads {r['grpc_max_threads']:>2}, batching "
      f"{'on ' if r['batching'] else 'off'}, {r['clients']:>2} clients: "
      f"{r['answered']:>6} answered, {r['resource_exhausted']:>5} "
      f"RESOURCE_EXHAUSTED ({100 * r['refused_fraction']:.2f}%), "
      f"{r['other_errors']} other errors"), context, _FORMAT.value == "json")


if __name__ == "__main__":
  app.run(main)
