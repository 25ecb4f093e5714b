r"""Big REST JSON through the server: its RSS growth and time per MiB, against json.loads/json.dumps.

Saves a model that doubles a float32 [N, M] input, starts
`tf_resnet.serving.server` as a separate process and POSTs predict bodies to
it: the case of issue 26 (8.4M floats, `{"instances": [[0.5, ...], ...]}`,
32 MiB of JSON sent as a 44 KB gzip body) and random normal floats (short
and long decimals, sent plain). For each it reads the server's VmRSS and
peak (VmHWM, reset before each request through /proc/PID/clear_refs) and
its CPU time from /proc, and reports the growth and the time per MiB of
request and response JSON.

The peer, in the same run and on the same bodies, is what a server built on
the standard library does with them, in a fresh process: json.loads, a
float32 array, the same doubling, and json.dumps of `.tolist()`.

  python benchmarks/json_memory.py [--rows=8192] [--width=1024]
      [--random_rows=2048] [--repeats=2] [--format=table|json]
"""

import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

import machine  # pylint: disable=g-bad-import-order

_ROWS = flags.DEFINE_integer("rows", 8192, "Rows of the issue's body.")
_WIDTH = flags.DEFINE_integer("width", 1024, "Floats per row.")
_RANDOM_ROWS = flags.DEFINE_integer("random_rows", 2048,
                                    "Rows of random normal floats.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Requests per body; the "
                                "figures are the last one's (the first "
                                "also grows the allocator's arenas).")
_FORMAT = flags.DEFINE_enum("format", "table", ["table", "json"], "Output.")
_PEER = flags.DEFINE_string("peer", None, "Internal: run the json module "
                            "peer on this body file.")

_MIB = 1 << 20
_SERVER_LOG_LEVEL = "--request_log_level=warning"


def _memory_mib(pid: int) -> dict[str, float]:
  with open(f"/proc/{pid}/status") as f:
    return {k: int(v.split()[0]) / 1024 for k, v in
            (line.split(":", 1) for line in f) if k in ("VmRSS", "VmHWM")}


def _reset_peak(pid: int) -> None:
  with open(f"/proc/{pid}/clear_refs", "w") as f:
    f.write("5")


