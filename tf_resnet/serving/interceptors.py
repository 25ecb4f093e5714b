"""What every TF Serving RPC goes through: its deadline, its metrics.

A gRPC server interceptor, so the services stay as they are:

  - a call whose deadline passed while it waited for a thread is not run
    (DEADLINE_EXCEEDED); otherwise it runs in a `deadline.scope` of the time
    the client has left, which the handlers check before the model runs;
  - every call is counted and timed (`metrics.observe_request`, api=grpc)
    with its model, version, signature and status.
"""

import sys
import time

import grpc

from tf_resnet.serving import deadline
from tf_resnet.serving import metrics

_SERVICES = ("/tensorflow.serving.PredictionService/",
             "/tensorflow.serving.ModelService/")


def _spec(message):
  """The ModelSpec a request or response carries (MultiInference: the first)."""
  if message is None:
    return None
  if hasattr(message, "model_spec"):
    return message.model_spec if message.HasField("model_spec") else None
  for field in ("tasks", "results"):
    entries = getattr(message, field, None)
    if entries:
      return _spec(entries[0])
  return None


class RequestInterceptor(grpc.ServerInterceptor):
  """Deadlines and metrics for PredictionService and ModelService calls."""

  def intercept_service(self, continuation, handler_call_details):
    handler = continuation(handler_call_details)
    name = handler_call_details.method
    if (handler is None or handler.unary_unary is None
        or not name.startswith(_SERVICES)):
      return handler
    method = name.rsplit("/", 1)[1]
    inner = handler.unary_unary

    def behavior(request, context):
      began = time.perf_counter()
      response = None
      try:
        left = context.time_remaining()
        if left is not None and left <= 0:
          context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        with deadline.scope(left):
          response = inner(request, context)
        return response
      finally:
        code = context.code()
        if code is None:
          code = (grpc.StatusCode.UNKNOWN if sys.exc_info()[0] is not None
                  else grpc.StatusCode.OK)
        asked, answered = _spec(request), _spec(response)
        spec = answered or asked
        version = None
        if spec is not None and spec.WhichOneof("version_choice") == "version":
          version = spec.version.value
        metrics.observe_request(
            api="grpc", method=method,
            model=asked.name if asked is not None else "", version=version,
            signature=spec.signature_name if spec is not None else None,
            status=code.name, seconds=time.perf_counter() - began)

    return grpc.unary_unary_rpc_method_handler(
        behavior, request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer)
