"""TensorFlow Serving's REST API (`--rest_api_port`) over the gRPC handlers.

Routes, JSON formats, error wording and HTTP status codes follow TF
Serving's sources (model_servers/http_rest_api_handler.cc,
http_rest_api_util.cc, http_server.cc and util/json_tensor.cc), so its REST
clients work unchanged:

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

Each request becomes the gRPC request proto and runs through the same
handler as over gRPC (`services.handle_predict`, ...). Binary values travel
as `{"b64": "..."}`. Failures answer `{"error": message}` with TF Serving's
HTTP code for the status (INVALID_ARGUMENT and FAILED_PRECONDITION 400,
NOT_FOUND 404, UNAVAILABLE 503, ...). The HTTP server is the standard
library's, one thread per connection, in the background.
"""

import base64
import binascii
import dataclasses
import gzip
import http.server
import io
import json
import logging
import math
import re
import socket
import socketserver
import sys
import threading
import time
import urllib.parse
from typing import Any, Optional

from google.protobuf import json_format
import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2  # pylint: disable=g-direct-tensorflow-import
from tensorflow.core.framework import types_pb2  # pylint: disable=g-direct-tensorflow-import
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import regression_pb2

from tf_resnet.serving import manager as manager_lib
from tf_resnet.serving import services

ServingError = manager_lib.ServingError
_LOG = logging.getLogger("tf_resnet.serving.requests")
_INVALID = grpc.StatusCode.INVALID_ARGUMENT

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
_API_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)

_INT64_MAX = 2**63 - 1
# Largest float and largest exactly representable integer, per target type.
_DECIMAL_LIMITS = {"float": (float(np.finfo(np.float32).max), 2**24 - 1),
                   "double": (sys.float_info.max, 2**53 - 1)}
# Integer dtypes: the JSON integers each accepts (rapidjson's IsInt,
# IsInt64, IsUint, IsUint64, as TF Serving checks them).
_INT_RANGES = {
    types_pb2.DT_INT32: (-2**31, 2**31 - 1),
    types_pb2.DT_INT16: (-2**31, 2**31 - 1),
    types_pb2.DT_INT8: (-2**31, 2**31 - 1),
    types_pb2.DT_UINT8: (-2**31, 2**31 - 1),
    types_pb2.DT_INT64: (-2**63, _INT64_MAX),
    types_pb2.DT_UINT32: (0, 2**32 - 1),
    types_pb2.DT_UINT64: (0, 2**64 - 1),
}
_VALUE_FIELDS = {
    types_pb2.DT_FLOAT: "float_val",
    types_pb2.DT_DOUBLE: "double_val",
    types_pb2.DT_INT32: "int_val",
    types_pb2.DT_INT16: "int_val",
    types_pb2.DT_INT8: "int_val",
    types_pb2.DT_UINT8: "int_val",
    types_pb2.DT_STRING: "string_val",
    types_pb2.DT_INT64: "int64_val",
    types_pb2.DT_BOOL: "bool_val",
    types_pb2.DT_UINT32: "uint32_val",
    types_pb2.DT_UINT64: "uint64_val",
}
# Output dtypes TF Serving writes as JSON.
_WRITABLE = set(_VALUE_FIELDS) | {types_pb2.DT_HALF}
_FEATURE_KINDS = {"bytes_list": "bytes", "float_list": "float",
                  "int64_list": "int64"}


def http_status(code: grpc.StatusCode) -> int:
  """The HTTP status TF Serving answers for a gRPC status code."""
  return _HTTP_STATUS.get(code, 500)


@dataclasses.dataclass
class Reply:
  """What a REST request gets back, and what to log about it."""
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


# JSON values: type names and text as TF Serving's error messages show them.


def _json_type(value) -> str:
  if value is None:
    return "Null"
  if value is True:
    return "True"
  if value is False:
    return "False"
  if isinstance(value, dict):
    return "Object"
  if isinstance(value, list):
    return "Array"
  if isinstance(value, str):
    return "String"
  return "Number"


def _json_text(value, limit: int = 2048) -> str:
  # Only for messages, which ServingError cuts at 1024 characters anyway.
  return json.dumps(value, indent=4, ensure_ascii=False)[:limit]


