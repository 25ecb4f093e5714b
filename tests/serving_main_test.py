"""The server and client binaries as a user runs them."""

import json
import os
import signal
import socket
import tempfile
import urllib.request
import zlib

from absl.testing import absltest

from tf_resnet.testing import exports
from tf_resnet.testing import images
from tf_resnet.testing import processes


class ServingMainTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.base = os.path.dirname(exports.tiny_export(
        labels=[f"c{i}" for i in range(10)], top_k=2))
    cls.image = images.write_file(os.path.join(tempfile.mkdtemp(), "x.png"),
                                  images.solid_png(0))

  def test_serve_classify_over_grpc_and_rest_then_drain_on_sigterm(self):
    port, rest = processes.free_ports(2)
    monitoring = os.path.join(tempfile.mkdtemp(), "monitoring.config")
    with open(monitoring, "w") as f:
      f.write('prometheus_config { enable: true path: "/metrics" }\n')
    # The transport flags as tensorflow_model_server takes them.
    server = processes.start("tf_resnet.serving.server", f"--port={port}",
                             f"--rest_api_port={rest}", "--model_name=m",
                             f"--model_base_path={self.base}",
                             "--rest_api_num_threads=2",
                             "--rest_api_timeout_in_ms=20000",
                             "--grpc_max_threads=4",
                             f"--monitoring_config_file={monitoring}")
    try:
      line = server.stdout.readline()
      self.assertIn(f"Serving gRPC on 127.0.0.1:{port}", line)
      self.assertIn("{'m': {1: 30}}", line)
      self.assertIn(f"Serving REST on 127.0.0.1:{rest}",
                    server.stdout.readline())
      answers = []
      for extra, address in (([], port), (["--rest"], rest)):
        result = processes.run("tf_resnet.serving.client",
                               f"--server=127.0.0.1:{address}",
                               "--model_name=m", "--format=json", *extra,
                               self.image)
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        record = json.loads(result.stdout)
        self.assertEqual(record["image"], "x.png")
        self.assertLen(record["classes"], 2)
        answers.append(record["classes"])
      self.assertEqual(answers[0], answers[1])
      with urllib.request.urlopen(f"http://127.0.0.1:{rest}/metrics",
                                  timeout=60) as reply:
        page = reply.read().decode()
      for api, method in (("grpc", "Classify"), ("rest", "classify")):
        self.assertIn(f'tf_resnet_serving_requests_total{{api="{api}",'
                      f'method="{method}",model="m",'
                      'signature="serving_default",status="OK",'
                      'version="1"} 1.0', page)
      missing = processes.run("tf_resnet.serving.client",
                              f"--server=127.0.0.1:{port}", "--model_name=nope",
                              self.image)
      self.assertNotEqual(missing.returncode, 0)
      self.assertIn("NOT_FOUND: Servable not found for request: Latest(nope)",
                    missing.stderr)
    finally:
      server.send_signal(signal.SIGTERM)
      out, err = server.communicate(timeout=60)
    self.assertEqual(server.returncode, 0, err[-2000:])
    self.assertIn("draining requests", out)
    self.assertIn("Stopped", out)
    # One structured line per request.
    self.assertIn("method=Classify model=m version=1 "
                  "signature=serving_default status=OK", err)

  def test_bad_command_lines(self):
    both = processes.run("tf_resnet.serving.server",
                         f"--model_base_path={self.base}",
                         "--model_config_file=x.config")
    self.assertNotEqual(both.returncode, 0)
    self.assertIn("exactly one of --model_base_path", both.stderr)
    missing = processes.run("tf_resnet.serving.server",
                            "--model_base_path=/nonexistent")
    self.assertIn("base path /nonexistent does not exist", missing.stderr)
    batching = processes.run("tf_resnet.serving.server",
                             f"--model_base_path={self.base}",
                             "--batching_parameters_file=b.config")
    self.assertIn("--batching_parameters_file needs --enable_batching",
                  batching.stderr)
    monitoring = processes.run(
        "tf_resnet.serving.server", f"--model_base_path={self.base}",
        "--monitoring_config_file=/nonexistent.config")
    self.assertIn("cannot read --monitoring_config_file "
                  "/nonexistent.config", monitoring.stderr)
    no_image = processes.run("tf_resnet.serving.client", "/nonexistent.jpg")
    self.assertIn("cannot read /nonexistent.jpg", no_image.stderr)


