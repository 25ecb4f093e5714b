"""TensorFlow's ProfilerService through the serving port (TF Serving's server.cc)."""

import concurrent.futures
import glob
import os
import tempfile
import threading
import time

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tf_resnet.serving import grpc_server
from tf_resnet.serving import model_config
from tf_resnet.serving import profiler
from tf_resnet.testing import exports
from tf_resnet.testing import images


class _Backend(grpc.GenericRpcHandler):
  """A stand-in profiler server: echoes, fails or sleeps, per method."""

  def __init__(self):
    self.deadlines = []

  def service(self, handler_call_details):
    method = handler_call_details.method.rsplit("/", 1)[1]

    def answer(request: bytes, context):
      self.deadlines.append(context.time_remaining())
      if method == "Terminate":
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no such session")
      if method == "Monitor":
        time.sleep(5)
      return request[::-1]

    return grpc.unary_unary_rpc_method_handler(answer)


class ForwarderTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.backend = _Backend()
    backend = grpc.server(concurrent.futures.ThreadPoolExecutor(2),
                          handlers=[self.backend])
    port = backend.add_insecure_port("127.0.0.1:0")
    backend.start()
    self.addCleanup(backend.stop, None)
    self.started = []
    front = grpc.server(concurrent.futures.ThreadPoolExecutor(2))
    profiler.add_to_server(front, lambda: self.started.append(1) or port)
    front_port = front.add_insecure_port("127.0.0.1:0")
    front.start()
    self.addCleanup(front.stop, None)
    self.channel = grpc.insecure_channel(f"127.0.0.1:{front_port}")
    self.addCleanup(self.channel.close)

  def _call(self, method, request, timeout=10):
    return self.channel.unary_unary(f"/tensorflow.ProfilerService/{method}")(
        request, timeout=timeout)

  def test_bytes_statuses_and_deadlines_pass_through(self):
    self.assertEqual(self._call("Profile", b"\x08\x01abc"), b"cba\x01\x08")
    self.assertEqual(self._call("GetSnapshot", b""), b"")
    self.assertLen(self.started, 1)  # Started once, on the first call.
    with self.assertRaises(grpc.RpcError) as caught:
      self._call("Terminate", b"x")
    self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
    self.assertEqual(caught.exception.details(), "no such session")
    began = time.monotonic()
    with self.assertRaises(grpc.RpcError) as caught:
      self._call("Monitor", b"x", timeout=0.5)
    self.assertEqual(caught.exception.code(),
                     grpc.StatusCode.DEADLINE_EXCEEDED)
    self.assertLess(time.monotonic() - began, 3)
    # The client's deadline reached the backend.
    self.assertIsNotNone(self.backend.deadlines[-1])
    self.assertLess(self.backend.deadlines[-1], 0.6)
    with self.assertRaises(grpc.RpcError) as caught:
      self._call("NoSuchMethod", b"")
    self.assertEqual(caught.exception.code(), grpc.StatusCode.UNIMPLEMENTED)


class ServingPortTest(tf.test.TestCase):

  def test_a_trace_through_the_serving_port_is_not_empty(self):
    base = tempfile.mkdtemp()
    exports.tiny_export(base)
    server = grpc_server.Server(model_config.single_model_config("m", base),
                                port=0, poll_seconds=0, log_requests=False)
    self.addCleanup(server.stop, 1)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    self.addCleanup(channel.close)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "m"
    request.model_spec.signature_name = "predict"
    request.inputs["image_bytes"].CopyFrom(
        tf.make_tensor_proto([images.png(0)]))
    stop = threading.Event()

    def load():
      while not stop.is_set():
        stub.Predict(request, timeout=30)

    worker = threading.Thread(target=load)
    worker.start()
    try:
      logdir = tempfile.mkdtemp()
      # As TensorBoard's "Capture profile" and TF Serving's own test call it.
      tf.profiler.experimental.client.trace(
          f"grpc://localhost:{server.port}", logdir, duration_ms=500,
          num_tracing_attempts=3)
    finally:
      stop.set()
      worker.join()
    traces = glob.glob(os.path.join(logdir, "plugins", "profile", "*",
                                    "*.xplane.pb"))
    self.assertNotEmpty(traces)
    self.assertGreater(os.path.getsize(traces[0]), 1000)

  def test_off_as_enable_profiler_false(self):
    server = grpc_server.Server(model_config.single_model_config(
        "m", os.path.dirname(exports.tiny_export())), port=0, poll_seconds=0,
                                log_requests=False, profiler=False)
    self.addCleanup(server.stop, 1)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    self.addCleanup(channel.close)
    with self.assertRaises(grpc.RpcError) as caught:
      channel.unary_unary("/tensorflow.ProfilerService/Profile")(
          b"", timeout=10)
    self.assertEqual(caught.exception.code(), grpc.StatusCode.UNIMPLEMENTED)


if __name__ == "__main__":
  tf.test.main()
