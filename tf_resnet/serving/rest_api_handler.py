"""TF Serving's REST API: routes and handlers over the gRPC handlers.

As tensorflow_serving/model_servers/http_rest_api_handler.cc (with
http_rest_api_util.cc): a method and path name an API call, the JSON body
becomes the gRPC request proto (`json_tensor`), and it runs through the same
handler as over gRPC (`services.handle_predict`, ...):

  POST /v1/models/M[/versions/N|/labels/L]:predict
      {"signature_name"?, "instances": [...]} -> {"predictions": [...]}
      {"signature_name"?, "inputs": ...}      -> {"outputs": ...}
  POST /v1/models/M[/versions/N|/labels/L]:classify
      {"signature_name"?, "context"?, "examples": [...]}
      -> {"results": [[[label, score], ...], ...]}
  POST /v1/models/M[/versions/N|/labels/L]:regress
      (the same body) -> {"results": [value, ...]}
  GET  /v1/models/M[/versions/N|/labels/L]          -> the model's status
  GET  /v1/models/M[/versions/N|/labels/L]/metadata -> its SignatureDefs

Failures answer `{"error": message}` with TF Serving's HTTP code for the
status (INVALID_ARGUMENT and FAILED_PRECONDITION 400, NOT_FOUND 404,
UNAVAILABLE 503, ...). The HTTP transport is `http_server`.
"""

import dataclasses
import logging
import re
import urllib.parse
from typing import Any, Optional

from google.protobuf import json_format
import grpc
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import regression_pb2

from tf_resnet.serving import errors
from tf_resnet.serving import json_tensor
from tf_resnet.serving import manager as manager_lib
from tf_resnet.serving import model_service
from tf_resnet.serving import services

ServingError = errors.ServingError
_LOG = logging.getLogger("tf_resnet.serving.requests")
_INVALID = grpc.StatusCode.INVALID_ARGUMENT
_INT64_MAX = 2**63 - 1

# TF Serving's ToHTTPStatusCode (model_servers/http_server.cc).
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

# TF Serving's kPredictionApiGegex and kModelStatusApiRegex; like RE2's
# (?i), the whole pattern ignores case.
_PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?"
    r":(classify|regress|predict)", re.IGNORECASE)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:/versions/(\d+)|/labels/([^/:]+))?"
    r"(?:/(metadata))?", re.IGNORECASE)
# TF Serving's kHTTPRestApiHandlerPathRegex: what this handler answers.
API_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)


def http_status(code: grpc.StatusCode) -> int:
  """The HTTP status TF Serving answers for a gRPC status code."""
  return _HTTP_STATUS.get(code, 500)


@dataclasses.dataclass
class Reply:
  """What a REST request gets back, and what to log and count about it."""
  status: int
  body: dict[str, Any]
  code: grpc.StatusCode = grpc.StatusCode.OK
  method: str = ""
  model: str = ""
  version: Optional[int] = None
  signature: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class _Route:
  method: str  # classify, regress, predict, status or metadata.
  model: str
  version: Optional[int] = None
  label: Optional[str] = None


def _fill_spec(spec, route: _Route) -> None:
  spec.name = route.model
  if route.version is not None:
    spec.version.value = route.version
  if route.label is not None:
    spec.version_label = route.label


def _predict(models, route: _Route, body: bytes):
  doc = json_tensor.parse(body)
  del body
  request = predict_pb2.PredictRequest()
  _fill_spec(request.model_spec, route)
  json_tensor.fill_signature(doc, request.model_spec)
  requested = request.model_spec.signature_name
  signature = requested or services.DEFAULT_SIGNATURE
  servable = models.model(route.model).resolve(version=route.version,
                                               label=route.label)
  signature_def = servable.signature_defs.get(signature)
  if signature_def is None:
    raise ServingError(_INVALID, f'Serving signature name: "{signature}" not '
                       "found in signature def")
  dtypes = {k: v.dtype for k, v in sorted(signature_def.inputs.items())}
  if not dtypes:
    raise ServingError(_INVALID, "Failed to get input map for signature: "
                       f"{requested or 'DEFAULT'}")
  tensors, row_format = json_tensor.predict_tensors(doc, dtypes)
  del doc
  for name in list(tensors):
    request.inputs[name].CopyFrom(tensors.pop(name))
  response, version, signature = services.handle_predict(models, request)
  if not response.outputs:
    raise ServingError(_INVALID, "Cannot convert empty tensor map to JSON")
  if row_format:
    answer = {"predictions": json_tensor.predictions_json(response.outputs)}
  else:
    answer = {"outputs": json_tensor.outputs_json(response.outputs)}
  return answer, version, signature


