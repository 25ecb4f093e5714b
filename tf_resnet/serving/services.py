"""TensorFlow Serving's PredictionService over a `ModelManager`.

Classify, Regress, Predict, MultiInference and GetModelMetadata (ModelService
is in model_service.py; `add_to_server` registers both), with TF Serving's
status codes and message
wording (see ../shared/SERVING.md in the project's workspace, read from
tensorflow/serving's sources). A bad request fails only itself.
"""

import functools
import logging
import re
import time
from typing import Callable

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2  # pylint: disable=g-direct-tensorflow-import
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import inference_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
from tensorflow_serving.apis import regression_pb2

from tf_resnet.serving import deadline
from tf_resnet.serving import errors
from tf_resnet.serving import model_service

# The handlers take the model manager (`manager.ModelManager`) or anything
# with its `model(name).resolve(version=, label=)`: warm-up replays requests
# against one version that is not yet serving.
ServingError = errors.ServingError
_LOG = logging.getLogger("tf_resnet.serving.requests")
DEFAULT_SIGNATURE = "serving_default"
_INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _resolve(models, request_spec, has_spec: bool):
  if not has_spec:
    raise ServingError(_INVALID, "Missing ModelSpec")
  if not request_spec.name:
    raise ServingError(_INVALID, "ModelSpec has no name specified.")
  which = request_spec.WhichOneof("version_choice")
  model = models.model(request_spec.name)
  if which == "version":
    try:
      return model.resolve(version=request_spec.version.value)
    except ServingError as e:
      if e.code == grpc.StatusCode.NOT_FOUND:
        raise ServingError(e.code, "Servable not found for request: "
                           f"Specific({request_spec.name}, "
                           f"{request_spec.version.value})") from None
      raise
  if which == "version_label":
    return model.resolve(label=request_spec.version_label)
  return model.resolve()


def _echo(response_spec, request_spec, servable, signature: str) -> None:
  response_spec.name = request_spec.name
  response_spec.version.value = servable.version
  response_spec.signature_name = signature


_TYPED_FIELDS = {np.float32: "float_val", np.float64: "double_val",
                 np.int64: "int64_val", np.int32: "int_val",
                 np.uint8: "int_val", np.int8: "int_val", np.int16: "int_val",
                 np.bool_: "bool_val", np.float16: "half_val"}


def _typed_tensor_proto(value: np.ndarray):
  """A TensorProto with typed `*_val` fields (as TF Serving sends), not tensor_content."""
  field = _TYPED_FIELDS.get(value.dtype.type)
  if field is None:  # Strings: make_tensor_proto writes string_val.
    return tf.make_tensor_proto(value)
  proto = tf.make_tensor_proto(np.zeros([0], value.dtype))
  proto.tensor_shape.CopyFrom(tf.TensorShape(value.shape).as_proto())
  flat = value.reshape(-1)
  if field == "half_val":
    flat = flat.view(np.uint16)
  values = getattr(proto, field)
  # 64K values at a time: a whole-tensor tolist() holds a Python object per
  # value (8M floats: 260 MB) for the moment of the copy.
  for start in range(0, flat.size, 1 << 16):
    values.extend(flat[start:start + (1 << 16)].tolist())
  return proto


# TensorFlow's ParseExample kernel (core/util/example_proto_fast_parsing.cc):
# the serialized value that is not a tf.Example, in quotes.
PARSE_EXAMPLE_ERROR = "Could not parse example input, value: '"


def _undecodable(error: UnicodeDecodeError, inputs: dict[str, np.ndarray]
                 ) -> ServingError:
  """A runtime error whose text TensorFlow's Python API could not decode.

  A kernel's message that quotes input bytes (ParseExample's, given a JPEG)
  is not UTF-8, so TensorFlow raises UnicodeDecodeError instead of its
  error; its `object` holds the message's bytes up to the value's first NUL.
  The message is rebuilt from them and, when cut, the request's whole value
  (TF Serving's is the whole value; gRPC clients decode it with
  replacement characters, as done here).
  """
  raw = error.object if isinstance(error.object, bytes) else b""
  text = errors.tensorflow_message(raw.decode("utf-8", "replace"))
  _, found, value = text.partition(PARSE_EXAMPLE_ERROR)
  if found and not re.search(r"'(\n|$)", value):
    for array in inputs.values():
      if array.dtype != object:
        continue
      for item in array.reshape(-1):
        whole = (item.decode("utf-8", "replace") if isinstance(item, bytes)
                 else str(item))
        if whole.startswith(value):
          return ServingError(_INVALID, f"{PARSE_EXAMPLE_ERROR}{whole}'")
  return ServingError(_INVALID, text)