def _format_error(value, *parts) -> ServingError:
  return ServingError(_INVALID,
                      f"JSON Value: {_json_text(value)} {''.join(parts)}")


def _dtype_name(dtype: int) -> str:
  """TensorFlow's DataTypeString: `float`, `double`, `half`, `int64`, ..."""
  special = {types_pb2.DT_FLOAT: "float", types_pb2.DT_DOUBLE: "double",
             types_pb2.DT_HALF: "half"}
  if dtype in special:
    return special[dtype]
  try:
    return tf.as_dtype(dtype).name
  except TypeError:
    return types_pb2.DataType.Name(dtype)[3:].lower()


def _type_error(value, dtype: int) -> ServingError:
  return ServingError(
      _INVALID, f"JSON Value: {_json_text(value)} Type: {_json_type(value)} "
      f"is not of expected type: {_dtype_name(dtype)}")


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_lossless(value, target: str) -> bool:
  """Whether TF Serving converts a JSON number to `target` (float, double)."""
  largest, largest_int = _DECIMAL_LIMITS[target]
  if isinstance(value, int) and -2**63 <= value < 2**64:
    return abs(value) <= largest_int
  try:
    value = float(value)
  except OverflowError:
    return False
  return not math.isfinite(value) or -largest <= value <= largest


def _lossy_error(value, target: str) -> ServingError:
  return ServingError(_INVALID, f"Cannot convert JSON value: "
                      f"{_json_text(value)} to {target} without loss of "
                      "precision.")


def _utf8(text: str) -> bytes:
  return text.encode("utf-8", "surrogatepass")


def _is_b64(value) -> bool:
  return (isinstance(value, dict) and len(value) == 1
          and isinstance(value.get("b64"), str))


def _decode_b64(value) -> bytes:
  """The bytes of a `{"b64": "..."}` object."""
  if not _is_b64(value):
    raise ServingError(_INVALID, f"JSON Value: {_json_text(value)} not "
                       "formatted correctly for base64 data")
  text = value["b64"]
  try:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
  except (binascii.Error, ValueError):
    raise ServingError(_INVALID, "Unable to base64 decode") from None


def _parse_json(body: bytes):
  """The request's top-level JSON object, or TF Serving's parse error."""
  if not body.strip():
    raise ServingError(_INVALID, "JSON Parse error: The document is empty")
  try:
    doc = json.loads(body.decode("utf-8"))
  except json.JSONDecodeError as e:
    raise ServingError(_INVALID, f"JSON Parse error: {e.msg} at offset: "
                       f"{e.pos}") from None
  except UnicodeDecodeError as e:
    raise ServingError(_INVALID, "JSON Parse error: Invalid encoding in "
                       f"string. at offset: {e.start}") from None
  except RecursionError:
    raise ServingError(_INVALID, "JSON Parse error: the document is nested "
                       "too deeply") from None
  if not isinstance(doc, dict):
    raise _format_error(doc, "Is not object")
  return doc


def _fill_signature(doc: dict, spec) -> None:
  if "signature_name" in doc:
    if not isinstance(doc["signature_name"], str):
      raise _format_error(doc, "not formatted correctly. 'signature_name' "
                          "key must be a string value.")
    spec.signature_name = doc["signature_name"]


def _fill_spec(spec, route: _Route) -> None:
  spec.name = route.model
  if route.version is not None:
    spec.version.value = route.version
  if route.label is not None:
    spec.version_label = route.label


# Predict: JSON to tensors (instances: row format; inputs: columnar).


def _dense_shape(value) -> list[int]:
  """The shape a nested list claims, following first elements."""
  shape = []
  while isinstance(value, list):
    shape.append(len(value))
    if not value:
      break
    value = value[0]
  return shape