def _classify(models, route: _Route, body: bytes):
  doc = json_tensor.parse(body)
  request = classification_pb2.ClassificationRequest()
  _fill_spec(request.model_spec, route)
  json_tensor.fill_examples(doc, request)
  response, version, signature = services.handle_classify(models, request)
  return json_tensor.classification_json(response.result), version, signature


def _regress(models, route: _Route, body: bytes):
  doc = json_tensor.parse(body)
  request = regression_pb2.RegressionRequest()
  _fill_spec(request.model_spec, route)
  json_tensor.fill_examples(doc, request)
  response, version, signature = services.handle_regress(models, request)
  return json_tensor.regression_json(response.result), version, signature


# Status and metadata: the gRPC responses as protobuf's JSON.


def _proto_json(message) -> dict:
  return json_format.MessageToDict(message,
                                   always_print_fields_with_no_presence=True,
                                   preserving_proto_field_name=True)


def _status(models, route: _Route, body: bytes):
  del body
  request = get_model_status_pb2.GetModelStatusRequest()
  _fill_spec(request.model_spec, route)
  response = model_service.model_status(models, request)
  for entry in response.model_version_status:
    entry.status.SetInParent()  # TF Serving always sends it.
  return _proto_json(response), None, None


def _metadata(models, route: _Route, body: bytes):
  del body
  request = get_model_metadata_pb2.GetModelMetadataRequest()
  request.metadata_field.append("signature_def")
  _fill_spec(request.model_spec, route)
  response, version, _ = services.handle_metadata(models, request)
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  response.metadata["signature_def"].Unpack(signature_map)
  return ({"model_spec": _proto_json(response.model_spec),
           "metadata": {"signature_def": _proto_json(signature_map)}},
          version, None)


_HANDLERS = {"predict": _predict, "classify": _classify,
             "regress": _regress, "status": _status, "metadata": _metadata}


def _route(http_method: str, path: str) -> _Route:
  """The API call a method and path name, or TF Serving's error."""
  if not API_PATH.fullmatch(path):
    raise ServingError(grpc.StatusCode.NOT_FOUND,
                       f"Not found: {http_method} {path} (the REST API is "
                       "served under /v1/models/)")
  malformed = ServingError(_INVALID,
                           f"Malformed request: {http_method} {path}")
  if http_method == "POST":
    match = _PREDICTION_PATH.fullmatch(path)
    if not match:
      raise malformed
    name, version, label, method = match.groups()
    if method not in ("classify", "regress", "predict"):
      raise malformed  # As TF Serving: the pattern ignores case, this not.
  elif http_method == "GET":
    match = _STATUS_PATH.fullmatch(path)
    if not match:
      raise malformed
    name, version, label, subresource = match.groups()
    method = "metadata" if subresource == "metadata" else "status"
    if not name:
      raise ServingError(_INVALID, "Missing model name in request.")
  else:
    raise malformed
  if version is not None:
    if int(version) > _INT64_MAX:
      raise ServingError(_INVALID, f"Failed to convert version: {version} to "
                         "numeric.")
    version = int(version)
  return _Route(method, urllib.parse.unquote(name), version,
                None if label is None else urllib.parse.unquote(label))


def process(models: manager_lib.ModelManager, http_method: str, path: str,
            body: bytes) -> Reply:
  """Answers one REST request as TF Serving would.

  Args:
    models: the served models.
    http_method: `GET` or `POST` (others are malformed requests).
    path: the request's path, without query string.
    body: the request's body (JSON for POST).

  Returns:
    The HTTP status and JSON body: the result, or `{"error": message}`.
  """
  reply = Reply(200, {})
  try:
    route = _route(http_method, path)
    reply.method, reply.model = route.method, route.model
    reply.version = route.version
    reply.body, version, reply.signature = _HANDLERS[route.method](
        models, route, body)
    reply.version = version if version is not None else route.version
  except ServingError as e:
    reply.code, reply.body = e.code, {"error": e.message}
  except Exception as e:  # pylint: disable=broad-except
    _LOG.exception("unexpected failure in %s %s", http_method, path)
    error = ServingError(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
    reply.code, reply.body = error.code, {"error": error.message}
  reply.status = http_status(reply.code)
  return reply