def _run(servable, signature: str, inputs: dict[str, np.ndarray]
         ) -> dict[str, np.ndarray]:
  """Runs a signature (through its batch queue when batching is on).

  Raises:
    ServingError: with TensorFlow's runtime error in the words of the C++
      server's Session::Run (`errors.tensorflow_message`).
  """
  deadline.check()  # A request whose deadline passed is not run.
  try:
    # A batched request waits in its queue no longer than its deadline.
    return servable.run(signature, inputs, timeout=deadline.remaining())
  except tf.errors.OpError as e:
    code = {tf.errors.InvalidArgumentError: _INVALID,
            tf.errors.FailedPreconditionError:
                grpc.StatusCode.FAILED_PRECONDITION,
            tf.errors.ResourceExhaustedError:
                grpc.StatusCode.RESOURCE_EXHAUSTED}.get(type(e),
                                                        grpc.StatusCode.INTERNAL)
    raise ServingError(code, errors.tensorflow_message(e.message)) from None
  except UnicodeDecodeError as e:
    raise _undecodable(e, inputs) from None
  except (TypeError, ValueError) as e:
    raise ServingError(_INVALID, str(e)) from None


def _examples(request_input) -> list[bytes]:
  kind = request_input.WhichOneof("kind")
  if kind == "example_list":
    examples = [e.SerializeToString()
                for e in request_input.example_list.examples]
  elif kind == "example_list_with_context":
    with_context = request_input.example_list_with_context
    context = with_context.context.SerializeToString()
    # Parsing concatenated serializations merges them: context, then example.
    examples = [context + e.SerializeToString()
                for e in with_context.examples]
  else:
    examples = []
  if not examples:
    raise ServingError(_INVALID, "Input is empty.")
  return examples


def _classification_signature(servable, name: str):
  signature = servable.signature_defs.get(name)
  if signature is None:
    raise ServingError(_INVALID, f"No signature was found with the name: {name}")
  if len(signature.inputs) != 1:
    raise ServingError(_INVALID, "Expected one input Tensor.")
  if len(signature.outputs) not in (1, 2):
    raise ServingError(_INVALID, "Expected one or two output Tensors, found "
                       f"{len(signature.outputs)}")
  if "inputs" not in signature.inputs:
    raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                       "No classification inputs found in SignatureDef: "
                       f"{signature}")
  if not set(signature.outputs) & {"classes", "scores"}:
    raise ServingError(
        grpc.StatusCode.FAILED_PRECONDITION,
        "Expected classification signature outputs to contain at least one "
        f'of "classes" or "scores". Signature was: {signature}')
  return signature


def _regression_signature(servable, name: str):
  signature = servable.signature_defs.get(name)
  if signature is None:
    raise ServingError(_INVALID, f"No signature was found with the name: {name}")
  if len(signature.inputs) != 1:
    raise ServingError(_INVALID, "Expected one input Tensor.")
  if len(signature.outputs) != 1:
    raise ServingError(_INVALID, "Expected one output Tensor.")
  if "inputs" not in signature.inputs:
    raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                       f"No regression inputs found in SignatureDef: {signature}")
  if "outputs" not in signature.outputs:
    raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                       f"No regression outputs found in SignatureDef: {signature}")
  return signature


def classify(servable, signature: str, examples: list[bytes]
             ) -> classification_pb2.ClassificationResult:
  """Runs a classify signature; one Classifications per example, in tensor order."""
  sig = _classification_signature(servable, signature)
  out = _run(servable, signature, {"inputs": np.array(examples, dtype=object)})
  classes, scores = out.get("classes"), out.get("scores")
  n = len(examples)
  for name, value in (("classes", classes), ("scores", scores)):
    if value is not None and (value.ndim != 2 or value.shape[0] != n):
      raise ServingError(_INVALID, f"Expected {name} output of shape "
                         f"[{n}, K], got {list(value.shape)}")
  del sig
  result = classification_pb2.ClassificationResult()
  k = (classes if classes is not None else scores).shape[1]
  for i in range(n):
    row = result.classifications.add()
    for j in range(k):
      entry = row.classes.add()
      if classes is not None:
        entry.label = classes[i, j].decode("utf-8", "replace")
      if scores is not None:
        entry.score = float(scores[i, j])
  return result


def regress(servable, signature: str, examples: list[bytes]
            ) -> regression_pb2.RegressionResult:
  """Runs a regress signature; one Regression per example."""
  _regression_signature(servable, signature)
  out = _run(servable, signature, {"inputs": np.array(examples, dtype=object)})
  values = out["outputs"].reshape(len(examples), -1)
  if values.shape[1] != 1:
    raise ServingError(_INVALID, "Expected output Tensor shape to be either "
                       f"[batch_size] or [batch_size, 1] but got "
                       f"{list(out['outputs'].shape)}")
  result = regression_pb2.RegressionResult()
  for v in values[:, 0]:
    result.regressions.add().value = float(v)
  return result


