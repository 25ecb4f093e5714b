"""TensorFlow's ProfilerService on the serving port, as tensorflow_model_server has it.

TF Serving registers `tensorflow.ProfilerService` (Profile, Terminate,
Monitor, ...) on its gRPC port, so TensorBoard's profile plugin ("Capture
profile" at localhost:8500) and `tf.profiler.experimental.client.trace`
trace the running server. TensorFlow's Python package has the service's
server (`tf.profiler.experimental.server.start`) but no way to add it to
another gRPC server, so it is started in this process on a port of its own
and the serving port forwards the service's calls to it as raw bytes: no
protos are compiled here, the messages pass through unread.

TensorFlow's profiler server listens on all interfaces (its StartProfilerServer
binds `[::]:port`) and cannot be stopped; it is therefore started only on
the first profiler call, on a free port, and then serves until the process
ends.
"""

import logging
import socket
import threading
from typing import Callable, Optional

import grpc

_LOG = logging.getLogger("tf_resnet.serving")
SERVICE = "tensorflow.ProfilerService"
# The service's methods (tsl/profiler/protobuf/profiler_service.proto), all
# unary.
METHODS = ("Profile", "Terminate", "Monitor", "StartContinuousProfiling",
           "StopContinuousProfiling", "GetSnapshot")


def _free_port() -> int:
  with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET,
                     socket.SOCK_STREAM) as s:
    s.bind(("", 0))
    return s.getsockname()[1]


def _start_tensorflow_profiler_server() -> int:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  port = _free_port()
  tf.profiler.experimental.server.start(port)
  _LOG.info("TensorFlow's profiler server started on port %d (the gRPC "
            "port forwards %s to it)", port, SERVICE)
  return port


class _Backends:
  """The profiler server each start function gives, started on first use.

  The default one is TensorFlow's, of which a process has at most one.
  """

  _lock = threading.Lock()
  _channels: dict[Callable[[], int], grpc.Channel] = {}

  @classmethod
  def channel(cls, start: Callable[[], int]) -> grpc.Channel:
    with cls._lock:
      if start not in cls._channels:
        cls._channels[start] = grpc.insecure_channel(f"localhost:{start()}")
      return cls._channels[start]


class ProfilerForwarder(grpc.GenericRpcHandler):
  """Forwards `tensorflow.ProfilerService` calls to TensorFlow's profiler server.

  Args:
    start: starts the profiler server and returns its port (default:
      `tf.profiler.experimental.server.start` on a free port); called once
      per process, on the first call.
  """

  def __init__(self, start: Callable[[], int] =
               _start_tensorflow_profiler_server):
    self._start = start
    self._handlers = {
        f"/{SERVICE}/{method}": grpc.unary_unary_rpc_method_handler(
            self._forwarder(f"/{SERVICE}/{method}"))
        for method in METHODS}

  def service(self, handler_call_details):
    return self._handlers.get(handler_call_details.method)

  def _forwarder(self, method: str):

    def forward(request: bytes, context: grpc.ServicerContext) -> bytes:
      # No (de)serializers: the request and response pass through as bytes.
      call = _Backends.channel(self._start).unary_unary(method)
      try:
        response = call(request, timeout=context.time_remaining(),
                        wait_for_ready=True)
      except grpc.RpcError as e:
        context.abort(e.code(), e.details() or "")
      return response

    return forward


def add_to_server(server: grpc.Server,
                  start: Callable[[], int] = _start_tensorflow_profiler_server
                  ) -> None:
  """Serves `tensorflow.ProfilerService` on `server`'s ports.

  Args:
    server: the serving gRPC server (not started yet).
    start: see `ProfilerForwarder`.
  """
  server.add_generic_rpc_handlers((ProfilerForwarder(start),))