def _tensor_value(value, dtype: int):
  """One JSON scalar as the value of a TensorProto's typed field."""
  if dtype in (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE):
    if not _is_number(value):
      raise _type_error(value, dtype)
    target = _dtype_name(dtype)
    if not _is_lossless(value, target):
      raise _lossy_error(value, target)
    return float(value)
  if dtype in _INT_RANGES:
    low, high = _INT_RANGES[dtype]
    if not (isinstance(value, int) and not isinstance(value, bool)
            and low <= value <= high):
      raise _type_error(value, dtype)
    return value
  if dtype == types_pb2.DT_STRING:
    if not isinstance(value, str):
      raise _type_error(value, dtype)
    return _utf8(value)
  if dtype == types_pb2.DT_BOOL:
    if not isinstance(value, bool):
      raise _type_error(value, dtype)
    return value
  raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                     f"Conversion of JSON Value: {_json_text(value)} to "
                     f"type: {_dtype_name(dtype)}")


def _fill_values(value, level: int, shape: list[int], dtype: int,
                 out: list) -> None:
  """Appends the leaves of a dense nested list to `out`, checking its shape."""
  rank = len(shape)
  if not isinstance(value, list):
    if level != rank:
      raise ServingError(
          _INVALID, f"JSON Value: {_json_text(value)} found at incorrect "
          f"level: {level + 1} in the JSON DOM. Expected at level: {rank}")
    if isinstance(value, dict):
      if dtype != types_pb2.DT_STRING:
        raise _type_error(value, dtype)
      out.append(_decode_b64(value))
    else:
      out.append(_tensor_value(value, dtype))
    return
  if level >= rank:
    raise ServingError(_INVALID, "Encountered list at unexpected level: "
                       f"{level} expected < {rank}")
  if len(value) != shape[level]:
    raise ServingError(_INVALID, "Encountered list at unexpected size: "
                       f"{len(value)} at level: {level} expected size: "
                       f"{shape[level]}")
  for item in value:
    _fill_values(item, level + 1, shape, dtype, out)


def _tensor_proto(dtype: int, shape: list[int], values: list):
  proto = tensor_pb2.TensorProto(dtype=dtype)
  for size in shape:
    proto.tensor_shape.dim.add(size=size)
  if values:
    getattr(proto, _VALUE_FIELDS[dtype]).extend(values)
  return proto


def _is_named_object(value) -> bool:
  return isinstance(value, dict) and not _is_b64(value)


def _status_text(error: ServingError) -> str:
  return f"{error.code.name}: {error.message}"


def _tensors_from_instances(instances: list, dtypes: dict[str, int]) -> dict:
  """Row format: instance i is slice i of every input (a new first axis)."""
  named = _is_named_object(instances[0])
  if not named and len(dtypes) > 1:
    raise ServingError(_INVALID, "instances is a plain list, but expecting "
                       "list of objects as multiple input tensors required "
                       "as per tensorinfo_map")
  values = {name: [] for name in dtypes}
  shapes, sizes = {}, {}

  def add(name, item):
    if name not in dtypes:
      raise ServingError(_INVALID, "JSON object: does not have named input: "
                         f"{name}")
    shape, out = _dense_shape(item), []
    _fill_values(item, 0, shape, dtypes[name], out)
    if name not in sizes:
      sizes[name], shapes[name] = len(out), shape
    elif sizes[name] != len(out):
      raise ServingError(_INVALID, f"Expecting tensor size: {sizes[name]} "
                         f"but got: {len(out)}")
    elif shapes[name] != shape:
      raise ServingError(
          _INVALID, f"Expecting shape [{','.join(map(str, shapes[name]))}] "
          f"but got: [{','.join(map(str, shape))}]")
    values[name].extend(out)

  for i, instance in enumerate(instances):
    if named:
      if not _is_named_object(instance):
        raise ServingError(_INVALID, "Expecting object but got list at item "
                           f"{i} of input list")
      for name, item in instance.items():
        try:
          add(name, item)
        except ServingError as e:
          raise ServingError(
              _INVALID, f"Failed to process element: {i} key: {name} of "
              f"'instances' list. Error: {_status_text(e)}") from None
      if set(instance) != set(dtypes):
        raise ServingError(
            _INVALID, f"Failed to process element: {i} of 'instances' list. "
            f"JSON object: {_json_text(instance)} keys must be equal to: "
            f"{','.join(sorted(dtypes))}")
    else:
      if _is_named_object(instance):
        raise ServingError(_INVALID, "Expecting value/list but got object at "
                           f"item {i} of input list")
      try:
        add(next(iter(dtypes)), instance)
      except ServingError as e:
        raise ServingError(
            _INVALID, f"Failed to process element: {i} of 'instances' list. "
            f"Error: {_status_text(e)}") from None
  return {name: _tensor_proto(dtypes[name], [len(instances)] + shapes[name],
                              values[name]) for name in shapes}


