"""TensorFlow Serving's ModelService: GetModelStatus, HandleReloadConfigRequest.

With TF Serving's status codes and wording (model_service_impl.cc,
get_model_status_impl.cc). `models` is the `manager.ModelManager`.
"""

import logging

import grpc
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_management_pb2
from tensorflow_serving.apis import model_service_pb2_grpc

from tf_resnet.serving import errors

ServingError = errors.ServingError
_LOG = logging.getLogger("tf_resnet.serving.requests")
_INVALID = grpc.StatusCode.INVALID_ARGUMENT


def model_status(models, request
                 ) -> get_model_status_pb2.GetModelStatusResponse:
  """GetModelStatus, or ServingError."""
  spec = request.model_spec
  if not request.HasField("model_spec"):
    raise ServingError(_INVALID, "Missing ModelSpec")
  if not spec.name:
    raise ServingError(_INVALID, "ModelSpec has no name specified.")
  try:
    model = models.model(spec.name)
    status = dict(model.status)
  except ServingError:
    status = {}
  if spec.WhichOneof("version_choice") == "version":
    version = spec.version.value
    if version not in status:
      raise ServingError(grpc.StatusCode.NOT_FOUND,
                         f"Could not find version {version} of model "
                         f"{spec.name}")
    versions = [version]
  else:
    if not status:
      raise ServingError(grpc.StatusCode.NOT_FOUND,
                         f"Could not find any versions of model "
                         f"{spec.name}")
    versions = sorted(status, reverse=True)
  response = get_model_status_pb2.GetModelStatusResponse()
  for version in versions:
    entry = response.model_version_status.add()
    entry.version = version
    entry.state = status[version].state
    entry.status.error_code = status[version].error_code
    entry.status.error_message = status[version].error_message
  return response


def reload_config(models, request) -> None:
  """HandleReloadConfigRequest: replaces the served models, or ServingError.

  Only a ModelConfigList is accepted (model_service_impl.cc); an empty
  request is INVALID_ARGUMENT rather than "remove every model".
  """
  if request.config.WhichOneof("config") != "model_config_list":
    raise ServingError(_INVALID, "ServerModelConfig type not supported by "
                       "HandleReloadConfigRequest. Only ModelConfigList is "
                       "currently supported")
  models.reload(request.config)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
  """GetModelStatus and HandleReloadConfigRequest."""

  def __init__(self, models):
    self._models = models

  def GetModelStatus(self, request, context):  # pylint: disable=invalid-name
    try:
      return model_status(self._models, request)
    except ServingError as e:
      context.abort(e.code, errors.grpc_details(e.message))

  def HandleReloadConfigRequest(self, request, context):  # pylint: disable=invalid-name
    response = model_management_pb2.ReloadConfigResponse()
    try:
      reload_config(self._models, request)
    except ServingError as e:
      _LOG.error("ReloadConfig failed: %s", e.message)
      # As TF Serving: the error is the RPC's status (cut as every gRPC
      # status) and response.status (whole; model_service_impl.cc).
      response.status.error_code = e.code.value[0]
      response.status.error_message = e.message
      context.set_code(e.code)
      context.set_details(errors.grpc_details(e.message))
    return response
