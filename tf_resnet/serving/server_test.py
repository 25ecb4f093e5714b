"""A real server on 127.0.0.1, called through tensorflow-serving-api stubs."""

import os
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
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import regression_pb2

from tf_resnet.serving import grpc_server as server_lib
from tf_resnet.serving import manager
from tf_resnet.serving import model_config
from tf_resnet.serving import protocol as client
from tf_resnet.testing import exports
from tf_resnet.testing import images

LABELS = list(exports.DIGIT_LABELS)
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


class ServerTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.base = tempfile.mkdtemp()
    cls.v1 = exports.tiny_export(cls.base, seed=1)
    cls.server = server_lib.Server(
        model_config.single_model_config("digits", cls.base), port=0,
        poll_seconds=0.2, log_requests=False)
    cls.channel = grpc.insecure_channel(f"127.0.0.1:{cls.server.port}")
    cls.stub = prediction_service_pb2_grpc.PredictionServiceStub(cls.channel)
    cls.models = model_service_pb2_grpc.ModelServiceStub(cls.channel)
    cls.images = [images.png(i) for i in range(3)]

  @classmethod
  def tearDownClass(cls):
    cls.channel.close()
    cls.server.stop(grace=1)
    super().tearDownClass()

  def _classify(self, **spec):
    request = client.classify_request(self.images, "digits",
                                      "serving_default")
    for key, value in spec.items():
      if key == "version":
        request.model_spec.version.value = value
      else:
        setattr(request.model_spec, key, value)
    return self.stub.Classify(request, timeout=60)

  def assertRpcError(self, call, code, message):
    with self.assertRaises(grpc.RpcError) as ctx:
      call()
    self.assertEqual(ctx.exception.code(), code)
    self.assertEqual(ctx.exception.details(), message)

  def test_classify_matches_the_export_and_echoes_the_spec(self):
    response = self._classify()
    self.assertEqual(response.model_spec.name, "digits")
    self.assertEqual(response.model_spec.signature_name, "serving_default")
    self.assertEqual(response.model_spec.version.value, 1)
    loaded = tf.saved_model.load(self.v1)
    expected = loaded.signatures["predict"](
        image_bytes=tf.constant(self.images))
    for i, result in enumerate(response.result.classifications):
      self.assertLen(result.classes, 3)
      self.assertEqual([c.label for c in result.classes],
                       [l.decode() for l in expected["labels"][i].numpy()])
      self.assertAllClose([c.score for c in result.classes],
                          expected["top_k_scores"][i], atol=1e-6)

  def test_classify_with_context(self):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "digits"
    with_context = request.input.example_list_with_context
    # The image comes from the context; each example adds another feature.
    with_context.context.features.feature[
        "image/encoded"].bytes_list.value.append(self.images[0])
    for i in range(2):
      with_context.examples.add().features.feature[
          "id"].int64_list.value.append(i)
    response = self.stub.Classify(request, timeout=60)
    plain = self._classify().result.classifications[0]
    self.assertLen(response.result.classifications, 2)
    for result in response.result.classifications:
      self.assertEqual([c.label for c in result.classes],
                       [c.label for c in plain.classes])

  def test_predict_with_output_filter_uses_typed_fields(self):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.model_spec.signature_name = "predict"
    request.inputs["image_bytes"].CopyFrom(
        tf.make_tensor_proto(self.images[:2]))
    request.output_filter.append("probabilities")
    response = self.stub.Predict(request, timeout=60)
    self.assertEqual(list(response.outputs), ["probabilities"])
    probs = response.outputs["probabilities"]
    self.assertEqual([d.size for d in probs.tensor_shape.dim], [2, 10])
    self.assertEmpty(probs.tensor_content)
    self.assertLen(probs.float_val, 20)
    self.assertAllClose(np.reshape(probs.float_val, [2, 10]).sum(axis=1),
                        [1.0, 1.0], atol=1e-5)
    request.ClearField("output_filter")
    everything = self.stub.Predict(request, timeout=60)
    self.assertCountEqual(everything.outputs, ["probabilities", "classes",
                                               "top_k_classes",
                                               "top_k_scores", "labels"])
    self.assertLen(everything.outputs["classes"].int64_val, 2)
    self.assertLen(everything.outputs["labels"].string_val, 6)

  def test_metadata_is_the_signature_def_map(self):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "digits"
    request.metadata_field.append("signature_def")
    response = self.stub.GetModelMetadata(request, timeout=30)
    self.assertEqual(response.model_spec.version.value, 1)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    self.assertEqual(signatures.signature_def["serving_default"].method_name,
                     "tensorflow/serving/classify")
    self.assertIn("predict_images", signatures.signature_def)
    request.ClearField("metadata_field")
    self.assertRpcError(
        lambda: self.stub.GetModelMetadata(request, timeout=30),
        grpc.StatusCode.INVALID_ARGUMENT,
        "GetModelMetadataRequest must specify at least one metadata_field")
    request.metadata_field.append("labels")
    self.assertRpcError(
        lambda: self.stub.GetModelMetadata(request, timeout=30),
        grpc.StatusCode.INVALID_ARGUMENT,
        "Metadata field labels is not supported")

  def test_model_spec_errors(self):
    request = classification_pb2.ClassificationRequest()
    request.input.example_list.examples.add()
    self.assertRpcError(lambda: self.stub.Classify(request, timeout=30),
                        grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec")
    request.model_spec.signature_name = "serving_default"
    self.assertRpcError(lambda: self.stub.Classify(request, timeout=30),
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "ModelSpec has no name specified.")
    self.assertRpcError(lambda: self._classify(name="nope"),
                        grpc.StatusCode.NOT_FOUND,
                        "Servable not found for request: Latest(nope)")
    self.assertRpcError(lambda: self._classify(version=7),
                        grpc.StatusCode.NOT_FOUND,
                        "Servable not found for request: Specific(digits, 7)")
    self.assertRpcError(lambda: self._classify(version_label="stable"),
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "Unrecognized servable version label: stable")
    self.assertRpcError(lambda: self._classify(signature_name="nope"),
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "No signature was found with the name: nope")

  def test_request_errors(self):
    empty = classification_pb2.ClassificationRequest()
    empty.model_spec.name = "digits"
    self.assertRpcError(lambda: self.stub.Classify(empty, timeout=30),
                        grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")
    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "digits"
    predict.model_spec.signature_name = "nope"
    self.assertRpcError(lambda: self.stub.Predict(predict, timeout=30),
                        grpc.StatusCode.FAILED_PRECONDITION,
                        'Serving signature key "nope" not found.')
    predict.model_spec.signature_name = "predict"
    predict.inputs["images"].CopyFrom(tf.make_tensor_proto([b"x"]))
    self.assertRpcError(
        lambda: self.stub.Predict(predict, timeout=30),
        grpc.StatusCode.INVALID_ARGUMENT,
        # TensorFlow's saved_model::GetInputValues (cc/saved_model/util.cc),
        # which TF Serving's predict_util.cc:129 calls since 2.14.
        "Signature input alias: image_bytes(feed name: predict_image_bytes:0)"
        " not found in request and no default value provided. Inputs "
        "expected to be in the request {images}, or default input alias set: ")
    predict.inputs["image_bytes"].CopyFrom(
        tf.make_tensor_proto(self.images[:1]))
    with self.assertRaises(grpc.RpcError) as ctx:
      self.stub.Predict(predict, timeout=30)
    self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
    self.assertIn("Sent extra: {images}. Missing but required: {}.",
                  ctx.exception.details())
    del predict.inputs["images"]
    predict.output_filter.append("logits")
    self.assertRpcError(lambda: self.stub.Predict(predict, timeout=30),
                        grpc.StatusCode.INVALID_ARGUMENT,
                        # predict_util.cc:137-143 (at 9d981c5c).
                        "output tensor alias not found in signature: logits "
                        "Outputs expected to be in the set {classes,labels,"
                        "probabilities,top_k_classes,top_k_scores}.")
    # A corrupt image fails its request, and the server goes on serving.
    bad = client.classify_request([b"not an image"], "digits",
                                  "serving_default")
    with self.assertRaises(grpc.RpcError) as ctx:
      self.stub.Classify(bad, timeout=30)
    self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
    self.assertIn("neither a JPEG nor a PNG", ctx.exception.details())
    self.assertLen(self._classify().result.classifications, 3)

  def test_regress_and_multi_inference(self):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "digits"
    request.input.example_list.examples.add()
    self.assertRpcError(lambda: self.stub.Regress(request, timeout=30),
                        grpc.StatusCode.INVALID_ARGUMENT,
                        "Expected one output Tensor.")
    multi = inference_pb2.MultiInferenceRequest()
    for signature in ("serving_default", "classify_single_view"):
      task = multi.tasks.add()
      task.model_spec.name = "digits"
      task.model_spec.signature_name = signature
      task.method_name = "tensorflow/serving/classify"
    multi.input.CopyFrom(client.classify_request(
        self.images, "digits", "serving_default").input)
    response = self.stub.MultiInference(multi, timeout=60)
    self.assertLen(response.results, 2)
    for result in response.results:
      self.assertLen(result.classification_result.classifications, 3)
      self.assertEqual(result.model_spec.version.value, 1)

  def test_health(self):
    stub = health_pb2_grpc.HealthStub(self.channel)
    response = stub.Check(health_pb2.HealthCheckRequest(service=""),
                          timeout=10)
    self.assertEqual(response.status, health_pb2.HealthCheckResponse.SERVING)

  def test_status_of_unknown_versions(self):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "digits"
    request.model_spec.version.value = 99
    self.assertRpcError(lambda: self.models.GetModelStatus(request,
                                                           timeout=10),
                        grpc.StatusCode.NOT_FOUND,
                        "Could not find version 99 of model digits")
    request.model_spec.name = "nope"
    request.model_spec.ClearField("version")
    self.assertRpcError(lambda: self.models.GetModelStatus(request,
                                                           timeout=10),
                        grpc.StatusCode.NOT_FOUND,
                        "Could not find any versions of model nope")


class VersionSwapTest(tf.test.TestCase):

  def test_new_version_under_load_and_a_broken_one(self):
    base = tempfile.mkdtemp()
    exports.tiny_export(base, seed=1)
    # No load retries: a broken version is END at once (see lifecycle_test
    # for retries).
    srv = server_lib.Server(
        model_config.single_model_config("m", base), port=0, poll_seconds=0.1,
        log_requests=False,
        lifecycle=manager.LifecycleOptions(max_num_load_retries=0))
    self.addCleanup(srv.stop, 1)
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
    self.addCleanup(channel.close)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    status = model_service_pb2_grpc.ModelServiceStub(channel)
    request = client.classify_request([images.png(5)], "m", "serving_default")
    failures, versions, stop = [], [], threading.Event()

    def load():
      while not stop.is_set():
        try:
          versions.append(stub.Classify(request,
                                        timeout=60).model_spec.version.value)
        except grpc.RpcError as e:
          failures.append(e)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
      t.start()
    time.sleep(1.0)
    exports.tiny_export(base, seed=2)  # Written atomically while requests run.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not versions or versions[-1] != 2):
      time.sleep(0.1)
    time.sleep(0.5)
    stop.set()
    for t in threads:
      t.join()
    self.assertEmpty(failures)
    self.assertIn(1, versions)
    self.assertEqual(versions[-1], 2)
    request_status = get_model_status_pb2.GetModelStatusRequest()
    request_status.model_spec.name = "m"
    states = {s.version: s.state for s in status.GetModelStatus(
        request_status, timeout=10).model_version_status}
    self.assertEqual(states, {2: AVAILABLE, 1: END})

    # A version that cannot load is reported as END with its error, and the
    # serving version stays.
    broken = os.path.join(base, "3")
    os.makedirs(broken)
    with open(os.path.join(broken, "saved_model.pb"), "wb") as f:
      f.write(b"this is not a SavedModel")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
      response = status.GetModelStatus(request_status, timeout=10)
      if response.model_version_status[0].version == 3:
        break
      time.sleep(0.1)
    newest = response.model_version_status[0]
    self.assertEqual((newest.version, newest.state), (3, END))
    self.assertNotEqual(newest.status.error_code, 0)
    self.assertIn("Failed to load version 3", newest.status.error_message)
    self.assertEqual(stub.Classify(request, timeout=60).model_spec
                     .version.value, 2)
    shutil.rmtree(broken)

  def test_reload_config_with_labels_and_policies(self):
    base = tempfile.mkdtemp()
    exports.tiny_export(base, seed=1)
    exports.tiny_export(base, seed=2)
    srv = server_lib.Server(model_config.single_model_config("m", base), port=0,
                            poll_seconds=0, log_requests=False)
    self.addCleanup(srv.stop, 1)
    channel = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
    self.addCleanup(channel.close)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    models = model_service_pb2_grpc.ModelServiceStub(channel)
    request = client.classify_request([images.png(1)], "m", "serving_default")
    self.assertEqual(stub.Classify(request, timeout=60).model_spec
                     .version.value, 2)
    reload = model_management_pb2.ReloadConfigRequest()
    config = reload.config.model_config_list.config.add()
    config.name = "m"
    config.base_path = base
    config.model_platform = "tensorflow"
    config.model_version_policy.all.SetInParent()
    # As TF Serving: labels may only name versions already available, so
    # the versions are loaded first and labelled in a second reload.
    response = models.HandleReloadConfigRequest(reload, timeout=120)
    self.assertEqual(response.status.error_code, 0)
    config.version_labels["stable"] = 1
    config.version_labels["canary"] = 2
    response = models.HandleReloadConfigRequest(reload, timeout=120)
    self.assertEqual(response.status.error_code, 0)
    for label, version in (("stable", 1), ("canary", 2)):
      request.model_spec.version_label = label
      self.assertEqual(stub.Classify(request, timeout=60).model_spec
                       .version.value, version)


if __name__ == "__main__":
  tf.test.main()
