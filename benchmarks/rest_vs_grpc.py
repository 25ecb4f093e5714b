r"""REST against gRPC throughput on a small model at 16 clients, in one run.

TF Serving #1517 reports a REST ceiling near 350 requests/s where gRPC goes
further. This starts the real server binary (`python -m
tf_resnet.serving.server`, both ports) on a CIFAR ResNet-8 export and, for
each of Predict (`predict`, one PNG as `image_bytes`) and Classify
(`serving_default`, one tf.Example holding the same PNG), loads it from
`--clients` closed-loop clients (each sends its next request when the last
one is answered) over gRPC (tensorflow-serving-api's PredictionServiceStub,
a channel per client) and over REST (`/v1/models/m:predict` and
`:classify`, a keep-alive HTTP/1.1 connection per client, http.client, as a
real client holds one). The clients run in their own process, so they do not
share the server's interpreter; settings alternate within each round, and
the table gives each setting's median over `--rounds`.

Printed per setting: requests/s, p50 and p99 latency, the server's and the
clients' CPU per request, and the cores other processes kept busy meanwhile
(the machines are shared); then REST / gRPC throughput for each method.

  python benchmarks/rest_vs_grpc.py [--clients=16] [--seconds=10]
      [--rounds=3] [--server_args=--rest_api_num_threads=16]
      [--format=table|json]
"""

import base64
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from absl import app
from absl import flags
import numpy as np

import machine  # pylint: disable=g-bad-import-order

_CLIENTS = flags.DEFINE_integer("clients", 16, "Concurrent clients.")
_SECONDS = flags.DEFINE_float("seconds", 10.0, "Load time per setting.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds; the figures are medians.")
_SERVER_ARGS = flags.DEFINE_list(
    "server_args", [], "Extra flags for the server, comma-separated.")
_SERVER_ENV = flags.DEFINE_list(
    "server_env", [], "Extra environment for the server, comma-separated "
    "K=V (e.g. TF_ENABLE_ONEDNN_OPTS=0).")
_FORMAT = flags.DEFINE_enum("format", "table", ["table", "json"], "Output.")
# Internal: the client process.
_CLIENT = flags.DEFINE_string("client", None, "Internal: run the clients of "
                              "this setting (`rest:predict`, ...).")
_PORT = flags.DEFINE_integer("port", 0, "Internal: the server's port.")
_IMAGE = flags.DEFINE_string("image", None, "Internal: the PNG to send.")
_SERVER_PID = flags.DEFINE_integer("server_pid", 0,
                                   "Internal: the server's process id.")

_MODEL = "m"
_SETTINGS = ("grpc:predict", "rest:predict", "grpc:classify", "rest:classify")


def _rest_body(method: str, image: bytes) -> bytes:
  data = {"b64": base64.b64encode(image).decode()}
  if method == "predict":
    doc = {"signature_name": "predict", "instances": [data]}
  else:
    doc = {"signature_name": "serving_default",
           "examples": [{"image/encoded": data}]}
  return json.dumps(doc).encode()


def _rest_caller(port: int, method: str, image: bytes):
  body = _rest_body(method, image)
  headers = {"Content-Type": "application/json"}
  path = f"/v1/models/{_MODEL}:{method}"
  connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

  def call():
    connection.request("POST", path, body, headers)
    reply = connection.getresponse()
    data = reply.read()
    if reply.status != 200:
      raise RuntimeError(f"HTTP {reply.status}: {data[:300]!r}")

  return call, connection.close


def _grpc_caller(port: int, method: str, image: bytes):
  # pylint: disable=g-import-not-at-top
  import grpc
  from tensorflow.core.framework import tensor_pb2
  from tensorflow.core.framework import types_pb2
  from tensorflow_serving.apis import predict_pb2
  from tensorflow_serving.apis import prediction_service_pb2_grpc
  from tf_resnet.serving import protocol
  # pylint: enable=g-import-not-at-top
  channel = grpc.insecure_channel(f"127.0.0.1:{port}")
  stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
  if method == "predict":
    request = predict_pb2.PredictRequest()
    request.model_spec.name = _MODEL
    request.model_spec.signature_name = "predict"
    request.inputs["image_bytes"].CopyFrom(tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING, string_val=[image]))
    request.inputs["image_bytes"].tensor_shape.dim.add().size = 1
    rpc = stub.Predict
  else:
    request = protocol.classify_request([image], _MODEL, "serving_default")
    rpc = stub.Classify

  def call():
    rpc(request, timeout=120)

  return call, channel.close