def _memory_mib(pid: int) -> dict[str, int]:
  """VmRSS and VmHWM (peak RSS) of a process, in MiB."""
  with open(f"/proc/{pid}/status") as f:
    return {k: int(v.split()[0]) // 1024 for k, v in
            (line.split(":", 1) for line in f)
            if k in ("VmRSS", "VmHWM")}


def _post(port: int, path: str, body: bytes, headers: str = "") -> bytes:
  """The status line and JSON answer of one raw HTTP/1.1 POST."""
  with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: "
                 f"{len(body)}\r\n{headers}Connection: close\r\n\r\n"
                 .encode() + body)
    reply = b""
    while chunk := sock.recv(1 << 16):
      reply += chunk
  return reply


class HostileBodiesTest(absltest.TestCase):
  """The server's memory under hostile REST bodies, measured as peak RSS."""

  def test_peak_memory_is_bounded_and_the_server_goes_on(self):
    base = os.path.dirname(exports.tiny_export())
    port, rest = processes.free_ports(2)
    server = processes.start("tf_resnet.serving.server", f"--port={port}",
                             f"--rest_api_port={rest}", "--model_name=m",
                             f"--model_base_path={base}",
                             "--request_log_level=warning")
    self.addCleanup(processes.stop, server)
    self.assertIn("Serving gRPC", server.stdout.readline())
    self.assertIn("Serving REST", server.stdout.readline())
    # 1 GiB of zeros as 1 MiB of gzip: refused past 100 MiB inflated.
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = b"".join([deflate.compress(b"0" * (1 << 20)) for _ in range(1024)]
                    + [deflate.flush()])
    # 32 MiB of JSON numbers for the uint8 image input (the signature then
    # refuses the shape), and 32 MiB of short strings.
    pixels = ", ".join(["[7, 1, 2, 3]"] * ((32 << 20) // 14))
    numbers = ('{"signature_name": "predict_images", "inputs": [[['
               + pixels + "]]]}").encode()
    strings = ('{"signature_name": "predict", "instances": ['
               + ",".join(['"ab"'] * ((32 << 20) // 5)) + "]}").encode()
    deflate = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    numbers_gzip = deflate.compress(numbers) + deflate.flush()
    gzipped = "Content-Encoding: gzip\r\n"
    cases = (("gzip bomb", bomb, gzipped, 413, 200),
             ("32 MiB of numbers", numbers, "", 400, 400),
             ("32 MiB of numbers, gzipped", numbers_gzip, gzipped, 400, 400),
             ("32 MiB of strings", strings, "", 400, 400))
    for name, body, headers, status, bound_mib in cases:
      with open(f"/proc/{server.pid}/clear_refs", "w") as f:
        f.write("5")  # Resets the peak (VmHWM) to the current RSS.
      before = _memory_mib(server.pid)["VmRSS"]
      reply = _post(rest, "/v1/models/m:predict", body, headers)
      growth = _memory_mib(server.pid)["VmHWM"] - before
      self.assertStartsWith(reply, f"HTTP/1.1 {status} ".encode(),
                            f"{name}: {reply[:300]!r}")
      self.assertLess(growth, bound_mib, f"{name}: peak RSS grew by "
                      f"{growth} MiB")
    url = f"http://127.0.0.1:{rest}/v1/models/m"
    with urllib.request.urlopen(url, timeout=60) as reply:
      self.assertEqual(reply.status, 200)


if __name__ == "__main__":
  absltest.main()
