"""TF Serving's JSON tensor codec (tensorflow_serving/util/json_tensor.cc).

Request bodies to TensorProtos and tf.Examples, and Predict outputs,
classifications and regressions back to JSON, with TF Serving's formats and
error wording:

  - Predict: `instances` (row format: instance i is slice i of every input)
    or `inputs` (columnar); binary values as `{"b64": "..."}`.
  - Classify and Regress: `examples` (+ `context`) as tf.Examples, a feature's
    kind taken from its JSON values.

The body is scanned by `json_parser` (dense numeric arrays stay text until
their input's dtype is known, then numpy converts them); answers are written
by `json_writer` (tensors as JSON text, TF Serving's float formatting).

Longer than the serving package's other modules (about 700 lines): it is
TF Serving's json_tensor.cc (1,142 lines of C++) less the scanner and the
number writer, and most of it is that file's error texts, each reached the
way json_tensor.cc reaches it.
"""

import base64
import binascii
import json
import math
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2  # pylint: disable=g-direct-tensorflow-import
from tensorflow.core.framework import types_pb2  # pylint: disable=g-direct-tensorflow-import

from tf_resnet.serving import errors
from tf_resnet.serving import json_parser
from tf_resnet.serving import json_writer

ServingError = errors.ServingError
_INVALID = grpc.StatusCode.INVALID_ARGUMENT
NumericArray = json_parser.NumericArray
Document = json_parser.Document
# TF Serving's kMaxJsonDebugStringBytes: JSON quoted in error messages.
_MAX_DEBUG_BYTES = 256
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -2**63, 2**63 - 1, 2**64 - 1
_NUMBER_POINT = frozenset(".eE")