def _handle_examples(models, req, response, run):
  """Classify and Regress: resolve, run on the examples, echo the spec."""
  servable = _resolve(models, req.model_spec, req.HasField("model_spec"))
  signature = req.model_spec.signature_name or DEFAULT_SIGNATURE
  response.result.CopyFrom(run(servable, signature, _examples(req.input)))
  _echo(response.model_spec, req.model_spec, servable, signature)
  return response, servable.version, signature


def handle_classify(models, req):
  """Classify: (ClassificationResponse, version, signature), or ServingError."""
  return _handle_examples(models, req,
                          classification_pb2.ClassificationResponse(), classify)


def handle_regress(models, req):
  """Regress: (RegressionResponse, version, signature), or ServingError."""
  return _handle_examples(models, req, regression_pb2.RegressionResponse(),
                          regress)


def _predict_inputs(sig, req) -> dict[str, np.ndarray]:
  """The request's tensors by alias, checked as TF Serving checks them.

  VerifyRequestInputsSize (servables/tensorflow/predict_util.cc), then
  TensorFlow's saved_model::GetInputValues (tensorflow/cc/saved_model/
  util.cc), which TF Serving calls since 2.14: a signature input the request
  lacks takes the signature's default, or fails naming it. Signature inputs
  are visited in sorted order (a C++ proto map's order is unspecified).
  """
  sent, wanted = set(req.inputs), set(sig.inputs)
  defaults = set(sig.defaults)
  if len(sent) > len(wanted) or (len(sent) < len(wanted) and not defaults):
    raise ServingError(
        _INVALID, f"input size does not match signature: {len(sent)}!="
        f"{len(wanted)} len({{{','.join(sorted(sent))}}}) != "
        f"len({{{','.join(sorted(wanted))}}}). Sent extra: "
        f"{{{','.join(sorted(sent - wanted))}}}. Missing but required: "
        f"{{{','.join(sorted(wanted - sent))}}}.")
  inputs = {}
  for alias in sorted(wanted):
    if alias in req.inputs:
      proto = req.inputs[alias]
    elif alias in defaults:
      proto = sig.defaults[alias]
    else:
      raise ServingError(
          _INVALID, f"Signature input alias: {alias}(feed name: "
          f"{sig.inputs[alias].name}) not found in request and no default "
          "value provided. Inputs expected to be in the request "
          f"{{{','.join(sorted(sent))}}}, or default input alias set: "
          f"{','.join(sorted(defaults))}")
    try:
      inputs[alias] = tf.make_ndarray(proto)
    except Exception as e:  # pylint: disable=broad-except
      raise ServingError(_INVALID, f"tensor parsing error: {alias}") from e
  if sent - wanted:
    raise ServingError(
        _INVALID, "Inputs contains invalid name. Used request inputs: "
        f"{','.join(sorted(sent & wanted))}, request input: "
        f"{','.join(sorted(sent))}")
  return inputs


def _check_dtypes(sig, req, inputs: dict[str, np.ndarray]) -> None:
  """Session::Run's check of the fed types (TensorFlow's function.cc).

  FunctionCallFrame::SetArgs names the first argument, in the order of the
  sorted feed names, whose type is not the placeholder's.
  """
  for index, alias in enumerate(sorted(inputs,
                                       key=lambda a: sig.inputs[a].name)):
    expected = sig.inputs[alias].dtype
    got = (req.inputs[alias].dtype if alias in req.inputs
           else sig.defaults[alias].dtype)
    if got != expected:
      raise ServingError(_INVALID, errors.SET_ARGS.format(
          index=index, expected=_dtype_name(expected), got=_dtype_name(got)))


def _dtype_name(dtype: int) -> str:
  """TensorFlow's DataTypeString: DT_FLOAT -> float, DT_UINT8 -> uint8."""
  return types_pb2.DataType.Name(dtype)[len("DT_"):].lower()


def handle_predict(models, req):
  """Predict: (PredictResponse, version, signature), or ServingError."""
  servable = _resolve(models, req.model_spec,
                      req.HasField("model_spec"))
  signature = req.model_spec.signature_name or DEFAULT_SIGNATURE
  sig = servable.signature_defs.get(signature)
  if sig is None:
    raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                       f'Serving signature key "{signature}" not found.')
  inputs = _predict_inputs(sig, req)
  seen = set()
  for alias in req.output_filter:
    if alias not in sig.outputs:
      raise ServingError(
          _INVALID, f"output tensor alias not found in signature: {alias} "
          "Outputs expected to be in the set "
          f"{{{','.join(sorted(sig.outputs))}}}.")
    if alias in seen:
      raise ServingError(_INVALID, f"duplicate output tensor alias: {alias}")
    seen.add(alias)
  _check_dtypes(sig, req, inputs)
  outputs = _run(servable, signature, inputs)
  keep = list(req.output_filter) or list(outputs)
  response = predict_pb2.PredictResponse()
  for alias in keep:
    response.outputs[alias].CopyFrom(
        _typed_tensor_proto(np.asarray(outputs[alias])))
  _echo(response.model_spec, req.model_spec, servable, signature)
  return response, servable.version, signature