def _cpu_seconds(pid: int) -> float:
  with open(f"/proc/{pid}/stat") as f:
    fields = f.read().rsplit(")", 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _save_doubler(base: str) -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  class Doubler(tf.Module):

    @tf.function(input_signature=[
        tf.TensorSpec([None, None], tf.float32, name="x")])
    def serve(self, x):
      return {"y": 2.0 * x}

  module = Doubler()
  tf.saved_model.save(module, os.path.join(base, "1"),
                      signatures={"serving_default": module.serve})


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _post(port: int, body: bytes, gzipped: bool) -> tuple[int, int]:
  """(HTTP status, answer bytes) of one predict POST."""
  extra = "Content-Encoding: gzip\r\n" if gzipped else ""
  with socket.create_connection(("127.0.0.1", port), timeout=600) as sock:
    sock.sendall(f"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\n"
                 f"Content-Length: {len(body)}\r\n{extra}Connection: close"
                 "\r\n\r\n".encode() + body)
    reply = bytearray()
    while chunk := sock.recv(1 << 20):
      reply += chunk
  head, _, answer = bytes(reply).partition(b"\r\n\r\n")
  return int(head.split()[1]), len(answer)


def _bodies() -> list[tuple[str, bytes]]:
  row = "[" + ",".join(["0.5"] * _WIDTH.value) + "]"
  issue = ('{"instances": [' + ",".join([row] * _ROWS.value)
           + "]}").encode()
  rng = np.random.default_rng(0)
  values = rng.normal(0, 1, [_RANDOM_ROWS.value, _WIDTH.value]).astype(
      np.float32)
  random = json.dumps({"instances": values.tolist()}).encode()
  return [("issue 26: 0.5 x %d x %d" % (_ROWS.value, _WIDTH.value), issue),
          ("random normals x %d x %d" % (_RANDOM_ROWS.value, _WIDTH.value),
           random)]


def _run_peer(path: str) -> None:
  """The peer, in this (fresh) process: prints its figures as JSON."""
  with open(path, "rb") as f:
    body = f.read()
  pid = os.getpid()
  _reset_peak(pid)
  before, cpu = _memory_mib(pid)["VmRSS"], time.process_time()
  wall = time.perf_counter()
  doc = json.loads(body)
  inputs = np.asarray(doc["instances"], np.float32)
  del doc
  outputs = 2.0 * inputs
  del inputs
  answer = json.dumps({"predictions": outputs.tolist()}).encode()
  print(json.dumps({"growth_mib": _memory_mib(pid)["VmHWM"] - before,
                    "cpu_s": time.process_time() - cpu,
                    "wall_s": time.perf_counter() - wall,
                    "answer_mib": len(answer) / _MIB}))


def _peer(body: bytes) -> dict:
  with tempfile.NamedTemporaryFile(suffix=".json") as f:
    f.write(body)
    f.flush()
    result = subprocess.run(
        [sys.executable, os.path.abspath(__file__), f"--peer={f.name}"],
        capture_output=True, text=True, check=True)
  return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv):
  del argv
  if _PEER.value:
    _run_peer(_PEER.value)
    return
  base = tempfile.mkdtemp()
  _save_doubler(base)
  grpc_port, rest_port = _free_port(), _free_port()
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  server = subprocess.Popen(
      [sys.executable, "-m", "tf_resnet.serving.server", f"--port={grpc_port}",
       f"--rest_api_port={rest_port}", "--model_name=m",
       f"--model_base_path={base}", "--rest_api_timeout_in_ms=600000",
       _SERVER_LOG_LEVEL], env=env, stdout=subprocess.PIPE,
      stderr=subprocess.DEVNULL, text=True)
  rows = []
  try:
    while "Serving REST" not in server.stdout.readline():
      if server.poll() is not None:
        raise RuntimeError("the server did not start")
    load = machine.OthersLoad().__enter__()
    server_cpu, window = _cpu_seconds(server.pid), time.perf_counter()
    for name, body in _bodies():
      gzipped = name.startswith("issue")
      sent = gzip.compress(body, 9) if gzipped else body
      for _ in range(_REPEATS.value):
        _reset_peak(server.pid)
        before = _memory_mib(server.pid)["VmRSS"]
        cpu, wall = _cpu_seconds(server.pid), time.perf_counter()
        status, answer_bytes = _post(rest_port, sent, gzipped)
        wall = time.perf_counter() - wall
        cpu = _cpu_seconds(server.pid) - cpu
        growth = _memory_mib(server.pid)["VmHWM"] - before
      peer = _peer(body)
      json_mib = len(body) / _MIB + answer_bytes / _MIB
      rows.append({
          "body": name, "status": status, "request_mib": len(body) / _MIB,
          "sent_kib": len(sent) / 1024, "response_mib": answer_bytes / _MIB,
          "server_growth_mib": growth, "server_cpu_s": cpu,
          "server_wall_s": wall,
          "server_cpu_ms_per_mib": 1000 * cpu / json_mib,
          "server_growth_per_mib": growth / json_mib,
          "peer_growth_mib": peer["growth_mib"], "peer_cpu_s": peer["cpu_s"],
          "peer_wall_s": peer["wall_s"],
          "growth_ratio": growth / peer["growth_mib"],
          "cpu_ratio": cpu / peer["cpu_s"]})
    load.__exit__(None, None, None)
    server_cpu = _cpu_seconds(server.pid) - server_cpu
    window = time.perf_counter() - window
    # The server under test is another process too: its share comes off.
    others = (None if load.cores is None
              else max(load.cores - server_cpu / window, 0.0))
  finally:
    server.kill()
    server.wait()
  if _FORMAT.value == "json":
    print(json.dumps({"cpu": machine.cpu_model(), "others_cores": others,
                      "rows": rows}, indent=1))
    return
  print(f"CPU: {machine.cpu_model()}; other processes (not the server, "
        f"not the peers) kept {others if others is None else round(others, 1)}"
        " cores busy")
  print("| body | HTTP | request JSON | response JSON | server RSS growth | "
        "server CPU (wall) | CPU per MiB of JSON | json module peer: growth, "
        "CPU (wall) | ratio growth, CPU |")
  print("|---|---|---|---|---|---|---|---|---|")
  for r in rows:
    print(f"| {r['body']} | {r['status']} | {r['request_mib']:.1f} MiB "
          f"({r['sent_kib']:.0f} "
          f"KiB sent) | {r['response_mib']:.1f} MiB | "
          f"{r['server_growth_mib']:.0f} MiB | {r['server_cpu_s']:.1f} s "
          f"({r['server_wall_s']:.1f} s) | {r['server_cpu_ms_per_mib']:.0f} "
          f"ms | {r['peer_growth_mib']:.0f} MiB, {r['peer_cpu_s']:.1f} s "
          f"({r['peer_wall_s']:.1f} s) | "
          f"{r['growth_ratio']:.2f}, {r['cpu_ratio']:.2f} |")


if __name__ == "__main__":
  app.run(main)