# Integer dtypes: the JSON integers each accepts (rapidjson's IsInt,
# IsInt64, IsUint, IsUint64, as TF Serving checks them).
_INT_RANGES = {
    types_pb2.DT_INT32: (-2**31, 2**31 - 1),
    types_pb2.DT_INT16: (-2**31, 2**31 - 1),
    types_pb2.DT_INT8: (-2**31, 2**31 - 1),
    types_pb2.DT_UINT8: (-2**31, 2**31 - 1),
    types_pb2.DT_INT64: (_INT64_MIN, _INT64_MAX),
    types_pb2.DT_UINT32: (0, 2**32 - 1),
    types_pb2.DT_UINT64: (0, _UINT64_MAX),
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
# Dtypes a dense numeric array converts to directly: the numpy type and the
# values the slow path would store unchanged (else it takes the slow path,
# which gives TF Serving's answer for odd values).
_NUMPY_TYPES = {
    types_pb2.DT_FLOAT: np.float32,
    types_pb2.DT_DOUBLE: np.float64,
    types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT16: np.int16,
    types_pb2.DT_INT8: np.int8,
    types_pb2.DT_UINT8: np.uint8,
    types_pb2.DT_INT64: np.int64,
    types_pb2.DT_UINT32: np.uint32,
    types_pb2.DT_UINT64: np.uint64,
}
# Output dtypes TF Serving writes as JSON.
_WRITABLE = set(_VALUE_FIELDS) | {types_pb2.DT_HALF}
_FEATURE_KINDS = {"bytes_list": "bytes", "float_list": "float",
                  "int64_list": "int64"}


def parse(body: bytes,
          max_values: int = json_parser.DEFAULT_MAX_VALUES) -> Document:
  """The request's top-level JSON object, or TF Serving's error (ParseJson).

  Args:
    body: the request body (UTF-8 JSON).
    max_values: most values built as Python objects (dense numeric arrays
      count once).

  Returns:
    The parsed document, whose root is a dict.

  Raises:
    ServingError: INVALID_ARGUMENT with TF Serving's wording.
  """
  doc = json_parser.parse(body, max_values)
  if not isinstance(doc.root, dict):
    raise format_error(doc.root, "Is not object")
  return doc


def _to_numpy(array: NumericArray, dtype: int):
  """A dense array in `dtype`, or None: the general path decides."""
  numpy_type = _NUMPY_TYPES.get(dtype)
  return None if numpy_type is None else array.to_numpy(numpy_type)


# JSON values as TF Serving's messages show them.


def json_type(value) -> str:
  """rapidjson's type name of a value: Null, True, False, Object, ..."""
  if value is None:
    return "Null"
  if value is True:
    return "True"
  if value is False:
    return "False"
  if isinstance(value, dict):
    return "Object"
  if isinstance(value, (list, NumericArray)):
    return "Array"
  if isinstance(value, str):
    return "String"
  return "Number"


def _number_text(value) -> str:
  if isinstance(value, int):
    return str(value)
  if math.isnan(value):
    return "NaN"
  if math.isinf(value):
    return "Infinity" if value > 0 else "-Infinity"
  text = repr(value)
  if "e" in text:  # rapidjson: 1e30, 1.5e-7 (Python: 1e+30, 1.5e-07).
    mantissa, exponent = text.split("e")
    text = f"{mantissa}e{int(exponent)}"
  return text


def debug_string(value) -> str:
  """TF Serving's JsonValueToDebugString: pretty, arrays on one line, cut.

  Like its JsonWriterWithLimit, nothing more is written once 256 bytes are.
  """
  out, size = [], [0]

  def put(piece: str) -> bool:
    if size[0] >= _MAX_DEBUG_BYTES:
      return False
    out.append(piece)
    size[0] += len(json_parser.encode(piece))
    return True

  def write(item, depth: int) -> bool:
    if isinstance(item, dict):
      if not put("{"):
        return False
      for i, (key, member) in enumerate(item.items()):
        if not (put(("," if i else "") + "\n" + "    " * (depth + 1)
                    + json.dumps(key, ensure_ascii=False) + ": ")
                and write(member, depth + 1)):
          return False
      return put(("\n" + "    " * depth if item else "") + "}")
    if isinstance(item, NumericArray):
      previous = "["
      for token in item.tokens():
        if token in "[]":
          text = token
        else:
          number = (float(token) if _NUMBER_POINT.intersection(token)
                    else int(token))
          text = _number_text(number)
        if previous not in "[" and token != "]":
          text = ", " + text
        if not put(text):
          return False
        previous = token
      return True
    if isinstance(item, list):
      if not put("["):
        return False
      for i, element in enumerate(item):
        if (i and not put(", ")) or not write(element, depth + 1):
          return False
      return put("]")
    if item is None:
      return put("null")
    if isinstance(item, bool):
      return put("true" if item else "false")
    if isinstance(item, str):
      return put(json.dumps(item, ensure_ascii=False))
    return put(_number_text(item))

  write(value, 0)
  return "".join(out)


def format_error(value, *parts) -> ServingError:
  """TF Serving's FormatError: `JSON Value: <value> <parts>`."""
  return ServingError(_INVALID,
                      f"JSON Value: {debug_string(value)} {''.join(parts)}")


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
      _INVALID, f"JSON Value: {debug_string(value)} Type: {json_type(value)} "
      f"is not of expected type: {_dtype_name(dtype)}")


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _utf8(text: str) -> bytes:
  return json_parser.encode(text)


def is_b64(value) -> bool:
  """Whether a value is TF Serving's `{"b64": "..."}` binary object."""
  return (isinstance(value, dict) and len(value) == 1
          and isinstance(value.get("b64"), str))


def _decode_b64(value) -> bytes:
  """The bytes of a `{"b64": "..."}` object."""
  if not is_b64(value):
    raise ServingError(_INVALID, f"JSON Value: {debug_string(value)} not "
                       "formatted correctly for base64 data")
  text = value["b64"]
  try:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
  except (binascii.Error, ValueError):
    raise ServingError(_INVALID, "Unable to base64 decode") from None