def handle_multi_inference(models, req):
  """MultiInference: (MultiInferenceResponse, version, signatures), or ServingError."""
  if not req.tasks:
    raise ServingError(_INVALID, "Tasks is empty")
  examples = _examples(req.input)
  first = req.tasks[0].model_spec
  response = inference_pb2.MultiInferenceResponse()
  servable = None
  signatures = set()
  for task in req.tasks:
    spec = task.model_spec
    if spec.name != first.name or spec.version != first.version:
      raise ServingError(_INVALID, "Input tensor must be the same for "
                         "all tasks; all tasks must use the same model "
                         "name and version")
    signature = spec.signature_name or DEFAULT_SIGNATURE
    if signature in signatures:
      raise ServingError(_INVALID, "Duplicate evaluation of signature: "
                         f"{signature}")
    signatures.add(signature)
    servable = _resolve(models, spec, task.HasField("model_spec"))
    result = response.results.add()
    if task.method_name == "tensorflow/serving/classify":
      result.classification_result.CopyFrom(
          classify(servable, signature, examples))
    elif task.method_name == "tensorflow/serving/regress":
      result.regression_result.CopyFrom(
          regress(servable, signature, examples))
    else:
      raise ServingError(_INVALID, "Unsupported signature method_name: "
                         f"{task.method_name}")
    _echo(result.model_spec, spec, servable, signature)
  return response, servable.version, ",".join(sorted(signatures))


def handle_metadata(models, req):
  """GetModelMetadata: (GetModelMetadataResponse, version, None), or ServingError."""
  if not req.HasField("model_spec"):
    raise ServingError(_INVALID, "Missing ModelSpec")
  if not req.metadata_field:
    raise ServingError(_INVALID, "GetModelMetadataRequest must specify "
                       "at least one metadata_field")
  for field in req.metadata_field:
    if field != "signature_def":
      raise ServingError(_INVALID,
                         f"Metadata field {field} is not supported")
  servable = _resolve(models, req.model_spec, True)
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  for key, value in servable.signature_defs.items():
    signature_map.signature_def[key].CopyFrom(value)
  response = get_model_metadata_pb2.GetModelMetadataResponse()
  response.model_spec.name = req.model_spec.name
  response.model_spec.version.value = servable.version
  response.metadata["signature_def"].Pack(signature_map)
  return response, servable.version, None


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
  """Classify, Regress, Predict, MultiInference and GetModelMetadata."""

  def __init__(self, models,
               log_requests: bool = True):
    self._models = models
    self._log = log_requests

  def _serve(self, method: str, request, context, body: Callable):
    began = time.perf_counter()
    status, version, signature = grpc.StatusCode.OK, None, None
    try:
      response, version, signature = body(request)
      return response
    except ServingError as e:
      status = e.code
      context.abort(e.code, errors.grpc_details(e.message))
    except Exception as e:  # pylint: disable=broad-except
      status = grpc.StatusCode.INTERNAL
      _LOG.exception("unexpected failure in %s", method)
      context.abort(grpc.StatusCode.INTERNAL,
                    errors.grpc_details(f"{type(e).__name__}: {e}"))
    finally:
      if self._log:
        spec = getattr(request, "model_spec", None)
        _LOG.info("method=%s model=%s version=%s signature=%s status=%s "
                  "latency_ms=%.1f", method, getattr(spec, "name", ""),
                  version, signature, status.name,
                  1000 * (time.perf_counter() - began))

  def Classify(self, request, context):  # pylint: disable=invalid-name
    return self._serve("Classify", request, context,
                       functools.partial(handle_classify, self._models))

  def Regress(self, request, context):  # pylint: disable=invalid-name
    return self._serve("Regress", request, context,
                       functools.partial(handle_regress, self._models))

  def Predict(self, request, context):  # pylint: disable=invalid-name
    return self._serve("Predict", request, context,
                       functools.partial(handle_predict, self._models))

  def MultiInference(self, request, context):  # pylint: disable=invalid-name
    return self._serve("MultiInference", request, context,
                       functools.partial(handle_multi_inference, self._models))

  def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    return self._serve("GetModelMetadata", request, context,
                       functools.partial(handle_metadata, self._models))


def add_to_server(server: grpc.Server, models,
                  log_requests: bool = True) -> None:
  """Registers PredictionService and ModelService on a gRPC server."""
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      PredictionService(models, log_requests), server)
  model_service_pb2_grpc.add_ModelServiceServicer_to_server(
      model_service.ModelService(models), server)

