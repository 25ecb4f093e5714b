"""The serving error: a gRPC status code with TF Serving's message.

In its own module so that every layer (batching, the manager, the services,
the REST API) raises and catches the same type without importing each other.
Messages are kept whole: only a gRPC status is cut, where TF Serving cuts it
(`grpc_details`); REST answers and logs carry the whole text, as TF
Serving's (model_servers/http_rest_api_handler.cc writes `status.message()`).

`tensorflow_message` turns the text of an error TensorFlow raised while a
signature ran into what the C++ server's `Session::Run` status says: the
kernel's message and its `[[{{node ...}}]]` line, without the wrappers of
TensorFlow's Python API (`Graph execution error:`, `Detected at node ...`,
`{{function_node __inference_...}}`, `[Op:__inference_...]`).
"""

import re

import grpc

# TF Serving cuts gRPC status messages (model_servers/grpc_status_util.cc,
# ToGRPCStatus: the first kErrorMessageLimit = 1024 characters, then
# "...TRUNCATED").
GRPC_MESSAGE_LIMIT = 1024
TRUNCATED = "...TRUNCATED"


class ServingError(Exception):
  """An RPC failure with TF Serving's status code and (whole) message."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message


def grpc_details(message: str) -> str:
  """A status message as TF Serving sends it over gRPC (cut after 1024)."""
  if len(message) > GRPC_MESSAGE_LIMIT:
    return message[:GRPC_MESSAGE_LIMIT] + TRUNCATED
  return message


# The wrappers TensorFlow's Python API puts around a runtime error's text.
_GRAPH_EXECUTION = "Graph execution error:\n\n"
# "Detected at node X defined at (most recent call last):" and the stack
# lines under it (indented, or "<stack traces unavailable>").
_DETECTED_AT = re.compile(
    r"Detected at node .*? defined at \(most recent call last\):\n"
    r"(?:(?:<stack traces unavailable>|[ \t].*)\n)*")
_FUNCTION_NODE = re.compile(r"\{\{function_node [^}]*\}\}\s*")
_OP_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\](?: name: \S*)?\s*$")
# Eager's check of an argument's type; Session::Run's (FunctionCallFrame::
# SetArgs, tensorflow/core/framework/function.cc) says it as `_SET_ARGS`.
_EAGER_DTYPE = re.compile(
    r"cannot compute \S+ as input #(\d+)\(zero-based\) was expected to be "
    r"a (\w+) tensor but is a (\w+) tensor")
SET_ARGS = "Expects arg[{index}] to be {expected} but {got} is provided"


def tensorflow_message(text: str) -> str:
  """A TensorFlow runtime error's text as the C++ Session::Run reports it.

  Args:
    text: the message of a `tf.errors.OpError` (or its bytes, decoded).

  Returns:
    The text without the Python API's wrappers; eager's argument type check
    in Session's words (`Expects arg[0] to be uint8 but float is provided`).
  """
  if text.startswith(_GRAPH_EXECUTION):
    text = text[len(_GRAPH_EXECUTION):]
  text = _DETECTED_AT.sub("", text)
  text = _FUNCTION_NODE.sub("", text)
  text = _OP_SUFFIX.sub("", text)
  dtype = _EAGER_DTYPE.fullmatch(text)
  if dtype:
    text = SET_ARGS.format(index=dtype.group(1), expected=dtype.group(2),
                           got=dtype.group(3))
  return text