def fill_signature(doc: Document, spec) -> None:
  """Sets `spec.signature_name` from the body's `signature_name`, if any."""
  root = doc.root
  if "signature_name" in root:
    if not isinstance(root["signature_name"], str):
      raise format_error(root, "not formatted correctly. 'signature_name' "
                         "key must be a string value.")
    spec.signature_name = root["signature_name"]


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
    # As TF Serving since 2021, any number converts, integers included
    # (rapidjson's GetFloat/GetDouble), without a lossless check.
    if not _is_number(value):
      raise _type_error(value, dtype)
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
                     f"Conversion of JSON Value: {debug_string(value)} to "
                     f"type: {_dtype_name(dtype)}")


def _fill_values(value, level: int, shape: list[int], dtype: int,
                 out: list) -> None:
  """Appends the leaves of a dense nested list to `out`, checking its shape."""
  rank = len(shape)
  if not isinstance(value, list):
    if level != rank:
      raise ServingError(
          _INVALID, f"JSON Value: {debug_string(value)} found at incorrect "
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


class _Values:
  """The values of one tensor, as numpy pieces or typed-field values."""

  def __init__(self, dtype: int):
    self.dtype = dtype
    self.pieces: list = []  # np.ndarray (fast) or list (general path).

  def add(self, value, doc: Document) -> tuple[list[int], int]:
    """Adds a JSON value's leaves; returns its shape and value count."""
    if isinstance(value, NumericArray):
      array = _to_numpy(value, self.dtype)
      if array is not None:
        self.pieces.append(array)
        return list(value.shape), array.size
      value = doc.general(value)
    shape, out = _dense_shape(value), []
    _fill_values(value, 0, shape, self.dtype, out)
    self.pieces.append(out)
    return shape, len(out)

  def proto(self, shape: list[int]) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=self.dtype)
    for size in shape:
      proto.tensor_shape.dim.add(size=size)
    if all(isinstance(p, np.ndarray) for p in self.pieces):
      if self.pieces:
        # Packed bytes: no Python object per value, as TF Serving's own
        # tensor_content (tf.make_ndarray reads both forms).
        proto.tensor_content = b"".join(
            np.ascontiguousarray(p).tobytes() for p in self.pieces)
      self.pieces = []  # The proto has the values now.
      return proto
    field = getattr(proto, _VALUE_FIELDS[self.dtype])
    for piece in self.pieces:
      field.extend(piece.reshape(-1).tolist() if isinstance(piece, np.ndarray)
                   else piece)
    return proto


def _is_named_object(value) -> bool:
  return isinstance(value, dict) and not is_b64(value)


def _status_text(error: ServingError) -> str:
  return f"{error.code.name}: {error.message}"


def _tensors_from_instances(instances, dtypes: dict[str, int],
                            doc: Document) -> dict:
  """Row format: instance i is slice i of every input (a new first axis)."""
  if isinstance(instances, NumericArray) and len(dtypes) == 1:
    # One dense array: all instances at once, shape [N, ...].
    name = next(iter(dtypes))
    values = _Values(dtypes[name])
    array = _to_numpy(instances, dtypes[name])
    if array is not None:
      values.pieces.append(array)
      return {name: values.proto(instances.shape)}
  instances = doc.general(instances)
  named = _is_named_object(instances[0])
  if not named and len(dtypes) > 1:
    raise ServingError(_INVALID, "instances is a plain list, but expecting "
                       "list of objects as multiple input tensors required "
                       "as per tensorinfo_map")
  values = {name: _Values(dtype) for name, dtype in dtypes.items()}
  shapes, sizes = {}, {}

  def add(name, item):
    if name not in dtypes:
      raise ServingError(_INVALID, "JSON object: does not have named input: "
                         f"{name}")
    shape, size = values[name].add(item, doc)
    if name not in sizes:
      sizes[name], shapes[name] = size, shape
    elif sizes[name] != size:
      raise ServingError(_INVALID, f"Expecting tensor size: {sizes[name]} "
                         f"but got: {size}")
    elif shapes[name] != shape:
      raise ServingError(
          _INVALID, f"Expecting shape [{','.join(map(str, shapes[name]))}] "
          f"but got: [{','.join(map(str, shape))}]")

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
            f"JSON object: {debug_string(instance)} keys must be equal to: "
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
  return {name: values[name].proto([len(instances)] + shapes[name])
          for name in shapes}


