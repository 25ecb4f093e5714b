"""The server and client binaries as a user runs them."""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from tf_resnet.exporting import serving_module
from tf_resnet.exporting import writer
from tf_resnet.model import resnet

_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", module, *args], env=_ENV,
                        capture_output=True, text=True, timeout=300,
                        check=False)


class ServingMainTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.base = tempfile.mkdtemp()
    net = resnet.cifar_resnet(8)
    writer.write(serving_module.for_run(
        net, "cifar", np.zeros([32, 32, 3]), [f"c{i}" for i in range(10)],
        top_k=2), cls.base)
    cls.image = os.path.join(tempfile.mkdtemp(), "x.png")
    with open(cls.image, "wb") as f:
      f.write(tf.io.encode_png(tf.zeros([32, 32, 3], tf.uint8)).numpy())

  def test_serve_classify_over_grpc_and_rest_then_drain_on_sigterm(self):
    port, rest = _free_port(), _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tf_resnet.serving.server", f"--port={port}",
         f"--rest_api_port={rest}", "--model_name=m",
         f"--model_base_path={self.base}"],
        env=_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
      line = server.stdout.readline()
      self.assertIn(f"Serving gRPC on 127.0.0.1:{port}", line)
      self.assertIn("{'m': {1: 30}}", line)
      self.assertIn(f"Serving REST on 127.0.0.1:{rest}",
                    server.stdout.readline())
      answers = []
      for extra, address in (([], port), (["--rest"], rest)):
        result = _run("tf_resnet.serving.client",
                      f"--server=127.0.0.1:{address}", "--model_name=m",
                      "--format=json", *extra, self.image)
        self.assertEqual(result.returncode, 0, result.stderr[-2000:])
        record = json.loads(result.stdout)
        self.assertEqual(record["image"], "x.png")
        self.assertLen(record["classes"], 2)
        answers.append(record["classes"])
      self.assertEqual(answers[0], answers[1])
      missing = _run("tf_resnet.serving.client",
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
    both = _run("tf_resnet.serving.server", f"--model_base_path={self.base}",
                "--model_config_file=x.config")
    self.assertNotEqual(both.returncode, 0)
    self.assertIn("exactly one of --model_base_path", both.stderr)
    missing = _run("tf_resnet.serving.server", "--model_base_path=/nonexistent")
    self.assertIn("base path /nonexistent does not exist", missing.stderr)
    batching = _run("tf_resnet.serving.server", f"--model_base_path={self.base}",
                    "--batching_parameters_file=b.config")
    self.assertIn("--batching_parameters_file needs --enable_batching",
                  batching.stderr)
    no_image = _run("tf_resnet.serving.client", "/nonexistent.jpg")
    self.assertIn("cannot read /nonexistent.jpg", no_image.stderr)


if __name__ == "__main__":
  absltest.main()