def _tensors_from_inputs(inputs, dtypes: dict[str, int]) -> dict:
  """Columnar format: one value per input, or the value of the only input."""

  def tensor(name, value):
    shape, out = _dense_shape(value), []
    _fill_values(value, 0, shape, dtypes[name], out)
    return _tensor_proto(dtypes[name], shape, out)

  if not _is_named_object(inputs):
    if len(dtypes) > 1:
      raise ServingError(_INVALID, "inputs is a plain value/list, but "
                         "expecting an object as multiple input tensors "
                         "required as per tensorinfo_map")
    name = next(iter(dtypes))
    return {name: tensor(name, inputs)}
  tensors = {}
  for name in sorted(dtypes):
    if name not in inputs:
      raise ServingError(_INVALID, f"Missing named input: {name} in "
                         "'inputs' object.")
    tensors[name] = tensor(name, inputs[name])
  return tensors


# Predict: tensors to JSON.


def _string_json(value: bytes, as_bytes: bool):
  if not as_bytes:
    try:
      return value.decode("utf-8")
    except UnicodeDecodeError:
      pass  # JSON cannot hold raw bytes: base64, as for `*_bytes` outputs.
  return {"b64": base64.b64encode(value).decode("ascii")}


def _float32_json(value: float) -> float:
  # The shortest decimal that reads back as the same float32, as TF Serving
  # writes it (0.2, not 0.20000000298023224).
  return float(str(np.float32(value)))


def _tensor_json(name: str, proto):
  """A whole output tensor as (nested lists of) JSON values."""
  if proto.dtype not in _WRITABLE:
    raise ServingError(_INVALID, "Failed to write JSON value for tensor "
                       f"type: {_dtype_name(proto.dtype)}")
  array = tf.make_ndarray(proto)
  if proto.dtype in (types_pb2.DT_FLOAT, types_pb2.DT_HALF):
    return array.astype(np.float32).astype(str).astype(np.float64).tolist()
  if proto.dtype == types_pb2.DT_STRING:
    # As TF Serving, outputs named `*_bytes` are always base64.
    as_bytes = name.endswith("_bytes")
    flat = np.empty(array.size, dtype=object)
    flat[:] = [_string_json(v, as_bytes) for v in array.reshape(-1)]
    return flat.reshape(array.shape).tolist()
  return array.tolist()


def predictions_json(outputs) -> list:
  """Row format (the answer to `instances`): `predictions` of Predict outputs.

  Args:
    outputs: TensorProtos by alias, sharing their first (batch) dimension.

  Returns:
    One entry per instance: the value of the only output, or a dict of
    values by alias.

  Raises:
    ServingError: for a scalar output or inconsistent batch sizes.
  """
  batch = None
  for name in sorted(outputs):
    dims = outputs[name].tensor_shape.dim
    if not dims:
      raise ServingError(_INVALID, f"Tensor name: {name} has no shape "
                         "information ")
    if dims[0].size < 1:
      raise ServingError(_INVALID, f"Tensor name: {name} has invalid batch "
                         f"size: {dims[0].size}")
    if batch is not None and dims[0].size != batch:
      raise ServingError(_INVALID, f"Tensor name: {name} has inconsistent "
                         f"batch size: {dims[0].size} expecting: {batch}")
    batch = dims[0].size
  values = {name: _tensor_json(name, outputs[name]) for name in sorted(outputs)}
  if len(values) == 1:
    return next(iter(values.values()))
  return [{name: value[i] for name, value in values.items()}
          for i in range(batch)]


def outputs_json(outputs):
  """Columnar format (the answer to `inputs`): `outputs` of Predict outputs.

  Args:
    outputs: TensorProtos by alias.

  Returns:
    The only output's value (nested lists), or a dict of values by alias.
  """
  values = {name: _tensor_json(name, outputs[name]) for name in sorted(outputs)}
  if len(values) == 1:
    return next(iter(values.values()))
  return values


