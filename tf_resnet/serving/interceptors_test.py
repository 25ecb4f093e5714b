"""gRPC limits: calls in flight are bounded and deadlines are honoured."""

import tempfile
import threading
import time
from unittest import mock

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tf_resnet.serving import deadline
from tf_resnet.serving import grpc_server
from tf_resnet.serving import manager
from tf_resnet.serving import model_config
from tf_resnet.serving import services
from tf_resnet.testing import exports
from tf_resnet.testing import images


class GrpcLimitsTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.base = tempfile.mkdtemp()
    exports.tiny_export(cls.base)
    cls.request = predict_pb2.PredictRequest()
    cls.request.model_spec.name = "m"
    cls.request.model_spec.signature_name = "predict"
    cls.request.inputs["image_bytes"].CopyFrom(
        tf.make_tensor_proto([images.png(0)]))

  def _server(self, **kwargs):
    config = model_config.single_model_config("m", self.base)
    server = grpc_server.Server(config, port=0, poll_seconds=0,
                                log_requests=False, **kwargs)
    self.addCleanup(server.stop, 1)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    self.addCleanup(channel.close)
    self.models = server.models
    self.interceptor = server._interceptor  # pylint: disable=protected-access
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)

  def _blocking_predict(self, release: threading.Event):
    """A handle_predict that records each call and waits for `release`."""
    calls = []
    predict = services.handle_predict

    def blocking(models, request):
      calls.append(deadline.remaining())
      release.wait(10)
      return predict(models, request)

    return blocking, calls

  def _wait_for(self, condition, timeout=10.0):
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
      time.sleep(0.02)
    self.assertTrue(condition())

  def test_calls_beyond_the_bound_get_resource_exhausted(self):
    stub = self._server(workers=2, max_concurrent_rpcs=2)
    release = threading.Event()
    blocking, calls = self._blocking_predict(release)
    with mock.patch.object(services, "handle_predict", blocking):
      running = [stub.Predict.future(self.request, timeout=30)
                 for _ in range(2)]
      self._wait_for(lambda: len(calls) == 2)
      began = time.monotonic()
      with self.assertRaises(grpc.RpcError) as caught:
        stub.Predict(self.request, timeout=5)
      self.assertEqual(caught.exception.code(),
                       grpc.StatusCode.RESOURCE_EXHAUSTED)
      # TF Serving gives --grpc_max_threads to gRPC C++'s thread quota
      # (tensorflow/serving 9d981c5c, model_servers/server.cc:412-414), whose
      # sync server answers with kServerThreadpoolExhausted (grpc/grpc
      # 97146d6d, src/cpp/server/server_cc.cc:93): not gRPC Python's
      # "Concurrent RPC limit exceeded!".
      self.assertEqual(caught.exception.details(),
                       "Server Threadpool Exhausted")
      self.assertLess(time.monotonic() - began, 1.0)  # Refused, not queued.
      release.set()
      for future in running:
        self.assertIn("probabilities", future.result().outputs)
    self.assertLen(calls, 2)
    # Once the calls in flight are done, calls are served again.
    self.assertIn("probabilities", stub.Predict(self.request,
                                                timeout=30).outputs)

  def test_a_cancelled_call_frees_its_place(self):
    stub = self._server(workers=1, max_concurrent_rpcs=1)
    release = threading.Event()
    blocking, calls = self._blocking_predict(release)
    with mock.patch.object(services, "handle_predict", blocking):
      running = stub.Predict.future(self.request, timeout=30)
      self._wait_for(lambda: len(calls) == 1)
      running.cancel()
      release.set()
      # The bound is free again once the cancelled call has ended.
      self._wait_for(lambda: self.interceptor.in_flight == 0)
      self.assertIn("probabilities", stub.Predict(self.request,
                                                  timeout=30).outputs)

  def test_the_model_does_not_run_once_the_deadline_has_passed(self):
    stub = self._server(workers=2)
    servable = self.models.model("m").resolve()
    run, runs = servable.run, []

    def counted(*args, **kwargs):
      runs.append(1)
      return run(*args, **kwargs)

    make_ndarray = services.tf.make_ndarray

    def slow_make_ndarray(proto):
      time.sleep(0.8)  # Decoding outlasts the client's deadline.
      return make_ndarray(proto)

    with mock.patch.object(servable, "run", counted):
      with mock.patch.object(services.tf, "make_ndarray", slow_make_ndarray):
        with self.assertRaises(grpc.RpcError) as caught:
          stub.Predict(self.request, timeout=0.3)
        self.assertEqual(caught.exception.code(),
                         grpc.StatusCode.DEADLINE_EXCEEDED)
        time.sleep(1.0)  # The handler reaches the model run, and stops.
      self.assertEmpty(runs)
      self.assertIn("probabilities", stub.Predict(self.request,
                                                  timeout=30).outputs)
      self.assertLen(runs, 1)

  def test_a_call_whose_deadline_passed_in_the_queue_is_not_run(self):
    stub = self._server(workers=1, max_concurrent_rpcs=4)
    release = threading.Event()
    blocking, calls = self._blocking_predict(release)
    with mock.patch.object(services, "handle_predict", blocking):
      first = stub.Predict.future(self.request, timeout=30)
      self._wait_for(lambda: len(calls) == 1)
      # The client's deadline is passed to the run.
      self.assertBetween(calls[0], 25.0, 30.0)
      with self.assertRaises(grpc.RpcError) as caught:
        stub.Predict(self.request, timeout=0.5)  # Waits for the thread.
      self.assertEqual(caught.exception.code(),
                       grpc.StatusCode.DEADLINE_EXCEEDED)
      release.set()
      first.result()
      time.sleep(0.5)  # The expired call reaches the thread, and stops.
    self.assertLen(calls, 1)


class DeadlineTest(tf.test.TestCase):

  def test_scopes_nest_and_check_fails_once_passed(self):
    self.assertIsNone(deadline.remaining())
    deadline.check()
    with deadline.scope(10.0):
      self.assertBetween(deadline.remaining(), 9.0, 10.0)
      with deadline.scope(100.0):  # The sooner deadline stays.
        self.assertLess(deadline.remaining(), 10.0)
      with deadline.scope(0.01):
        time.sleep(0.02)
        with self.assertRaises(manager.ServingError) as caught:
          deadline.check()
        self.assertEqual(caught.exception.code,
                         grpc.StatusCode.DEADLINE_EXCEEDED)
      deadline.check()
    with deadline.scope(9.2e18):  # gRPC's "no deadline".
      self.assertIsNone(deadline.remaining())


if __name__ == "__main__":
  tf.test.main()
