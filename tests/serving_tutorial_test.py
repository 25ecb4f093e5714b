"""TF Serving's ResNet tutorial against the server binary, and its error texts.

The tutorial's pre-2021 clients (tensorflow/serving's
tensorflow_serving/example/resnet_client_grpc.py at bb1428d5^,
resnet_client.py at cb28fcab^, resnet_warmup.py at 3b528523^) call a model
named `resnet` whose `serving_default` is the Estimator-era ResNet's predict
signature: `image_bytes` (JPEG strings) -> `classes`, `probabilities`. An
export made with `--serving_default=predict` is that model. The requests below
are copies of those scripts' request shapes (not their code); the server is
the binary, started as a container would start it (--bind_address=0.0.0.0).

Every error text is pinned against its source: tensorflow/serving at
9d981c5c (file:line), or TensorFlow's (file and function), with the cases
the tutorial's users hit first: JPEG bytes sent to a classify
`serving_default`, the HEAD clients' float `input_1`, a wrong dtype.
"""

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request

from absl.testing import absltest
import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tf_resnet.testing import exports
from tf_resnet.testing import images
from tf_resnet.testing import processes

_WARMUP = os.path.join("assets.extra", "tf_serving_warmup_requests")


def _jpeg(seed: int, height: int, width: int) -> bytes:
  """A photo-like JPEG (random pixels: well over 1,024 bytes)."""
  pixels = np.random.RandomState(seed).randint(0, 256, [height, width, 3])
  return images.encode_jpeg(pixels.astype(np.uint8))


def _r1_predict_request(data: bytes) -> predict_pb2.PredictRequest:
  """resnet_client_grpc.py's and resnet_warmup.py's request (pre-2021)."""
  request = predict_pb2.PredictRequest()
  request.model_spec.name = "resnet"
  request.model_spec.signature_name = "serving_default"
  request.inputs["image_bytes"].CopyFrom(
      tf.make_tensor_proto(data, shape=[1]))
  return request


class ServingTutorialTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    models = tempfile.mkdtemp()
    cls.resnet = exports.tiny_export(os.path.join(models, "resnet"),
                                     serving_default="predict")
    cls.classify = exports.tiny_export(os.path.join(models, "classify"))
    # No warm-up file for `classify`: TF Serving's "No warmup data file".
    shutil.rmtree(os.path.join(cls.classify, "assets.extra"))
    cls.cat = _jpeg(0, 48, 64)
    cls.snow = _jpeg(1, 40, 40)
    # What resnet_warmup.py writes: one PredictionLog per image, replacing
    # the exporter's file.
    with tf.io.TFRecordWriter(os.path.join(cls.resnet, _WARMUP)) as f:
      for data in (cls.cat, cls.snow):
        log = prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(
                request=_r1_predict_request(data)))
        f.write(log.SerializeToString())
    config = os.path.join(models, "models.config")
    with open(config, "w") as f:
      f.write("model_config_list {\n" + "".join(
          f'  config {{ name: "{name}" base_path: "{models}/{name}" '
          'model_platform: "tensorflow" }\n'
          for name in ("resnet", "classify")) + "}\n")
    cls.port, cls.rest = processes.free_ports(2)
    # The server's log, readable while it runs.
    cls.log = os.path.join(models, "server.log")
    with open(cls.log, "w") as log:
      cls.server = processes.start(
          "tf_resnet.serving.server", f"--port={cls.port}",
          f"--rest_api_port={cls.rest}", f"--model_config_file={config}",
          "--bind_address=0.0.0.0", stderr=log)
    line = cls.server.stdout.readline()
    if "Serving gRPC on" not in line:
      processes.stop(cls.server)
      with open(cls.log) as log:
        raise AssertionError(line + log.read()[-3000:])
    cls.channel = grpc.insecure_channel(f"localhost:{cls.port}")
    cls.stub = prediction_service_pb2_grpc.PredictionServiceStub(cls.channel)
    loaded = tf.saved_model.load(cls.resnet)
    cls.expected = loaded.signatures["predict"](
        image_bytes=tf.constant([cls.cat]))

  @classmethod
  def tearDownClass(cls):
    cls.channel.close()
    cls.server.send_signal(signal.SIGTERM)
    try:
      cls.server.communicate(timeout=60)
    except subprocess.TimeoutExpired:
      processes.stop(cls.server)
    super().tearDownClass()

  def _post(self, path: str, body: str):
    request = urllib.request.Request(f"http://localhost:{self.rest}{path}",
                                     data=body.encode())
    try:
      with urllib.request.urlopen(request, timeout=60) as reply:
        return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
      return e.code, json.loads(e.read())

  def _predict_error(self, request) -> grpc.RpcError:
    with self.assertRaises(grpc.RpcError) as ctx:
      self.stub.Predict(request, timeout=60)
    return ctx.exception

  def assertBoth(self, grpc_request, path, body, code, http, message):
    """The same text over gRPC (cut as grpc_status_util.cc) and REST (whole)."""
    if grpc_request is not None:
      error = self._predict_error(grpc_request)
      self.assertEqual(error.code(), code)
      self.assertEqual(error.details(), message if len(message) <= 1024
                       else message[:1024] + "...TRUNCATED")
    if path is not None:
      self.assertEqual(self._post(path, body), (http, {"error": message}))

  # The tutorial path.

  def test_the_grpc_clients_request_answers_a_class(self):
    response = self.stub.Predict(_r1_predict_request(self.cat), 10.0)
    self.assertEqual(response.model_spec.signature_name, "serving_default")
    classes = response.outputs["classes"]
    self.assertEqual(classes.dtype, tf.int64.as_datatype_enum)
    self.assertEqual(list(classes.int64_val),
                     self.expected["classes"].numpy().tolist())
    np.testing.assert_allclose(
        response.outputs["probabilities"].float_val,
        self.expected["probabilities"].numpy()[0], rtol=1e-5, atol=1e-6)

  def test_the_rest_clients_request_answers_a_class(self):
    # resnet_client.py's body, byte for byte (its '%s' formatting).
    jpeg_bytes = base64.b64encode(self.cat).decode("utf-8")
    predict_request = '{"instances" : [{"b64": "%s"}]}' % jpeg_bytes
    status, body = self._post("/v1/models/resnet:predict", predict_request)
    self.assertEqual(status, 200, body)
    prediction = body["predictions"][0]
    self.assertEqual(prediction["classes"],
                     int(self.expected["classes"].numpy()[0]))
    self.assertLen(prediction["probabilities"], 10)

  def test_the_warmup_scripts_records_ran_with_tf_servings_log_lines(self):
    # The lines resnet_warmup.py and saved_model_warmup.md tell users to
    # look for (saved_model_warmup_util.cc:86, 97, 240-242 at 9d981c5c),
    # and the start-up lines naming the address bound (server.cc:430, 451).
    # They are logged before the ports open, so before "Serving gRPC on".
    with open(self.log) as f:
      err = f.read()
    self.assertIn("No warmup data file found at "
                  f"{os.path.join(self.classify, _WARMUP)}\n", err)
    path = os.path.join(self.resnet, _WARMUP)
    self.assertIn(f"Starting to read warmup data for model at {path} with "
                  "model-warmup-options \n", err)
    self.assertRegex(err, re.escape(
        f"Finished reading warmup data for model at {path}. Number of "
        "warmup records read: 2. Elapsed time (microseconds): ") + r"\d+\.\n")
    self.assertIn(f"Running gRPC ModelServer at 0.0.0.0:{self.port} ...\n",
                  err)
    self.assertIn(f"Exporting HTTP/REST API at:0.0.0.0:{self.rest} ...\n",
                  err)
    self.assertNotIn("only: clients on other machines", err)

  # Errors, as TF Serving words them.

  def test_jpeg_bytes_sent_to_a_classify_serving_default(self):
    # The clients' MODEL_ACCEPT_JPG=True path against today's default
    # export. TensorFlow's ParseExample kernel (core/util/
    # example_proto_fast_parsing.cc, FastParseExample) quotes the value;
    # TF Serving returns Session::Run's status as it is (predict_util.cc:109)
    # and a gRPC client decodes it with replacement characters.
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "classify"
    request.inputs["inputs"].CopyFrom(tf.make_tensor_proto(self.cat,
                                                           shape=[1]))
    message = ("Could not parse example input, value: '" +
               self.cat.decode("utf-8", "replace") + "'")
    self.assertGreater(len(message), 1024)
    self.assertBoth(request, "/v1/models/classify:predict",
                    json.dumps({"instances": [
                        {"b64": base64.b64encode(self.cat).decode()}]}),
                    grpc.StatusCode.INVALID_ARGUMENT, 400, message)

  def test_the_head_clients_float_input_1(self):
    # Model Garden's Keras export takes `input_1` floats; ours cannot.
    # gRPC: TensorFlow's saved_model::GetInputValues (tensorflow/cc/
    # saved_model/util.cc), called by predict_util.cc:129.
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "resnet"
    request.model_spec.signature_name = "serving_default"
    request.inputs["input_1"].CopyFrom(tf.make_tensor_proto(
        np.zeros([1, 4, 4, 3], np.float32)))
    self.assertBoth(
        request, None, None, grpc.StatusCode.INVALID_ARGUMENT, 400,
        "Signature input alias: image_bytes(feed name: "
        "serving_default_image_bytes:0) not found in request and no default "
        "value provided. Inputs expected to be in the request {input_1}, or "
        "default input alias set: ")
    # REST: the one input takes the rows (json_tensor.cc:583-587, 262-267).
    self.assertBoth(
        None, "/v1/models/resnet:predict",
        json.dumps({"instances": [[[[0.5, 0.25, 0.0]]]]}), None, 400,
        "Failed to process element: 0 of 'instances' list. Error: "
        "INVALID_ARGUMENT: JSON Value: 0.5 Type: Number is not of expected "
        "type: string")

  def test_a_wrong_dtype(self):
    # Session::Run's check of its feeds (TensorFlow's core/framework/
    # function.cc, FunctionCallFrame::SetArgs), not eager's "cannot compute
    # __inference_..." text.
    request = _r1_predict_request(b"")
    request.inputs["image_bytes"].CopyFrom(
        tf.make_tensor_proto(np.zeros([1], np.float32)))
    self.assertBoth(request, None, None, grpc.StatusCode.INVALID_ARGUMENT,
                    400, "Expects arg[0] to be string but float is provided")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "resnet"
    request.model_spec.signature_name = "predict_images"
    request.inputs["images"].CopyFrom(
        tf.make_tensor_proto(np.zeros([1, 4, 4, 3], np.float32)))
    self.assertBoth(request, None, None, grpc.StatusCode.INVALID_ARGUMENT,
                    400, "Expects arg[0] to be uint8 but float is provided")
    # REST builds the tensor in the signature's type (json_tensor.cc:262).
    self.assertBoth(
        None, "/v1/models/resnet:predict",
        '{"signature_name": "predict_images", "instances": [[[[1.5, 2, 3]]]]}',
        None, 400, "Failed to process element: 0 of 'instances' list. "
        "Error: INVALID_ARGUMENT: JSON Value: 1.5 Type: Number is not of "
        "expected type: uint8")

  def test_runtime_errors_without_eagers_wrappers(self):
    # TensorFlow's texts as Session::Run returns them (kernel message and
    # node), with no "Graph execution error", "Detected at node",
    # "__inference_..." or "[Op:...]": TensorListFromTensor's shape check
    # (core/kernels/list_kernels.h) and the export's own image check.
    request = _r1_predict_request(b"")
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([[self.cat]]))
    self.assertBoth(
        request, None, None, grpc.StatusCode.INVALID_ARGUMENT, 400,
        "Specified a list with shape [] from a tensor with shape [1]\n\t "
        "[[{{node map/TensorArrayUnstack/TensorListFromTensor}}]]")
    hello = base64.b64encode(b"hello").decode()
    self.assertBoth(
        _r1_predict_request(b"hello"), "/v1/models/resnet:predict",
        '{"instances": [{"b64": "%s"}]}' % hello,
        grpc.StatusCode.INVALID_ARGUMENT, 400,
        "assertion failed: [an image is neither a JPEG nor a PNG (first "
        "bytes:] [hell] [)]\n\t [[{{node map/while/Assert/Assert}}]]")

  def test_wrong_keys_names_and_bodies(self):
    # Signature name: predict_util.cc:91-93 (gRPC, FAILED_PRECONDITION);
    # http_rest_api_handler.cc:236-238 (REST's GetInfoMap, INVALID_ARGUMENT).
    request = _r1_predict_request(self.cat)
    request.model_spec.signature_name = "nope"
    self.assertBoth(request, None, None, grpc.StatusCode.FAILED_PRECONDITION,
                    400, 'Serving signature key "nope" not found.')
    self.assertBoth(None, "/v1/models/resnet:predict",
                    '{"signature_name": "nope", "instances": [1]}', None, 400,
                    'Serving signature name: "nope" not found in signature '
                    "def")
    # An extra input: predict_util.cc:52-71.
    request = _r1_predict_request(self.cat)
    request.inputs["input_1"].CopyFrom(tf.make_tensor_proto([1.0]))
    self.assertBoth(request, None, None, grpc.StatusCode.INVALID_ARGUMENT,
                    400, "input size does not match signature: 2!=1 "
                    "len({image_bytes,input_1}) != len({image_bytes}). Sent "
                    "extra: {input_1}. Missing but required: {}.")
    # A named input missing from REST's `inputs`: json_tensor.cc:635.
    self.assertBoth(None, "/v1/models/resnet:predict",
                    '{"inputs": {"input_1": [1]}}', None, 400,
                    "Missing named input: image_bytes in 'inputs' object.")
    # Output filter: predict_util.cc:137-148.
    request = _r1_predict_request(self.cat)
    request.output_filter.extend(["classes", "logits"])
    self.assertBoth(request, None, None, grpc.StatusCode.INVALID_ARGUMENT,
                    400, "output tensor alias not found in signature: logits "
                    "Outputs expected to be in the set {classes,labels,"
                    "probabilities,top_k_classes,top_k_scores}.")
    del request.output_filter[1]
    request.output_filter.append("classes")
    self.assertBoth(request, None, None, grpc.StatusCode.INVALID_ARGUMENT,
                    400, "duplicate output tensor alias: classes")
    # Bad base64: json_tensor.cc:386, wrapped at 583-587.
    self.assertBoth(None, "/v1/models/resnet:predict",
                    '{"instances": [{"b64": "!!!"}]}', None, 400,
                    "Failed to process element: 0 of 'instances' list. "
                    "Error: INVALID_ARGUMENT: Unable to base64 decode")

  def test_missing_models_and_versions(self):
    # basic_manager.cc:139-140 with ServableRequest::DebugString
    # (core/manager.h:152, 158).
    request = _r1_predict_request(self.cat)
    request.model_spec.name = "nope"
    self.assertBoth(request, "/v1/models/nope:predict", '{"instances": [1]}',
                    grpc.StatusCode.NOT_FOUND, 404,
                    "Servable not found for request: Latest(nope)")
    request = _r1_predict_request(self.cat)
    request.model_spec.version.value = 9
    self.assertBoth(request, "/v1/models/resnet/versions/9:predict",
                    '{"instances": [1]}', grpc.StatusCode.NOT_FOUND, 404,
                    "Servable not found for request: Specific(resnet, 9)")


if __name__ == "__main__":
  absltest.main()