def _predict(models, route: _Route, body: bytes):
  doc = _parse_json(body)
  request = predict_pb2.PredictRequest()
  _fill_spec(request.model_spec, route)
  _fill_signature(doc, request.model_spec)
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
  if "instances" in doc:
    if "inputs" in doc:
      raise _format_error(doc, "Not formatted correctly expecting only one "
                          "of 'inputs' or 'instances' keys to exist ")
    instances = doc["instances"]
    if not isinstance(instances, list):
      raise _format_error(doc, "Excepting 'instances' to be an list/array")
    if not instances:
      raise _format_error(doc, "No values in 'instances' array")
    tensors = _tensors_from_instances(instances, dtypes)
  elif "inputs" in doc:
    tensors = _tensors_from_inputs(doc["inputs"], dtypes)
  else:
    raise ServingError(_INVALID, "Missing 'inputs' or 'instances' key")
  for name, tensor in tensors.items():
    request.inputs[name].CopyFrom(tensor)
  response, version, signature = services.handle_predict(models, request)
  if not response.outputs:
    raise ServingError(_INVALID, "Cannot convert empty tensor map to JSON")
  if "instances" in doc:
    answer = {"predictions": predictions_json(response.outputs)}
  else:
    answer = {"outputs": outputs_json(response.outputs)}
  return answer, version, signature


# Classify and Regress: JSON to tf.Examples, results to JSON.


def _add_feature_value(value, name: str, feature) -> None:
  """Appends one JSON value to a Feature, as TF Serving's AddValueToFeature."""
  kind = feature.WhichOneof("kind")

  def check(wanted):
    if kind is not None and kind != wanted:
      raise ServingError(_INVALID, "Unexpected element type in feature: "
                         f"{name} expecting type: {_FEATURE_KINDS[kind]}")

  if value is None or isinstance(value, list) or (
      isinstance(value, dict) and not _is_b64(value)):
    raise ServingError(_INVALID, f"Feature: {name} has element with "
                       f"unexpected JSON type: {_json_type(value)}")
  if isinstance(value, bool):
    check("int64_list")
    feature.int64_list.value.append(int(value))
  elif isinstance(value, dict):
    check("bytes_list")
    feature.bytes_list.value.append(_decode_b64(value))
  elif isinstance(value, str):
    check("bytes_list")
    feature.bytes_list.value.append(_utf8(value))
  elif isinstance(value, float) or not -2**63 <= value < 2**64:
    # Integers beyond 64 bits parse as doubles in TF Serving's JSON parser.
    check("float_list")
    if not _is_lossless(value, "float"):
      raise _lossy_error(value, "float")
    feature.float_list.value.append(float(value))
  else:
    check("int64_list")
    if value > _INT64_MAX:
      raise ServingError(_INVALID, f"Feature: {name} has uint64 element. "
                         "Only int64 is supported.")
    feature.int64_list.value.append(value)


def _fill_example(value, example) -> None:
  if not isinstance(value, dict):
    raise ServingError(_INVALID, "Example must be JSON object but got JSON "
                       f"{_json_type(value)}")
  for name, content in value.items():
    feature = example.features.feature[name]
    feature.Clear()
    for item in content if isinstance(content, list) else [content]:
      _add_feature_value(item, name, feature)


def _fill_examples(doc: dict, request) -> None:
  """The `context` and `examples` of a classify or regress body."""
  _fill_signature(doc, request.model_spec)
  has_context = "context" in doc
  if has_context:
    _fill_example(doc["context"],
                  request.input.example_list_with_context.context)
  if "examples" not in doc:
    raise _format_error(doc, "When method is classify, key 'examples' is "
                        "expected and was not found")
  examples = doc["examples"]
  if not isinstance(examples, list):
    raise _format_error(doc, "Expecting 'examples' value to be an list/array")
  if not examples:
    raise _format_error(doc, "'examples' value is an empty array")
  for value in examples:
    _fill_example(value, (
        request.input.example_list_with_context.examples.add() if has_context
        else request.input.example_list.examples.add()))


