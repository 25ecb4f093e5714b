"""The server and client binaries as a user runs them."""

import json
import os
import signal
import socket
import subprocess
import tempfile
import urllib.request
import zlib

from absl.testing import absltest
import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tf_resnet.serving import protocol
from tf_resnet.testing import exports
from tf_resnet.testing import images
from tf_resnet.testing import processes


def _until_serving(server: subprocess.Popen) -> list[str]:
  """The server's stdout lines up to "Serving gRPC on ..." (fails if it exits)."""
  lines = []
  while not lines or "Serving gRPC on" not in lines[-1]:
    line = server.stdout.readline()
    if not line:
      server.kill()
      raise AssertionError("the server exited:\n" + "".join(lines) +
                           server.stderr.read()[-3000:])
    lines.append(line)
  return lines


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
    # The transport flags as tensorflow_model_server takes them; the
    # environment an operator has (no TF_CPP_MIN_LOG_LEVEL).
    env = {k: v for k, v in processes.env().items()
           if k != "TF_CPP_MIN_LOG_LEVEL"}
    server = processes.start("tf_resnet.serving.server", f"--port={port}",
                             f"--rest_api_port={rest}", "--model_name=m",
                             f"--model_base_path={self.base}",
                             "--rest_api_num_threads=2",
                             "--rest_api_timeout_in_ms=20000",
                             "--grpc_max_threads=4",
                             f"--monitoring_config_file={monitoring}",
                             env=env)
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
    # No TensorFlow load-time chatter; on a CPU machine, "No GPU" in the
    # server's words rather than TensorFlow's cuInit error.
    self.assertNotRegex(err, r"(?m)^[IE]0000 |absl::InitializeLog|"
                        r"\] failed call to cuInit")
    if not tf.config.list_physical_devices("GPU"):
      self.assertRegex(err, r"No GPU( \(CUDA: .+\))?: "
                       "the models run on the CPU")

  def _classify(self, port: int, model: str):
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      return stub.Classify(protocol.classify_request(
          [images.solid_png(0)], model, "serving_default"), timeout=60)

  def test_tf_servings_docker_entrypoint_with_a_config_file_and_its_flags(self):
    # Fault 8: the Docker image's entrypoint always passes --model_name and
    # --model_base_path; users append --model_config_file and flags of the
    # real server. All of it used to abort start-up.
    port, rest = processes.free_ports(2)
    tmp = tempfile.mkdtemp()
    config = os.path.join(tmp, "models.config")
    with open(config, "w") as f:
      f.write('model_config_list { config { name: "from_config" '
              f'base_path: "{self.base}" model_platform: "tensorflow" }} }}')
    session_config = os.path.join(tmp, "session.config")
    with open(session_config, "w") as f:  # Read, then the threads replaced.
      f.write("allow_soft_placement: true\nintra_op_parallelism_threads: 7\n")
    batching = os.path.join(tmp, "batching.config")
    with open(batching, "w") as f:  # From TF Serving's batching guide.
      f.write("max_batch_size { value: 128 }\n"
              "batch_timeout_micros { value: 0 }\n"
              "max_enqueued_batches { value: 1000000 }\n"
              "num_batch_threads { value: 2 }\n"
              "enable_large_batch_splitting { value: true }\n"
              "max_execution_batch_size { value: 32 }\n"
              "allowed_batch_sizes: 8 allowed_batch_sizes: 32\n")
    server = processes.start(
        "tf_resnet.serving.server",
        # tf_serving_entrypoint.sh, MODEL_NAME=resnet, MODEL_BASE_PATH=/models
        f"--port={port}", f"--rest_api_port={rest}", "--model_name=resnet",
        "--model_base_path=/models/resnet",
        # "$@": what users add.
        f"--model_config_file={config}",
        "--model_config_file_poll_wait_seconds=60",
        "--enable_batching", f"--batching_parameters_file={batching}",
        "--tensorflow_intra_op_parallelism=1",
        "--tensorflow_inter_op_parallelism=1",
        f"--tensorflow_session_config_file={session_config}",
        "--grpc_channel_arguments=grpc.max_connection_age_ms=2000",
        "--enable_model_warmup=true", "--max_num_load_retries=5",
        "--load_retry_interval_micros=60000000", "--saved_model_tags=serve",
        "--xla_cpu_compilation_enabled=false", "--per_process_gpu_memory_"
        "fraction=0.5", "--an_argument_no_server_knows=1")
    try:
      lines = _until_serving(server)
      # As main.cc: named, the usage shown, and the server starts anyway.
      self.assertEqual(lines[0],
                       "unknown argument: --an_argument_no_server_knows=1\n")
      self.assertIn("{'from_config': {1: 30}}", lines[-1])
      response = self._classify(port, "from_config")
      self.assertEqual(response.model_spec.version.value, 1)
      with self.assertRaises(grpc.RpcError) as ctx:  # The config file won.
        self._classify(port, "resnet")
      self.assertEqual(ctx.exception.code(), grpc.StatusCode.NOT_FOUND)
    finally:
      server.send_signal(signal.SIGTERM)
      _, err = server.communicate(timeout=60)
    self.assertEqual(server.returncode, 0, err[-2000:])
    self.assertIn("--model_config_file is set: --model_name and "
                  "--model_base_path are ignored", err)
    self.assertIn("--per_process_gpu_memory_fraction is accepted for "
                  "compatibility with tensorflow_model_server and has no "
                  "effect here: this server runs on the CPU", err)
    self.assertEqual(err.count("has no effect here"), 2)

  def test_the_kubernetes_example_serves_and_answers_health_checks(self):
    # TF Serving's resnet_k8s.yaml runs the image's entrypoint with
    # MODEL_NAME=resnet; kubelet and grpc_health_probe then ask the health
    # service (fault 11: the real server's names were NOT_FOUND).
    models = tempfile.mkdtemp()
    os.symlink(self.base, os.path.join(models, "resnet"))
    port, rest = processes.free_ports(2)
    server = processes.start(
        "tf_resnet.serving.server", f"--port={port}", f"--rest_api_port={rest}",
        "--model_name=resnet", f"--model_base_path={models}/resnet",
        "--enable_grpc_healthcheck_service=true")
    try:
      _until_serving(server)
      self.assertLen(self._classify(port, "resnet").result.classifications, 1)
      with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "ModelService", "PredictionService",
                        "tensorflow.serving.ModelService",
                        "tensorflow.serving.PredictionService"):
          self.assertEqual(
              health.Check(health_pb2.HealthCheckRequest(service=service),
                           timeout=10).status,
              health_pb2.HealthCheckResponse.SERVING, service)
    finally:
      processes.stop(server)

  def test_version_prints_and_exits(self):
    result = processes.run("tf_resnet.serving.server", "--version")
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertRegex(result.stdout, r"^TensorFlow ModelServer: tf_resnet "
                     r"\S+ .*\nTensorFlow Library: 2\.")

  def test_bad_command_lines(self):
    neither = processes.run("tf_resnet.serving.server")
    self.assertNotEqual(neither.returncode, 0)
    self.assertIn("give --model_base_path (with --model_name) or "
                  "--model_config_file", neither.stderr)
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
    session_config = os.path.join(tempfile.mkdtemp(), "session.config")
    with open(session_config, "w") as f:
      f.write("no_such_field: 1\n")
    bad_session = processes.run(
        "tf_resnet.serving.server", f"--model_base_path={self.base}",
        f"--tensorflow_session_config_file={session_config}")
    self.assertNotEqual(bad_session.returncode, 0)
    self.assertIn(f"cannot read --tensorflow_session_config_file "
                  f"{session_config}: 1:1 : Message type "
                  f"\"tensorflow.ConfigProto\" has no field named "
                  f"\"no_such_field\"", bad_session.stderr)
    no_image = processes.run("tf_resnet.serving.client", "/nonexistent.jpg")
    self.assertIn("cannot read /nonexistent.jpg", no_image.stderr)

  def test_a_model_that_cannot_load_fails_the_start(self):
    # As tensorflow_model_server: the initial load is retried, then the start
    # fails with ServerCore's status on stdout and main.cc's -1.
    base = tempfile.mkdtemp()
    os.makedirs(os.path.join(base, "1"))
    with open(os.path.join(base, "1", "saved_model.pb"), "wb") as f:
      f.write(b"not a SavedModel")
    result = processes.run(
        "tf_resnet.serving.server", "--port=0", "--model_name=broken",
        f"--model_base_path={base}", "--max_num_load_retries=1",
        "--load_retry_interval_micros=0")
    self.assertEqual(result.returncode, 255, result.stderr[-2000:])
    self.assertIn(
        "Failed to start server. Error: UNKNOWN: 1 servable(s) did not "
        "become available: {{{name: broken version: 1} due to error: UNKNOWN: "
        "Failed to load version 1 of model broken: ", result.stdout)
    self.assertNotIn("Serving gRPC", result.stdout)
    self.assertIn("retry 1 of 1", result.stderr)


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
