"""Model lifecycle as TF Serving's: swaps under batched load, rollback, retries,
reload validation, warm-up, version directories, TF1 SavedModels, health and
the Unix socket.

(Over 350 lines: each test class is one of TF Serving's lifecycle behaviours
with its own server and export fixtures; they share the helpers at the top.)
"""

import logging
import os
import re
import shutil
import tempfile
import threading
import time

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import regression_pb2

from tf_resnet.exporting import serving_module
from tf_resnet.exporting import writer
from tf_resnet.serving import grpc_server
from tf_resnet.serving import manager
from tf_resnet.serving import model_config
from tf_resnet.serving import model_service
from tf_resnet.serving import options
from tf_resnet.serving import protocol
from tf_resnet.serving import warmup
from tf_resnet.testing import exports
from tf_resnet.testing import images

State = get_model_status_pb2.ModelVersionStatus.State


def _tf1_half_plus_two(base: str, version_dir: str = "1") -> str:
  """A TF1-style SavedModel (SavedModelBuilder): y = 0.5 * x + 2.

  Signatures as an Estimator writes them: `serving_default` and `classify`
  (serialized tf.Examples with a float feature `x`, output `scores`),
  `regress_x_to_y` (output `outputs`) and `predict` (float tensor `x`).
  """
  path = os.path.join(base, version_dir)
  graph = tf.Graph()
  with graph.as_default():
    v1 = tf.compat.v1
    a = v1.Variable(0.5, name="a")
    b = v1.Variable(2.0, name="b")
    serialized = v1.placeholder(tf.string, [None], name="tf_example")
    x_feature = v1.io.parse_example(
        serialized, {"x": v1.io.FixedLenFeature([1], tf.float32)})["x"]
    y_feature = tf.add(a * x_feature, b, name="y_from_examples")
    x = v1.placeholder(tf.float32, [None], name="x")
    y = tf.add(a * x, b, name="y")
    classify = v1.saved_model.classification_signature_def(
        examples=serialized, classes=None, scores=y_feature)
    regress = v1.saved_model.regression_signature_def(serialized, y_feature)
    predict = v1.saved_model.predict_signature_def({"x": x}, {"y": y})
    with v1.Session(graph=graph) as sess:
      sess.run(v1.global_variables_initializer())
      builder = v1.saved_model.Builder(path)
      builder.add_meta_graph_and_variables(
          sess, ["serve"], signature_def_map={
              "serving_default": classify, "classify_x_to_y": classify,
              "regress_x_to_y": regress, "predict": predict})
      builder.save()
  return path


def _status(model: manager.ServedModel) -> dict[int, int]:
  return {v: s.state for v, s in model.status.items()}


def _wait(condition, timeout: float = 60.0, what: str = "condition"):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if condition():
      return
    time.sleep(0.05)
  raise AssertionError(f"timed out waiting for {what}")


class SwapUnderBatchedLoadTest(tf.test.TestCase):

  def test_no_request_hangs_or_fails_when_a_version_unloads(self):
    # Fault 1: with batching, an unloading version's queue was closed with
    # requests still in it, and their callers waited forever.
    base = tempfile.mkdtemp()
    exports.tiny_export(base, seed=1)
    params = options.BatchingParameters(max_batch_size=8,
                                        batch_timeout_micros=50_000,
                                        num_batch_threads=2)
    # Room for more calls than the 6 clients: a client's next call can
    # reach the server before its previous one is counted out, and the
    # in-flight limit (tested on its own) is not what this test is about.
    srv = grpc_server.Server(model_config.single_model_config("m", base), port=0,
                             poll_seconds=0.1, log_requests=False,
                             batching=params, max_concurrent_rpcs=64)
    self.addCleanup(srv.stop, 1)
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
    self.addCleanup(channel.close)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = protocol.classify_request([images.png(3)], "m",
                                        "serving_default")
    failures, versions, stop = [], [], threading.Event()

    def load():
      while not stop.is_set():
        try:
          # A hung request shows as DEADLINE_EXCEEDED, bounded.
          versions.append(stub.Classify(request, timeout=20)
                          .model_spec.version.value)
        except grpc.RpcError as e:
          failures.append(f"{e.code()}: {e.details()}")

    threads = [threading.Thread(target=load) for _ in range(6)]
    for t in threads:
      t.start()
    try:
      _wait(lambda: len(versions) > 6, what="first answers")
      exports.tiny_export(base, seed=2)
      _wait(lambda: versions and versions[-1] == 2, what="the swap")
      time.sleep(0.3)
    finally:
      stop.set()
      for t in threads:
        t.join(30)
    self.assertFalse(any(t.is_alive() for t in threads), "a request hung")
    self.assertEqual(failures, [])
    self.assertEqual(set(versions), {1, 2})
    self.assertEqual(_status(srv.models.model("m")),
                     {1: State.END, 2: State.AVAILABLE})


class AspiredVersionsTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.export = exports.tiny_export(seed=1)  # One version to copy around.

  def _base(self, *versions: str) -> str:
    base = tempfile.mkdtemp()
    for v in versions:
      shutil.copytree(self.export, os.path.join(base, v))
    return base

  def test_deleting_the_newest_version_rolls_back(self):
    # Fault 7: the previous version stayed END.
    base = self._base("1", "2")
    models = manager.ModelManager(model_config.single_model_config("m", base),
                                  poll_seconds=0)
    self.addCleanup(models.stop)
    model = models.model("m")
    self.assertEqual(model.resolve().version, 2)
    self.assertEqual(_status(model), {2: State.AVAILABLE})
    shutil.rmtree(os.path.join(base, "2"))
    models.poll_once()
    self.assertEqual(model.resolve().version, 1)
    self.assertEqual(_status(model), {1: State.AVAILABLE, 2: State.END})
    # And forward again when it comes back.
    shutil.copytree(self.export, os.path.join(base, "2"))
    models.poll_once()
    self.assertEqual(model.resolve().version, 2)
    self.assertEqual(_status(model), {1: State.END, 2: State.AVAILABLE})

  def test_a_failed_load_is_retried_and_served_once_complete(self):
    # Fault 7: a version whose files were incomplete was never retried.
    base = self._base("1")
    lifecycle = manager.LifecycleOptions(poll_seconds=0.1,
                                         load_retry_interval_seconds=0.3,
                                         max_num_load_retries=50)
    models = manager.ModelManager(model_config.single_model_config("m", base),
                                  lifecycle=lifecycle)
    self.addCleanup(models.stop)
    models.start()
    model = models.model("m")
    incomplete = os.path.join(base, "2")  # Its variables are not there yet.
    os.makedirs(incomplete)
    shutil.copy(os.path.join(self.export, "saved_model.pb"), incomplete)
    _wait(lambda: model.status.get(2) and model.status[2].state ==
          State.LOADING and models.model("m").next_retry(), what="a failure")
    self.assertEqual(model.resolve().version, 1)
    for name in os.listdir(self.export):  # The copy completes.
      source = os.path.join(self.export, name)
      if os.path.isdir(source):
        shutil.copytree(source, os.path.join(incomplete, name))
    _wait(lambda: model.status[2].state == State.AVAILABLE, what="retry")
    self.assertEqual(model.resolve().version, 2)
    self.assertEqual(model.status[1].state, State.END)

  def test_retries_give_up_after_max_num_load_retries(self):
    base = self._base("1")
    lifecycle = manager.LifecycleOptions(poll_seconds=0,
                                         load_retry_interval_seconds=0,
                                         max_num_load_retries=2)
    models = manager.ModelManager(model_config.single_model_config("m", base),
                                  lifecycle=lifecycle)
    self.addCleanup(models.stop)
    os.makedirs(os.path.join(base, "2"))
    with open(os.path.join(base, "2", "saved_model.pb"), "wb") as f:
      f.write(b"not a SavedModel")
    with self.assertLogs("tf_resnet.serving", logging.WARNING) as logs:
      for _ in range(6):
        models.poll_once()
    attempts = [r for r in logs.output if "Failed to load version 2" in r]
    self.assertLen(attempts, 3)  # The first attempt and two retries.
    status = models.model("m").status[2]
    self.assertEqual(status.state, State.END)
    self.assertIn("Failed to load version 2 of model m", status.error_message)
    self.assertEqual(models.model("m").resolve().version, 1)

  def test_zero_padded_version_directories_load_from_their_own_name(self):
    base = self._base("00000007")
    models = manager.ModelManager(model_config.single_model_config("m", base),
                                  poll_seconds=0)
    self.addCleanup(models.stop)
    servable = models.model("m").resolve(version=7)
    self.assertEqual(servable.path, os.path.join(base, "00000007"))
    self.assertEqual(servable.version, 7)

  def test_reloads_and_polls_never_load_a_version_twice(self):
    base = self._base("1")
    config = model_config.single_model_config("m", base)
    models = manager.ModelManager(config, poll_seconds=0)
    self.addCleanup(models.stop)
    shutil.copytree(self.export, os.path.join(base, "2"))
    with self.assertLogs("tf_resnet.serving", logging.INFO) as logs:
      threads = ([threading.Thread(target=models.poll_once)
                  for _ in range(3)] +
                 [threading.Thread(target=models.reload, args=(config,))
                  for _ in range(3)])
      for t in threads:
        t.start()
      for t in threads:
        t.join(120)
    loads = [r for r in logs.output if "version 2 is available" in r]
    self.assertLen(loads, 1)


class ReloadConfigTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.base = tempfile.mkdtemp()
    exports.tiny_export(cls.base, seed=1)
    cls.server = grpc_server.Server(
        model_config.single_model_config("m", cls.base), port=0, poll_seconds=0,
        log_requests=False)
    cls.channel = grpc.insecure_channel(f"127.0.0.1:{cls.server.port}")
    cls.models = model_service_pb2_grpc.ModelServiceStub(cls.channel)

  @classmethod
  def tearDownClass(cls):
    cls.channel.close()
    cls.server.stop(1)
    super().tearDownClass()

  def _reload(self, *configs):
    request = model_management_pb2.ReloadConfigRequest()
    request.config.model_config_list.SetInParent()
    for name, base, platform, labels in configs:
      c = request.config.model_config_list.config.add(
          name=name, base_path=base, model_platform=platform)
      c.version_labels.update(labels)
    return request

  def assertRefused(self, request, code, message):
    # Fault 6: errors came back as RPC success, only inside `status`.
    with self.assertRaises(grpc.RpcError) as ctx:
      self.models.HandleReloadConfigRequest(request, timeout=60)
    self.assertEqual(ctx.exception.code(), code)
    self.assertEqual(ctx.exception.details(), message)
    # Nothing changed: the model still serves.
    self.assertEqual(self.server.models.model("m").resolve().version, 1)

  def test_an_empty_request_is_refused_not_a_removal_of_every_model(self):
    self.assertRefused(
        model_management_pb2.ReloadConfigRequest(),
        grpc.StatusCode.INVALID_ARGUMENT,
        "ServerModelConfig type not supported by HandleReloadConfigRequest. "
        "Only ModelConfigList is currently supported")

  def test_invalid_configs_are_refused_with_tf_servings_messages(self):
    self.assertRefused(
        self._reload(("m", "relative/path", "tensorflow", {})),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Expected model m to have an absolute path or URI; got "
        "base_path()=relative/path")
    self.assertRefused(
        self._reload(("m", self.base, "", {})),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Illegal setting neither ModelServerConfig::model_type (deprecated) "
        "nor ModelServerConfig::model_platform, model name is m")
    self.assertRefused(
        self._reload(("m", self.base, "tensorflow", {}),
                     ("n", self.base, "tensorflow", {}),
                     ("n", self.base, "tensorflow", {})),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Illegal to list model n multiple times in config list")
    self.assertRefused(
        self._reload(("m", self.base, "tensorflow", {"canary": 9})),
        grpc.StatusCode.FAILED_PRECONDITION,
        "Request to assign label to version 9 of model m, which is not "
        "currently available for inference")

  def test_the_error_is_also_in_the_response_status(self):
    request = self._reload(("m", "relative", "tensorflow", {}))
    response = _reload_response(self.server, request)
    self.assertEqual(response.status.error_code,
                     grpc.StatusCode.INVALID_ARGUMENT.value[0])
    self.assertIn("absolute path", response.status.error_message)

  def test_a_valid_reload_with_a_label_on_an_available_version(self):
    response = self.models.HandleReloadConfigRequest(
        self._reload(("m", self.base, "tensorflow", {"stable": 1})),
        timeout=60)
    self.assertEqual(response.status.error_code, 0)
    self.assertEqual(
        self.server.models.model("m").resolve(label="stable").version, 1)


def _reload_response(server, request):
  """The ReloadConfigResponse the servicer builds, read in-process."""
  class _Context:

    def set_code(self, code):
      self.code = code

    def set_details(self, details):
      self.details = details

  return model_service.ModelService(server.models).HandleReloadConfigRequest(
      request, _Context())


class WarmupTest(tf.test.TestCase):

  def test_the_exporter_records_real_requests_and_the_server_replays_them(self):
    version = exports.tiny_export(seed=1)
    path = os.path.join(version, writer.WARMUP_FILE)
    self.assertEqual(path, warmup.warmup_path(version))
    logs = warmup.read(version)
    signatures = {(log.WhichOneof("log_type"),
                   getattr(log, log.WhichOneof("log_type"))
                   .request.model_spec.signature_name) for log in logs}
    loaded = tf.saved_model.load(version)
    self.assertEqual({s for _, s in signatures}, set(loaded.signatures))
    self.assertLen(logs, len(loaded.signatures) *
                   len(serving_module.WARMUP_BATCH_SIZES))
    base = os.path.dirname(version)
    with self.assertLogs("tf_resnet.serving", logging.INFO) as records:
      models = manager.ModelManager(model_config.single_model_config("m", base),
                                    poll_seconds=0)
    self.addCleanup(models.stop)
    # TF Serving's lines (saved_model_warmup_util.cc, at 9d981c5c: lines 97,
    # 240-242), which saved_model_warmup.md and resnet_warmup.py tell users
    # to look for; the records counted once each, whatever the iterations.
    text = "\n".join(records.output)
    self.assertIn("Starting to read warmup data for model at "
                  f"{path} with model-warmup-options \n", text + "\n")
    self.assertRegex(text, re.escape(
        f"Finished reading warmup data for model at {path}. Number of warmup "
        f"records read: {len(logs)}. Elapsed time (microseconds): ") +
                     r"[1-9]\d*\.(\n|$)")
    off = manager.ModelManager(
        model_config.single_model_config("m", base),
        lifecycle=manager.LifecycleOptions(poll_seconds=0,
                                           enable_model_warmup=False))
    self.addCleanup(off.stop)
    self.assertEqual(off.model("m").resolve().version, 1)

  def test_tf_servings_log_lines_without_a_file_and_with_iterations(self):
    base = tempfile.mkdtemp()
    version = _tf1_half_plus_two(base)
    path = warmup.warmup_path(version)
    with self.assertLogs("tf_resnet.serving", logging.INFO) as records:
      self.addCleanup(manager.ModelManager(
          model_config.single_model_config("m", base), poll_seconds=0).stop)
    # saved_model_warmup_util.cc:86 (at 9d981c5c).
    self.assertIn(f"No warmup data file found at {path}",
                  "\n".join(records.output))
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.signature_name = "predict"
    log.predict_log.request.inputs["x"].CopyFrom(
        tf.make_tensor_proto([1.0], shape=[1]))
    warmup.write(version, [log, log])
    with self.assertLogs("tf_resnet.serving", logging.INFO) as records:
      self.addCleanup(manager.ModelManager(
          model_config.single_model_config("m", base),
          lifecycle=manager.LifecycleOptions(
              poll_seconds=0, num_request_iterations_for_warmup=3)).stop)
    text = "\n".join(records.output)
    # ModelWarmupOptions' DebugString with num_request_iterations set
    # (server.cc:288-291 sets it from a positive flag).
    self.assertIn(f"Starting to read warmup data for model at {path} with "
                  "model-warmup-options num_request_iterations {\n  value: 3"
                  "\n}\n", text)
    self.assertIn("Number of warmup records read: 2. Elapsed time", text)

  def test_a_failing_warmup_request_fails_the_load(self):
    base = tempfile.mkdtemp()
    version = _tf1_half_plus_two(base)
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.model_spec.signature_name = "no_such_signature"
    warmup.write(version, [log])
    models = manager.ModelManager(
        model_config.single_model_config("m", base),
        lifecycle=manager.LifecycleOptions(poll_seconds=0,
                                           max_num_load_retries=0))
    self.addCleanup(models.stop)
    status = models.model("m").status[1]
    self.assertEqual(status.state, State.END)
    self.assertIn('Serving signature key "no_such_signature" not found',
                  status.error_message)


class ForeignSavedModelTest(tf.test.TestCase):
  """SavedModels this project did not write, as TF Serving serves them."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.base = tempfile.mkdtemp()
    _tf1_half_plus_two(cls.base, "00000123")
    cls.socket = os.path.join(tempfile.mkdtemp(), "grpc.sock")
    cls.server = grpc_server.Server(
        model_config.single_model_config("half", cls.base), port=0,
        poll_seconds=0, log_requests=False, socket_path=cls.socket,
        channel_arguments=[("grpc.so_reuseport", 0)])
    cls.channel = grpc.insecure_channel(f"unix:{cls.socket}")
    cls.stub = prediction_service_pb2_grpc.PredictionServiceStub(cls.channel)

  @classmethod
  def tearDownClass(cls):
    cls.channel.close()
    cls.server.stop(1)
    super().tearDownClass()

  def test_a_tf1_saved_model_runs_in_a_session(self):
    servable = self.server.models.model("half").resolve()
    self.assertEqual((servable.version, servable.loader), (123, "session"))

  def test_predict_over_the_unix_socket(self):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half"
    request.model_spec.signature_name = "predict"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(
        np.array([1.0, 4.0], np.float32)))
    response = self.stub.Predict(request, timeout=30)
    self.assertAllClose(response.outputs["y"].float_val, [2.5, 4.0])
    self.assertEqual(response.model_spec.version.value, 123)

  def test_classify_and_regress(self):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "half"
    for x in (2.0, 10.0):
      example = request.input.example_list.examples.add()
      example.features.feature["x"].float_list.value.append(x)
    response = self.stub.Classify(request, timeout=30)
    self.assertAllClose([c.classes[0].score for c in
                         response.result.classifications], [3.0, 7.0])
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "half"
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.CopyFrom(request.input)
    self.assertAllClose(
        [r.value for r in self.stub.Regress(regress, timeout=30)
         .result.regressions], [3.0, 7.0])

  def test_health_names_the_real_server_registers(self):
    # Fault 11: only "" and the PredictionService's full name were known.
    health = health_pb2_grpc.HealthStub(self.channel)
    for service in ("", "ModelService", "PredictionService",
                    "tensorflow.serving.ModelService",
                    "tensorflow.serving.PredictionService"):
      response = health.Check(health_pb2.HealthCheckRequest(service=service),
                              timeout=10)
      self.assertEqual(response.status,
                       health_pb2.HealthCheckResponse.SERVING, service)


if __name__ == "__main__":
  tf.test.main()