def _classify(models, route: _Route, body: bytes):
  doc = _parse_json(body)
  request = classification_pb2.ClassificationRequest()
  _fill_spec(request.model_spec, route)
  _fill_examples(doc, request)
  response, version, signature = services.handle_classify(models, request)
  if not response.result.classifications:
    raise ServingError(_INVALID, "Cannot convert empty "
                       "ClassificationResults to JSON")
  results = [[[c.label, _float32_json(c.score)] for c in row.classes]
             for row in response.result.classifications]
  return {"results": results}, version, signature


def _regress(models, route: _Route, body: bytes):
  doc = _parse_json(body)
  request = regression_pb2.RegressionRequest()
  _fill_spec(request.model_spec, route)
  _fill_examples(doc, request)
  response, version, signature = services.handle_regress(models, request)
  if not response.result.regressions:
    raise ServingError(_INVALID, "Cannot convert empty RegressionResults to "
                       "JSON")
  results = [_float32_json(r.value) for r in response.result.regressions]
  return {"results": results}, version, signature


# Status and metadata: the gRPC responses as protobuf's JSON.


def _proto_json(message) -> dict:
  return json_format.MessageToDict(message,
                                   always_print_fields_with_no_presence=True,
                                   preserving_proto_field_name=True)


def _status(models, route: _Route, body: bytes):
  del body
  request = get_model_status_pb2.GetModelStatusRequest()
  _fill_spec(request.model_spec, route)
  response = services.model_status(models, request)
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
  if not _API_PATH.fullmatch(path):
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
    reply.body, reply.version, reply.signature = _HANDLERS[route.method](
        models, route, body)
  except ServingError as e:
    reply.code, reply.body = e.code, {"error": e.message}
  except Exception as e:  # pylint: disable=broad-except
    _LOG.exception("unexpected failure in %s %s", http_method, path)
    error = ServingError(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
    reply.code, reply.body = error.code, {"error": error.message}
  reply.status = http_status(reply.code)
  return reply


# The HTTP server.


class _BodyError(Exception):

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status
    self.message = message


class _Handler(http.server.BaseHTTPRequestHandler):
  """One connection: requests are read, answered by `process`, and logged."""

  protocol_version = "HTTP/1.1"  # Keep-alive: every reply has a length.
  server_version = "tf_resnet-serving"
  timeout = 120  # Seconds a connection may stay silent.

  def _read_exactly(self, size: int) -> bytes:
    data = self.rfile.read(size)
    if len(data) != size:
      raise _BodyError(400, "Request body ended early")
    return data

  def _read_body(self) -> bytes:
    limit = self.server.max_body_bytes
    if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
      chunks, total = [], 0
      while True:
        line = self.rfile.readline(1024).split(b";")[0].strip()
        try:
          size = int(line, 16)
        except ValueError:
          raise _BodyError(400, "Malformed chunked request body") from None
        if size == 0:
          while self.rfile.readline(1024).strip():
            pass  # Trailers.
          break
        total += size
        if total > limit:
          raise _BodyError(413, f"Request body exceeds {limit} bytes")
        chunks.append(self._read_exactly(size))
        self._read_exactly(2)
      body = b"".join(chunks)
    else:
      try:
        size = int(self.headers.get("Content-Length") or 0)
      except ValueError:
        size = -1
      if size < 0:
        raise _BodyError(400, "Malformed Content-Length")
      if size > limit:
        raise _BodyError(413, f"Request body of {size} bytes exceeds "
                         f"{limit} bytes")
      body = self._read_exactly(size)
    if self.headers.get("Content-Encoding", "").lower() == "gzip":
      try:
        with gzip.GzipFile(fileobj=io.BytesIO(body)) as f:
          body = f.read(limit + 1)
      except (OSError, EOFError) as e:
        raise _BodyError(400, f"Cannot gunzip the request body: {e}") from None
      if len(body) > limit:
        raise _BodyError(413, f"Request body exceeds {limit} bytes")
    return body

  def _send_json(self, status: int, body: dict, close: bool) -> None:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8", "replace")
    self.send_response(status)
    self.send_header("Content-Type", "application/json")
    self.send_header("Content-Length", str(len(data)))
    if close:
      self.send_header("Connection", "close")
      self.close_connection = True
    self.end_headers()
    self.wfile.write(data)

  def _serve(self) -> None:
    began = time.perf_counter()
    server = self.server
    server.begin_request()
    try:
      path = self.path.split("?", 1)[0].split("#", 1)[0]
      try:
        body = self._read_body()
      except _BodyError as e:
        reply = Reply(e.status, {"error": e.message},
                      grpc.StatusCode.INVALID_ARGUMENT)
        self._send_json(reply.status, reply.body, close=True)
      else:
        reply = process(server.models, self.command, path, body)
        self._send_json(reply.status, reply.body, close=server.stopping)
      if server.log_requests:
        _LOG.info("method=REST:%s model=%s version=%s signature=%s status=%s "
                  "http=%d latency_ms=%.1f", reply.method or path,
                  reply.model, reply.version, reply.signature,
                  reply.code.name, reply.status,
                  1000 * (time.perf_counter() - began))
    finally:
      server.end_request()

  # pylint: disable=invalid-name
  do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve
  # pylint: enable=invalid-name

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    del format, args  # Requests are logged by _serve, like the gRPC ones.


class _HttpServer(http.server.ThreadingHTTPServer):
  """ThreadingHTTPServer that counts requests in flight, for draining."""

  daemon_threads = True

  def __init__(self, address, models, log_requests: bool,
               max_body_bytes: int):
    self.models = models
    self.log_requests = log_requests
    self.max_body_bytes = max_body_bytes
    self.stopping = False
    self._active = 0
    self._idle = threading.Condition()
    super().__init__(address, _Handler)

  def server_bind(self):
    # HTTPServer's own server_bind looks the host up in DNS: not needed.
    socketserver.TCPServer.server_bind(self)
    self.server_name, self.server_port = self.server_address[:2]

  def begin_request(self) -> None:
    with self._idle:
      self._active += 1

  def end_request(self) -> None:
    with self._idle:
      self._active -= 1
      self._idle.notify_all()

  def wait_idle(self, timeout: Optional[float]) -> bool:
    with self._idle:
      return self._idle.wait_for(lambda: self._active == 0, timeout)

  def handle_error(self, request, client_address):
    _LOG.debug("REST connection from %s failed", client_address,
               exc_info=True)


class _HttpServer6(_HttpServer):
  address_family = socket.AF_INET6


class RestServer:
  """TF Serving's REST API on a port, served by background threads."""

  def __init__(self, models: manager_lib.ModelManager, *, port: int = 0,
               bind_address: str = "127.0.0.1", log_requests: bool = True,
               max_body_bytes: int = 256 * 1024 * 1024):
    """Binds the port and starts serving.

    Args:
      models: the served models.
      port: the REST port; 0 picks a free one (see `self.port`).
      bind_address: the address to listen on (IPv4, IPv6 or a host name).
      log_requests: one log line per request.
      max_body_bytes: largest request body (after gunzip); larger ones get
        HTTP 413.

    Raises:
      RuntimeError: if the port cannot be bound.
    """
    host = bind_address.strip("[]")
    server_class = _HttpServer6 if ":" in host else _HttpServer
    try:
      self._httpd = server_class((host, port), models, log_requests,
                                 max_body_bytes)
    except OSError as e:
      raise RuntimeError(f"cannot listen on {bind_address}:{port} for the "
                         f"REST API: {e}") from e
    self.port = self._httpd.server_address[1]
    self._thread = threading.Thread(target=self._httpd.serve_forever,
                                    kwargs={"poll_interval": 0.1},
                                    name="rest-server", daemon=True)
    self._thread.start()

  def stop(self, grace: Optional[float] = 5.0) -> None:
    """Stops accepting connections and lets requests in flight finish.

    Args:
      grace: seconds to wait for requests in flight; None: do not wait.
    """
    self._httpd.stopping = True
    self._httpd.shutdown()
    self._thread.join()
    if grace is not None:
      self._httpd.wait_idle(grace)
    self._httpd.server_close()