def _tensors_from_inputs(inputs, dtypes: dict[str, int],
                         doc: Document) -> dict:
  """Columnar format: one value per input, or the value of the only input."""

  def tensor(name, value):
    values = _Values(dtypes[name])
    shape, _ = values.add(value, doc)
    return values.proto(shape)

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


def predict_tensors(doc: Document, dtypes: dict[str, int]
                    ) -> tuple[dict[str, tensor_pb2.TensorProto], bool]:
  """TF Serving's FillPredictRequestFromJson, after the signature is known.

  Args:
    doc: the parsed body.
    dtypes: the signature's input dtypes by alias.

  Returns:
    The input tensors by alias, and whether the body was in row format
    (`instances`; the answer is then `predictions`, else `outputs`).

  Raises:
    ServingError: INVALID_ARGUMENT with TF Serving's wording.
  """
  root = doc.root
  if "instances" in root:
    if "inputs" in root:
      raise format_error(root, "Not formatted correctly expecting only one of "
                         "'inputs' or 'instances' keys to exist ")
    instances = root["instances"]
    if not isinstance(instances, (list, NumericArray)):
      raise format_error(root, "Expecting 'instances' to be an list/array")
    if not len(instances):  # pylint: disable=g-explicit-length-test
      raise format_error(root, "No values in 'instances' array")
    return _tensors_from_instances(instances, dtypes, doc), True
  if "inputs" in root:
    return _tensors_from_inputs(root["inputs"], dtypes, doc), False
  raise ServingError(_INVALID, "Missing 'inputs' or 'instances' key")


# Classify and Regress: JSON to tf.Examples.


def _add_feature_value(value, name: str, feature) -> None:
  """Appends one JSON value to a Feature, as TF Serving's AddValueToFeature."""
  kind = feature.WhichOneof("kind")

  def check(wanted):
    if kind is not None and kind != wanted:
      raise ServingError(_INVALID, "Unexpected element type in feature: "
                         f"{name} expecting type: {_FEATURE_KINDS[kind]}")

  if value is None or isinstance(value, list) or (
      isinstance(value, dict) and not is_b64(value)):
    raise ServingError(_INVALID, f"Feature: {name} has element with "
                       f"unexpected JSON type: {json_type(value)}")
  if isinstance(value, bool):
    check("int64_list")
    feature.int64_list.value.append(int(value))
  elif isinstance(value, dict):
    check("bytes_list")
    feature.bytes_list.value.append(_decode_b64(value))
  elif isinstance(value, str):
    check("bytes_list")
    feature.bytes_list.value.append(_utf8(value))
  elif isinstance(value, float):
    check("float_list")
    feature.float_list.value.append(value)
  else:
    check("int64_list")
    if value > _INT64_MAX:
      raise ServingError(_INVALID, f"Feature: {name} has uint64_t element. "
                         "Only int64_t is supported.")
    feature.int64_list.value.append(value)


def _fill_example(value, example, doc: Document) -> None:
  if not isinstance(value, dict):
    raise ServingError(_INVALID, "Example must be JSON object but got JSON "
                       f"{json_type(value)}")
  for name, content in value.items():
    feature = example.features.feature[name]
    feature.Clear()
    content = doc.general(content)
    for item in content if isinstance(content, list) else [content]:
      _add_feature_value(item, name, feature)


