"""The serving error: a gRPC status code with TF Serving's message.

In its own module so that every layer (batching, the manager, the services,
the REST API) raises and catches the same type without importing each other.
"""

import grpc

# TF Serving cuts long error messages (util/status_util.cc).
_MAX_MESSAGE = 1024
_TRUNCATED = "...TRUNCATED"


class ServingError(Exception):
  """An RPC failure with TF Serving's status code and message."""

  def __init__(self, code: grpc.StatusCode, message: str):
    if len(message) > _MAX_MESSAGE:
      message = message[:_MAX_MESSAGE - len(_TRUNCATED)] + _TRUNCATED
    super().__init__(message)
    self.code = code
    self.message = message
