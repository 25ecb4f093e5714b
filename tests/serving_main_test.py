"""The server and client binaries as a user runs them."""

import json
import os
import signal
import tempfile

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
    server = processes.start("tf_resnet.serving.server", f"--port={port}",
                             f"--rest_api_port={rest}", "--model_name=m",
                             f"--model_base_path={self.base}")
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
    no_image = processes.run("tf_resnet.serving.client", "/nonexistent.jpg")
    self.assertIn("cannot read /nonexistent.jpg", no_image.stderr)


if __name__ == "__main__":
  absltest.main()
