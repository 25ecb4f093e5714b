r"""The TF-Serving-protocol server under load, against the same signature called in-process.

Exports a ResNet-50 (random weights; speed does not depend on them), starts
`tf_resnet.serving.server` as a separate process with and without
`--enable_batching`, and sends Classify requests of one real-sized JPEG
(500x375) to the fast single-view signature from 1, 8 and 32 concurrent
clients. Prints requests/s and p50/p99 latency next to the same signature
called in-process on batches of 1, 8 and 32 images, in one run.

  python benchmarks/serving.py [--seconds=15] [--format=json]
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

from tf_resnet import startup

# As the server does, so that both sides of the ratio run oneDNN's kernels.
startup.prepare_tensorflow()

# pylint: disable=g-import-not-at-top,g-bad-import-order
from absl import app
from absl import flags
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tf_resnet.exporting import serving_module
from tf_resnet.exporting import writer
from tf_resnet.model import resnet
from tf_resnet.serving import protocol
# pylint: enable=g-import-not-at-top,g-bad-import-order

_SECONDS = flags.DEFINE_float("seconds", 15.0, "Load time per setting.")
_CLIENTS = flags.DEFINE_list("clients", ["1", "8", "32"],
                             "Concurrent clients per setting.")
_FORMAT = flags.DEFINE_enum("format", "table", ["table", "json"], "Output.")
SIGNATURE = "classify_single_view"


def _jpeg(seed: int) -> bytes:
  rng = np.random.RandomState(seed)
  coarse = rng.uniform(0, 255, [17, 22, 3])
  image = tf.image.resize(coarse[None], [375, 500], "bicubic")[0].numpy()
  image = np.clip(image + rng.normal(0, 12, image.shape), 0, 255)
  return tf.io.encode_jpeg(image.astype(np.uint8), quality=90).numpy()


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _start_server(base: str, batching: bool, max_clients: int):
  port = _free_port()
  args = [sys.executable, "-m", "tf_resnet.serving.server", f"--port={port}",
          "--model_name=resnet", f"--model_base_path={base}",
          "--file_system_poll_wait_seconds=0", "--grpc_max_threads=64"]
  if batching:
    params = os.path.join(base, "..", "batching.config")
    with open(params, "w") as f:
      f.write(f"max_batch_size {{ value: {max_clients} }}\n"
              "batch_timeout_micros { value: 50000 }\n"
              "max_enqueued_batches { value: 100 }\n"
              "num_batch_threads { value: 1 }\n")
    args += ["--enable_batching", f"--batching_parameters_file={params}"]
  env = startup.user_environ(TF_CPP_MIN_LOG_LEVEL="2")
  stderr = tempfile.TemporaryFile("w+")
  server = subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                            stderr=stderr, text=True)
  # "Serving gRPC on ...; models: {'resnet': {1: 30}} (30 = AVAILABLE)".
  line = server.stdout.readline()
  if "Serving gRPC" not in line or ": 30}" not in line:
    server.kill()
    server.wait()
    stderr.seek(0)
    raise RuntimeError(f"the server did not start serving the model: "
                       f"{line.strip()}\n{stderr.read()[-3000:]}")
  return server, port


def _load(port: int, clients: int, seconds: float, images):
  latencies, failures = [], []
  lock = threading.Lock()
  stop = time.monotonic() + seconds

  def client(i):
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      request = protocol.classify_request([images[i % len(images)]],
                                          "resnet", SIGNATURE)
      stub.Classify(request, timeout=300)  # Warm the channel.
      while time.monotonic() < stop:
        began = time.perf_counter()
        try:
          stub.Classify(request, timeout=300)
          with lock:
            latencies.append(time.perf_counter() - began)
        except grpc.RpcError as e:
          with lock:
            failures.append(e.code().name)

  threads = [threading.Thread(target=client, args=(i,))
             for i in range(clients)]
  began = time.monotonic()
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  elapsed = time.monotonic() - began
  ms = np.array(latencies) * 1000
  return {"requests_per_sec": round(len(latencies) / elapsed, 2),
          "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
          "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
          "failures": len(failures)}


def _in_process(path: str, batch: int, seconds: float, images) -> float:
  signature = tf.saved_model.load(path).signatures[SIGNATURE]
  examples = protocol.classify_request(
      [images[i % len(images)] for i in range(batch)], "x", SIGNATURE)
  inputs = tf.constant([e.SerializeToString()
                        for e in examples.input.example_list.examples])
  signature(inputs=inputs)
  count, began = 0, time.perf_counter()
  while time.perf_counter() - began < seconds:
    signature(inputs=inputs)["scores"].numpy()
    count += batch
  return count / (time.perf_counter() - began)


def main(argv):
  del argv
  clients = [int(c) for c in _CLIENTS.value]
  root = tempfile.mkdtemp()
  base = os.path.join(root, "resnet")
  net = resnet.resnet50()
  net(tf.random.normal([2, 224, 224, 3], stddev=50.0), is_training=True)
  path = writer.write(serving_module.for_run(
      net, "imagenet", np.full([224, 224, 3], 110.0),
      [str(i) for i in range(1000)]), base)
  images = [_jpeg(i) for i in range(8)]
  rows = []
  for n in clients:
    rows.append({"setting": "in-process", "batch": n, "images_per_sec": round(
        _in_process(path, n, _SECONDS.value / 2, images), 2)})
  for batching in (False, True):
    server, port = _start_server(base, batching, max(clients))
    try:
      for n in clients:
        rows.append({"setting": "server, batching" if batching else "server",
                     "clients": n, **_load(port, n, _SECONDS.value, images)})
    finally:
      server.terminate()
      server.wait(timeout=60)
  in_process = {r["batch"]: r["images_per_sec"] for r in rows
                if r["setting"] == "in-process"}
  top = max(clients)
  batched = next(r for r in rows if r["setting"] == "server, batching"
                 and r["clients"] == top)
  summary = {"batched_server_over_in_process_at_%d" % top: round(
      batched["requests_per_sec"] / in_process[top], 3)}
  if _FORMAT.value == "json":
    for r in rows:
      print(json.dumps(r))
    print(json.dumps(summary))
    return
  for r in rows:
    if r["setting"] == "in-process":
      print(f"in-process, batch {r['batch']:>2}: {r['images_per_sec']} img/s")
    else:
      print(f"{r['setting']:<17} {r['clients']:>2} clients: "
            f"{r['requests_per_sec']} req/s, p50 {r['p50_ms']} ms, p99 "
            f"{r['p99_ms']} ms, {r['failures']} failures")
  print(json.dumps(summary))


if __name__ == "__main__":
  app.run(main)