def fill_examples(doc: Document, request) -> None:
  """The `signature_name`, `context` and `examples` of a classify body.

  Args:
    doc: the parsed body.
    request: a ClassificationRequest or RegressionRequest to fill.

  Raises:
    ServingError: INVALID_ARGUMENT with TF Serving's wording.
  """
  root = doc.root
  fill_signature(doc, request.model_spec)
  has_context = "context" in root
  if has_context:
    _fill_example(root["context"],
                  request.input.example_list_with_context.context, doc)
  if "examples" not in root:
    raise format_error(root, "When method is classify, key 'examples' is "
                       "expected and was not found")
  examples = doc.general(root["examples"])
  if not isinstance(examples, list):
    raise format_error(root, "Expecting 'examples' value to be an list/array")
  if not examples:
    raise format_error(root, "'examples' value is an empty array")
  for value in examples:
    _fill_example(value, (
        request.input.example_list_with_context.examples.add() if has_context
        else request.input.example_list.examples.add()), doc)


# Predict outputs, classifications and regressions to JSON.


def _string_json(value: bytes, as_bytes: bool):
  if not as_bytes:
    try:
      return value.decode("utf-8")
    except UnicodeDecodeError:
      pass  # JSON cannot hold raw bytes: base64, as for `*_bytes` outputs.
  return {"b64": base64.b64encode(value).decode("ascii")}


def _float32_json(value: float) -> json_writer.RawJson:
  """A float32 field as TF Serving writes it (`0.2`, not 0.200000003)."""
  return json_writer.RawJson(
      json_writer.decimal_text(np.float32(value)).encode())


def _tensor_json(name: str, proto):
  """A whole output tensor as JSON: text for numbers, lists for strings."""
  if proto.dtype not in _WRITABLE:
    raise ServingError(_INVALID, "Failed to write JSON value for tensor "
                       f"type: {_dtype_name(proto.dtype)}")
  array = tf.make_ndarray(proto)
  if proto.dtype == types_pb2.DT_STRING:
    # As TF Serving, outputs named `*_bytes` are always base64.
    as_bytes = name.endswith("_bytes")
    flat = np.empty(array.size, dtype=object)
    flat[:] = [_string_json(v, as_bytes) for v in array.reshape(-1)]
    return flat.reshape(array.shape).tolist()
  if proto.dtype == types_pb2.DT_HALF:
    array = array.astype(np.float32)
  return array


def _rows(array, batch: int) -> list:
  if isinstance(array, np.ndarray):
    return [json_writer.array_json(array[i]) for i in range(batch)]
  return array


def _whole(array):
  if isinstance(array, np.ndarray):
    return json_writer.array_json(array)
  return array


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
    return _whole(next(iter(values.values())))
  rows = {name: _rows(value, batch) for name, value in values.items()}
  return [{name: row[i] for name, row in rows.items()} for i in range(batch)]


def outputs_json(outputs) -> Any:
  """Columnar format (the answer to `inputs`): `outputs` of Predict outputs.

  Args:
    outputs: TensorProtos by alias.

  Returns:
    The only output's value (nested lists), or a dict of values by alias.
  """
  values = {name: _whole(_tensor_json(name, outputs[name]))
            for name in sorted(outputs)}
  if len(values) == 1:
    return next(iter(values.values()))
  return values


def classification_json(result) -> dict:
  """TF Serving's MakeJsonFromClassificationResult: [label, score] lists."""
  if not result.classifications:
    raise ServingError(_INVALID, "Cannot convert empty "
                       "ClassificationResults to JSON")
  return {"results": [[[c.label, _float32_json(c.score)] for c in row.classes]
                      for row in result.classifications]}


def regression_json(result) -> dict:
  """TF Serving's MakeJsonFromRegressionResult: `results` of values."""
  if not result.regressions:
    raise ServingError(_INVALID, "Cannot convert empty RegressionResults to "
                       "JSON")
  return {"results": [_float32_json(r.value) for r in result.regressions]}