def _run_clients(setting: str, port: int, clients: int, seconds: float,
                 image: bytes, server_pid: int) -> dict:
  """The client process: `clients` closed loops for `seconds`.

  It also reads, over the same window, the server's CPU time and the cores
  that processes other than the server and these clients kept busy.
  """
  protocol_name, method = setting.split(":")
  make = _rest_caller if protocol_name == "rest" else _grpc_caller
  callers = [make(port, method, image) for _ in range(clients)]
  for call, _ in callers:
    call()  # Connects and warms up before the clock starts.
  latencies = [[] for _ in range(clients)]
  errors = []
  start = threading.Barrier(clients + 1)
  stop = [0.0]

  def loop(i):
    call = callers[i][0]
    start.wait()
    while time.perf_counter() < stop[0]:
      began = time.perf_counter()
      try:
        call()
      except Exception as e:  # pylint: disable=broad-except
        errors.append(str(e)[:300])
        continue
      latencies[i].append(time.perf_counter() - began)

  threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
  for t in threads:
    t.start()
  with machine.OthersLoad() as load:  # Less this process's own CPU.
    cpu = time.process_time()
    server_cpu = _cpu_seconds(server_pid)
    began = time.perf_counter()
    stop[0] = began + seconds
    start.wait()
    for t in threads:
      t.join()
    elapsed = time.perf_counter() - began
    cpu = time.process_time() - cpu
    server_cpu = _cpu_seconds(server_pid) - server_cpu
  for _, close in callers:
    close()
  ms = np.concatenate([np.asarray(l) for l in latencies]) * 1000
  others = (None if load.cores is None
            else max(load.cores - server_cpu / elapsed, 0.0))
  return {"requests": len(ms), "elapsed_s": elapsed, "client_cpu_s": cpu,
          "server_cpu_s": server_cpu, "others_cores": others,
          "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
          "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
          "errors": len(errors), "first_error": errors[0] if errors else None}


