"""TLS with client certificates, and batching through the real gRPC server."""

import os
import subprocess
import tempfile
import threading

from google.protobuf import text_format
import grpc
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tf_resnet.serving import grpc_server
from tf_resnet.serving import model_config
from tf_resnet.serving import options
from tf_resnet.serving import protocol
from tf_resnet.testing import exports
from tf_resnet.testing import images


def _base() -> str:
  """A model base path holding one tiny export."""
  return os.path.dirname(exports.tiny_export(top_k=2))


def _openssl(*args: str, cwd: str) -> None:
  subprocess.run(["openssl", *args], cwd=cwd, check=True,
                 capture_output=True)


def _certificates(directory: str) -> dict[str, bytes]:
  """A CA, a server certificate for localhost and a client certificate."""
  _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
           "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=test-ca",
           cwd=directory)
  with open(os.path.join(directory, "san.cnf"), "w") as f:
    f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
  for name in ("server", "client"):
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout",
             f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
             cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem",
             "-CAkey", "ca.key", "-CAcreateserial", "-days", "1", "-out",
             f"{name}.pem", "-extfile", "san.cnf", cwd=directory)
  out = {}
  for name in ("ca.pem", "server.key", "server.pem", "client.key",
               "client.pem"):
    with open(os.path.join(directory, name), "rb") as f:
      out[name] = f.read()
  return out


class TlsTest(tf.test.TestCase):

  def test_client_certificates_are_required(self):
    certs = _certificates(tempfile.mkdtemp())
    # The file a user writes for --ssl_config_file (PEM contents, escaped).
    text = text_format.MessageToString(options.SSLConfig(
        server_key=certs["server.key"].decode(),
        server_cert=certs["server.pem"].decode(),
        custom_ca=certs["ca.pem"].decode(), client_verify=True))
    config = options.parse_ssl(text)
    srv = grpc_server.Server(model_config.single_model_config("m", _base()),
                             port=0, poll_seconds=0, log_requests=False,
                             ssl_config=config)
    self.addCleanup(srv.stop, 1)
    request = protocol.classify_request([images.png(0)], "m", "serving_default")
    address = f"localhost:{srv.port}"
    with_cert = grpc.ssl_channel_credentials(
        root_certificates=certs["ca.pem"], private_key=certs["client.key"],
        certificate_chain=certs["client.pem"])
    with grpc.secure_channel(address, with_cert) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      response = stub.Classify(request, timeout=30)
      self.assertLen(response.result.classifications, 1)
    without = grpc.ssl_channel_credentials(root_certificates=certs["ca.pem"])
    with grpc.secure_channel(address, without) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      with self.assertRaises(grpc.RpcError) as ctx:
        stub.Classify(request, timeout=10)
      self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)
    with grpc.insecure_channel(address) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      with self.assertRaises(grpc.RpcError):
        stub.Classify(request, timeout=10)


class BatchedServerTest(tf.test.TestCase):

  def test_concurrent_classify_requests_are_merged(self):
    params = options.BatchingParameters(max_batch_size=8,
                                        batch_timeout_micros=300_000)
    srv = grpc_server.Server(model_config.single_model_config("m", _base()),
                             port=0, poll_seconds=0, log_requests=False,
                             batching=params)
    self.addCleanup(srv.stop, 1)
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
    self.addCleanup(channel.close)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    pngs = [images.png(i) for i in range(6)]
    single = [stub.Classify(protocol.classify_request([x], "m",
                                                      "serving_default"),
                            timeout=30) for x in pngs[:1]]
    servable = srv.models.model("m").resolve()
    batcher = servable.batch_queue("serving_default")
    before = (batcher.batches_run, batcher.tasks_run)
    responses = [None] * 6

    def call(i):
      responses[i] = stub.Classify(
          protocol.classify_request([pngs[i]], "m", "serving_default"),
          timeout=30)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
    batches = batcher.batches_run - before[0]
    self.assertEqual(batcher.tasks_run - before[1], 6)
    self.assertLess(batches, 6)  # Merged: fewer runs than requests.
    self.assertEqual(
        [c.label for c in responses[0].result.classifications[0].classes],
        [c.label for c in single[0].result.classifications[0].classes])
    too_big = protocol.classify_request(pngs * 2, "m", "serving_default")
    with self.assertRaises(grpc.RpcError) as ctx:
      stub.Classify(too_big, timeout=30)
    self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
    self.assertEqual(ctx.exception.details(),
                     "Task size 12 is larger than maximum input batch size 8")


if __name__ == "__main__":
  tf.test.main()
