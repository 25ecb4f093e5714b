"""TF Serving's REST API on a real server on 127.0.0.1, checked against gRPC."""

import base64
import json
import tempfile
from unittest import mock
import urllib.error
import urllib.request

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tf_resnet.serving import grpc_server as server_lib
from tf_resnet.serving import manager
from tf_resnet.serving import model_config
from tf_resnet.serving import protocol as client
from tf_resnet.serving import rest_api_handler
from tf_resnet.serving import services
from tf_resnet.testing import exports
from tf_resnet.testing import images

LABELS = list(exports.DIGIT_LABELS)
PREDICT_OUTPUTS = ["classes", "labels", "probabilities", "top_k_classes",
                   "top_k_scores"]


def _b64(data: bytes) -> dict[str, str]:
  return {"b64": base64.b64encode(data).decode("ascii")}


class RestTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    base = tempfile.mkdtemp()
    exports.tiny_export(base, seed=1)
    exports.tiny_export(base, seed=2)
    config = model_config.single_model_config("digits", base)
    model = config.model_config_list.config[0]
    model.model_version_policy.all.SetInParent()
    model.version_labels["stable"] = 1
    model.version_labels["canary"] = 2
    # Labels at start-up name versions not yet loaded: TF Serving's
    # --allow_version_labels_for_unavailable_models.
    cls.server = server_lib.Server(
        config, port=0, rest_port=0, poll_seconds=0, log_requests=False,
        lifecycle=manager.LifecycleOptions(
            allow_version_labels_for_unavailable_models=True))
    cls.channel = grpc.insecure_channel(f"127.0.0.1:{cls.server.port}")
    cls.stub = prediction_service_pb2_grpc.PredictionServiceStub(cls.channel)
    cls.images = [images.png(i) for i in range(3)]

  @classmethod
  def tearDownClass(cls):
    cls.channel.close()
    cls.server.stop(grace=1)
    super().tearDownClass()

  def _call(self, path: str, body=None, method: str = "POST"):
    """(HTTP status, JSON answer) of one request; `body` is JSON or bytes."""
    if body is not None and not isinstance(body, bytes):
      body = json.dumps(body).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{self.server.rest_port}{path}", data=body,
        method=method, headers={"Content-Type": "application/json"})
    try:
      with urllib.request.urlopen(request, timeout=60) as response:
        self.assertEqual(response.headers["Content-Type"], "application/json")
        return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
      self.assertEqual(e.headers["Content-Type"], "application/json")
      return e.code, json.loads(e.read())

  def _ok(self, path: str, body=None, method: str = "POST"):
    status, answer = self._call(path, body, method)
    self.assertEqual(status, 200, answer)
    return answer

  def assertRestError(self, path, body, status, message, method="POST"):
    answer = self._call(path, body, method)
    self.assertEqual(answer, (status, {"error": message}))

  def _grpc_predict(self, signature, array, version=None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "digits"
    request.model_spec.signature_name = signature
    if version is not None:
      request.model_spec.version.value = version
    alias = "images" if signature == "predict_images" else "image_bytes"
    request.inputs[alias].CopyFrom(tf.make_tensor_proto(array))
    outputs = self.stub.Predict(request, timeout=60).outputs
    return {name: tf.make_ndarray(outputs[name]) for name in outputs}

  def assertPredictionsEqual(self, predictions, expected):
    """Row-format predictions against gRPC outputs, instance by instance."""
    self.assertLen(predictions, len(expected["classes"]))
    for i, row in enumerate(predictions):
      self.assertCountEqual(row, PREDICT_OUTPUTS)
      self.assertAllClose(row["probabilities"], expected["probabilities"][i],
                          atol=1e-6)
      self.assertAllClose(row["top_k_scores"], expected["top_k_scores"][i],
                          atol=1e-6)
      self.assertEqual(row["classes"], expected["classes"][i])
      self.assertEqual(row["top_k_classes"], expected["top_k_classes"][i]
                       .tolist())
      self.assertEqual(row["labels"], [l.decode() for l in
                                       expected["labels"][i]])

  def test_predict_instances_match_grpc(self):
    answer = self._ok("/v1/models/digits:predict", {
        "signature_name": "predict",
        "instances": [_b64(image) for image in self.images]})
    self.assertEqual(list(answer), ["predictions"])
    self.assertPredictionsEqual(answer["predictions"],
                                self._grpc_predict("predict", self.images))
    # Named instances, as a client with several inputs sends them.
    named = self._ok("/v1/models/digits:predict", {
        "signature_name": "predict",
        "instances": [{"image_bytes": _b64(image)} for image in self.images]})
    self.assertEqual(named, answer)

  def test_predict_numeric_instances_match_grpc(self):
    pixels = np.stack([images.random_pixels(i) for i in range(2)])
    answer = self._ok("/v1/models/digits:predict", {
        "signature_name": "predict_images", "instances": pixels.tolist()})
    self.assertPredictionsEqual(
        answer["predictions"], self._grpc_predict("predict_images", pixels))

  def test_predict_inputs_match_grpc(self):
    expected = self._grpc_predict("predict", self.images[:2])
    for inputs in ({"image_bytes": [_b64(i) for i in self.images[:2]]},
                   [_b64(i) for i in self.images[:2]]):
      answer = self._ok("/v1/models/digits/versions/2:predict", {
          "signature_name": "predict", "inputs": inputs})
      outputs = answer["outputs"]
      self.assertCountEqual(outputs, PREDICT_OUTPUTS)
      self.assertAllClose(outputs["probabilities"], expected["probabilities"],
                          atol=1e-6)
      self.assertEqual(outputs["classes"], expected["classes"].tolist())
      self.assertEqual(outputs["labels"],
                       [[l.decode() for l in row] for row in
                        expected["labels"]])

  def test_classify_matches_grpc(self):
    expected = self.stub.Classify(client.classify_request(
        self.images, "digits", "classify_single_view"), timeout=60)
    answer = self._ok("/v1/models/digits:classify", {
        "signature_name": "classify_single_view",
        "examples": [{"image/encoded": _b64(i)} for i in self.images]})
    self.assertEqual(list(answer), ["results"])
    self.assertLen(answer["results"], 3)
    for result, row in zip(answer["results"],
                           expected.result.classifications):
      self.assertEqual([label for label, _ in result],
                       [c.label for c in row.classes])
      # Scores are the float32 values themselves, in their shortest form.
      self.assertEqual([np.float32(score) for _, score in result],
                       [np.float32(c.score) for c in row.classes])

  def test_classify_with_context(self):
    answer = self._ok("/v1/models/digits:classify", {
        "context": {"image/encoded": _b64(self.images[0])},
        "examples": [{"id": 0}, {"id": [1], "weight": 0.5}]})
    plain = self._ok("/v1/models/digits:classify", {
        "examples": [{"image/encoded": [_b64(self.images[0])]}]})
    self.assertEqual(answer["results"], plain["results"] * 2)

  def test_versions_and_labels(self):
    body = {"signature_name": "predict", "inputs": [_b64(self.images[0])]}
    by_version = {v: self._ok(f"/v1/models/digits/versions/{v}:predict",
                              body)["outputs"]["probabilities"]
                  for v in (1, 2)}
    self.assertNotAllClose(by_version[1], by_version[2])
    for version in (1, 2):
      self.assertAllClose(by_version[version], self._grpc_predict(
          "predict", self.images[:1], version)["probabilities"], atol=1e-6)
    for label, version in (("stable", 1), ("canary", 2)):
      self.assertEqual(self._ok(f"/v1/models/digits/labels/{label}:predict",
                                body)["outputs"]["probabilities"],
                       by_version[version])
    self.assertEqual(self._ok("/v1/models/digits:predict", body)["outputs"]
                     ["probabilities"], by_version[2])
    classify = {"examples": [{"image/encoded": _b64(self.images[0])}]}
    expected = self.stub.Classify(client.classify_request(
        self.images[:1], "digits", "serving_default", version=1), timeout=60)
    self.assertEqual(
        [label for label, _ in self._ok("/v1/models/digits/labels/stable"
                                        ":classify", classify)["results"][0]],
        [c.label for c in expected.result.classifications[0].classes])

  def test_status(self):
    available = {"state": "AVAILABLE",
                 "status": {"error_code": "OK", "error_message": ""}}
    self.assertEqual(self._ok("/v1/models/digits", method="GET"), {
        "model_version_status": [dict(version="2", **available),
                                 dict(version="1", **available)]})
    self.assertEqual(self._ok("/v1/models/digits/versions/1", method="GET"),
                     {"model_version_status": [dict(version="1",
                                                    **available)]})
    # As TF Serving: a label does not narrow the status to its version.
    self.assertLen(self._ok("/v1/models/digits/labels/stable", method="GET")
                   ["model_version_status"], 2)

  def test_metadata(self):
    answer = self._ok("/v1/models/digits/metadata", method="GET")
    self.assertEqual(answer["model_spec"],
                     {"name": "digits", "signature_name": "", "version": "2"})
    signatures = answer["metadata"]["signature_def"]["signature_def"]
    self.assertCountEqual(signatures, [
        "serving_default", "classification", "classify_single_view",
        "predict", "predict_images", "predict_single_view"])
    default = signatures["serving_default"]
    self.assertEqual(default["method_name"], "tensorflow/serving/classify")
    self.assertEqual(default["inputs"]["inputs"]["dtype"], "DT_STRING")
    self.assertEqual(default["inputs"]["inputs"]["tensor_shape"]["dim"],
                     [{"size": "-1", "name": ""}])
    self.assertCountEqual(default["outputs"], ["classes", "scores"])
    self.assertEqual(
        self._ok("/v1/models/digits/labels/stable/metadata",
                 method="GET")["model_spec"]["version"], "1")

  def test_model_spec_errors(self):
    body = {"signature_name": "predict", "instances": [_b64(self.images[0])]}
    examples = {"examples": [{"image/encoded": _b64(self.images[0])}]}
    self.assertRestError("/v1/models/nope:predict", body, 404,
                         "Servable not found for request: Latest(nope)")
    self.assertRestError("/v1/models/digits/versions/7:classify", examples,
                         404, "Servable not found for request: "
                         "Specific(digits, 7)")
    self.assertRestError("/v1/models/digits/labels/beta:predict", body, 400,
                         "Unrecognized servable version label: beta")
    self.assertRestError("/v1/models/digits:predict",
                         dict(body, signature_name="nope"), 400,
                         'Serving signature name: "nope" not found in '
                         "signature def")
    self.assertRestError("/v1/models/digits:classify",
                         dict(examples, signature_name="nope"), 400,
                         "No signature was found with the name: nope")
    self.assertRestError("/v1/models/digits:regress", examples, 400,
                         "Expected one output Tensor.")
    self.assertRestError("/v1/models/digits/versions/99", None, 404,
                         "Could not find version 99 of model digits", "GET")
    self.assertRestError("/v1/models/nope", None, 404,
                         "Could not find any versions of model nope", "GET")
    self.assertRestError("/v1/models/nope/metadata", None, 404,
                         "Servable not found for request: Latest(nope)",
                         "GET")

  def test_body_errors(self):
    path = "/v1/models/digits:predict"
    image = _b64(self.images[0])
    self.assertRestError(
        path, {"signature_name": "predict", "instances": [{"images": image}]},
        400, "Failed to process element: 0 key: images of 'instances' list. "
        "Error: INVALID_ARGUMENT: JSON object: does not have named input: "
        "images")
    self.assertRestError(
        path, {"signature_name": "predict", "inputs": {"images": [image]}},
        400, "Missing named input: image_bytes in 'inputs' object.")
    self.assertRestError(
        path, {"signature_name": "predict_images", "instances": [[[["x"]]]]},
        400, "Failed to process element: 0 of 'instances' list. Error: "
        'INVALID_ARGUMENT: JSON Value: "x" Type: String is not of expected '
        "type: uint8")
    self.assertRestError(
        path, {"signature_name": "predict_images",
               "instances": [[[[1, 2, 3]]], [[[1, 2]]]]},
        400, "Failed to process element: 1 of 'instances' list. Error: "
        "INVALID_ARGUMENT: Expecting tensor size: 3 but got: 2")
    self.assertRestError(
        path, {"signature_name": "predict", "inputs": [{"b64": "%%"}]},
        400, "Unable to base64 decode")
    self.assertRestError(path, {"instances": []}, 400,
                         'JSON Value: {\n    "instances": []\n} No values in '
                         "'instances' array")
    self.assertRestError(path, {"signature_name": "predict"}, 400,
                         "Missing 'inputs' or 'instances' key")
    self.assertRestError(path, {"instances": {}}, 400,
                         'JSON Value: {\n    "instances": {}\n} Expecting '
                         "'instances' to be an list/array")
    # Too big for a double: TF Serving's parse error, 400 (not a 500).
    self.assertRestError(path, b'{"instances": [' + b"1" * 5000 + b"]}", 400,
                         "JSON Parse error: Number too big to be stored in "
                         "double. at offset: 15")
    self.assertRestError(path, b"", 400,
                         "JSON Parse error: The document is empty")
    # TF Serving's JsonValueToDebugString (2024 on): arrays on one line.
    self.assertRestError(path, [1], 400, "JSON Value: [1] Is not object")
    self.assertRestError(path, {"signature_name": 3}, 400,
                         'JSON Value: {\n    "signature_name": 3\n} not '
                         "formatted correctly. 'signature_name' key must be "
                         "a string value.")
    status, answer = self._call(path, b'{"instances": [')
    self.assertEqual(status, 400)
    self.assertStartsWith(answer["error"], "JSON Parse error: ")
    self.assertRestError("/v1/models/digits:classify", {"examples": {}}, 400,
                         'JSON Value: {\n    "examples": {}\n} Expecting '
                         "'examples' value to be an list/array")
    self.assertRestError("/v1/models/digits:classify",
                         {"examples": [{"image/encoded": None}]}, 400,
                         "Feature: image/encoded has element with unexpected "
                         "JSON type: Null")
    self.assertRestError("/v1/models/digits:classify",
                         {"examples": [{"x": [1, "a"]}]}, 400,
                         "Unexpected element type in feature: x expecting "
                         "type: int64")
    # A corrupt image fails its request, and the server goes on serving.
    status, answer = self._call("/v1/models/digits:classify", {
        "examples": [{"image/encoded": _b64(b"not an image")}]})
    self.assertEqual(status, 400)
    self.assertIn("neither a JPEG nor a PNG", answer["error"])
    self._ok("/v1/models/digits:classify",
             {"examples": [{"image/encoded": image}]})

  def test_routes(self):
    self.assertRestError("/v2/models/digits:predict", {}, 404,
                         "Not found: POST /v2/models/digits:predict (the REST "
                         "API is served under /v1/models/)")
    self.assertRestError("/v1/models/digits:explain", {}, 400,
                         "Malformed request: POST /v1/models/digits:explain")
    self.assertRestError("/v1/models/digits:predict", None, 400,
                         "Malformed request: GET /v1/models/digits:predict",
                         "GET")
    self.assertRestError("/v1/models/digits", None, 400,
                         "Malformed request: DELETE /v1/models/digits",
                         "DELETE")
    self.assertRestError("/v1/models", None, 400,
                         "Missing model name in request.", "GET")
    # Case-insensitive paths, query strings ignored, as TF Serving.
    self.assertLen(self._ok("/V1/Models/digits?verbose=1", method="GET")
                   ["model_version_status"], 2)

  def test_unexpected_failures_answer_json_and_the_server_goes_on(self):
    examples = {"examples": [{"image/encoded": _b64(self.images[0])}]}
    with mock.patch.object(services, "handle_regress", side_effect=(
        manager.ServingError(grpc.StatusCode.UNAVAILABLE, "queue is full"))):
      self.assertRestError("/v1/models/digits:regress", examples, 503,
                           "queue is full")
    with mock.patch.object(services, "handle_regress",
                           side_effect=RuntimeError("boom")):
      self.assertRestError("/v1/models/digits:regress", examples, 500,
                           "RuntimeError: boom")
    self.assertLen(self._ok("/v1/models/digits:classify",
                            examples)["results"], 1)

  def test_http_status_codes(self):
    codes = grpc.StatusCode
    self.assertEqual(
        {code: rest_api_handler.http_status(code) for code in codes},
        {codes.OK: 200, codes.CANCELLED: 499, codes.UNKNOWN: 500,
         codes.INVALID_ARGUMENT: 400, codes.DEADLINE_EXCEEDED: 504,
         codes.NOT_FOUND: 404, codes.ALREADY_EXISTS: 409,
         codes.PERMISSION_DENIED: 403, codes.RESOURCE_EXHAUSTED: 429,
         codes.FAILED_PRECONDITION: 400, codes.ABORTED: 409,
         codes.OUT_OF_RANGE: 400, codes.UNIMPLEMENTED: 501,
         codes.INTERNAL: 500, codes.UNAVAILABLE: 503, codes.DATA_LOSS: 500,
         codes.UNAUTHENTICATED: 401})


if __name__ == "__main__":
  tf.test.main()