def _cpu_seconds(pid: int) -> float:
  with open(f"/proc/{pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_server(base: str, clients: int):
  # pylint: disable=g-import-not-at-top
  from tf_resnet.testing import processes
  # pylint: enable=g-import-not-at-top
  grpc_port, rest_port = processes.free_ports(2)
  # N closed-loop gRPC clients need N threads here (docs/serving.md); twice
  # that leaves no call refused.
  args = [f"--port={grpc_port}", f"--rest_api_port={rest_port}",
          f"--model_name={_MODEL}", f"--model_base_path={base}",
          "--file_system_poll_wait_seconds=0",
          f"--grpc_max_threads={2 * clients}", *_SERVER_ARGS.value]
  log = tempfile.TemporaryFile("w+")
  server = subprocess.Popen(
      processes.command("tf_resnet.serving.server", *args),
      env=processes.env(**dict(v.split("=", 1) for v in _SERVER_ENV.value)),
      stdout=subprocess.PIPE, stderr=log, text=True)
  while True:
    line = server.stdout.readline()
    if "Serving REST" in line:
      break
    if not line and server.poll() is not None:
      log.seek(0)
      raise RuntimeError(f"the server did not start:\n{log.read()[-3000:]}")
  # The per-request log lines go to `log`, never to a pipe nobody reads.
  threading.Thread(target=server.stdout.read, daemon=True).start()
  return server, grpc_port, rest_port, log


def _measure(setting: str, ports: dict, server_pid: int,
             image_path: str) -> dict:
  result = subprocess.run(
      [sys.executable, os.path.abspath(__file__), f"--client={setting}",
       f"--port={ports[setting.split(':')[0]]}",
       f"--clients={_CLIENTS.value}", f"--seconds={_SECONDS.value}",
       f"--image={image_path}", f"--server_pid={server_pid}"],
      capture_output=True, text=True, check=False,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  if result.returncode:
    raise RuntimeError(f"{setting} clients failed:\n{result.stderr[-3000:]}")
  row = json.loads(result.stdout.strip().splitlines()[-1])
  server_cpu, others = row["server_cpu_s"], row["others_cores"]
  count = max(row["requests"], 1)
  return {"setting": setting,
          "requests_per_sec": row["requests"] / row["elapsed_s"],
          "p50_ms": row["p50_ms"], "p99_ms": row["p99_ms"],
          "errors": row["errors"], "first_error": row["first_error"],
          "server_cpu_ms_per_request": 1000 * server_cpu / count,
          "client_cpu_ms_per_request": 1000 * row["client_cpu_s"] / count,
          "others_cores": others}


def _median(rows: list[dict], key: str):
  values = [r[key] for r in rows if r[key] is not None]
  return statistics.median(values) if values else None


def main(argv):
  del argv
  if _CLIENT.value:
    with open(_IMAGE.value, "rb") as f:
      image = f.read()
    print(json.dumps(_run_clients(_CLIENT.value, _PORT.value, _CLIENTS.value,
                                  _SECONDS.value, image, _SERVER_PID.value)))
    return
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from tf_resnet.testing import exports
  # pylint: enable=g-import-not-at-top
  base = tempfile.mkdtemp()
  exports.tiny_export(base)
  pixels = np.random.default_rng(0).integers(0, 256, [32, 32, 3], np.uint8)
  image_path = os.path.join(base, "image.png")
  with open(image_path, "wb") as f:
    f.write(tf.io.encode_png(pixels).numpy())
  server, grpc_port, rest_port, log = _start_server(base, _CLIENTS.value)
  rows = []
  try:
    ports = {"grpc": grpc_port, "rest": rest_port}
    for _ in range(_ROUNDS.value):
      for setting in _SETTINGS:
        rows.append(_measure(setting, ports, server.pid, image_path))
  finally:
    server.terminate()
    server.wait(timeout=60)
    log.close()
  table = []
  for setting in _SETTINGS:
    mine = [r for r in rows if r["setting"] == setting]
    table.append({"setting": setting, "rounds": len(mine),
                  "errors": sum(r["errors"] for r in mine),
                  "first_error": next((r["first_error"] for r in mine
                                       if r["first_error"]), None),
                  **{k: _median(mine, k) for k in (
                      "requests_per_sec", "p50_ms", "p99_ms",
                      "server_cpu_ms_per_request",
                      "client_cpu_ms_per_request", "others_cores")}})
  by = {r["setting"]: r for r in table}
  summary = {f"rest_over_grpc_{m}": round(
      by[f"rest:{m}"]["requests_per_sec"]
      / by[f"grpc:{m}"]["requests_per_sec"], 3)
             for m in ("predict", "classify")}
  context = {"cpu": machine.cpu_model(), "clients": _CLIENTS.value,
             "seconds": _SECONDS.value, "server_args": _SERVER_ARGS.value,
             "server_env": _SERVER_ENV.value}
  if _FORMAT.value == "json":
    for r in rows:
      print(json.dumps(r))
    for r in table:
      print(json.dumps(r))
    print(json.dumps({**summary, **context}))
    return
  print(f"CPU: {machine.cpu_model()}; {_CLIENTS.value} clients, "
        f"{_SECONDS.value:g} s per setting, medians of {_ROUNDS.value} rounds; "
        f"server flags: {' '.join(_SERVER_ARGS.value) or '(defaults)'}; "
        f"server environment: {' '.join(_SERVER_ENV.value) or '(as ours)'}")
  print("| setting | req/s | p50 | p99 | server CPU / req | clients' CPU / "
        "req | others' cores | errors |")
  print("|---|---|---|---|---|---|---|---|")
  for r in table:
    print(f"| {r['setting']} | {r['requests_per_sec']:.1f} | "
          f"{r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | "
          f"{r['server_cpu_ms_per_request']:.2f} ms | "
          f"{r['client_cpu_ms_per_request']:.2f} ms | "
          f"{r['others_cores']:.1f} | {r['errors']} |")
    if r["first_error"]:
      print(f"  first error: {r['first_error']}")
  print(json.dumps(summary))


if __name__ == "__main__":
  app.run(main)
