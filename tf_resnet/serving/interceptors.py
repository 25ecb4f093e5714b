"""What every TF Serving RPC goes through: the thread quota, its deadline, its metrics.

A gRPC server interceptor, so the services stay as they are:

  - with `max_concurrent_rpcs`, a call that arrives when that many are in
    flight (running or waiting for a thread) is refused at once with
    RESOURCE_EXHAUSTED "Server Threadpool Exhausted": what TF Serving's users
    get when `--grpc_max_threads` is used up (server.cc gives it to gRPC
    C++'s `ResourceQuota::SetMaxThreads`, whose synchronous server then
    answers with `kServerThreadpoolExhausted`, src/cpp/server/server_cc.cc).
    gRPC Python's own bound (`maximum_concurrent_rpcs`) says "Concurrent RPC
    limit exceeded!" instead, so the bound is kept here;
  - a call whose deadline passed while it waited for a thread is not run
    (DEADLINE_EXCEEDED); otherwise it runs in a `deadline.scope` of the time
    the client has left, which the handlers check before the model runs;
  - every call is counted and timed (`metrics.observe_request`, api=grpc)
    with its model, version, signature and status.
"""

import concurrent.futures
import sys
import threading
import time
from typing import Optional

import grpc

from tf_resnet.serving import deadline
from tf_resnet.serving import metrics

_SERVICES = ("/tensorflow.serving.PredictionService/",
             "/tensorflow.serving.ModelService/")
# gRPC C++'s status message when the sync server's thread quota is used up
# (grpc/grpc src/cpp/server/server_cc.cc: kServerThreadpoolExhausted).
THREADPOOL_EXHAUSTED = "Server Threadpool Exhausted"
_BEHAVIORS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


class _Pool(concurrent.futures.ThreadPoolExecutor):
  """The admitted calls' threads: each call's slot is freed when it ends.

  gRPC Python submits each call it admitted (an interceptor returned its
  handler) once, to the pool its behavior names in
  `experimental_thread_pool`, and the future ends when the call's answer is
  sent, or when the call ends without its behavior having run (the client
  cancelled before the request arrived): freeing the slot there, not in the
  behavior, counts both.
  """

  def __init__(self, workers: int, release):
    super().__init__(max_workers=workers, thread_name_prefix="grpc-call")
    self._release = release

  def submit(self, *args, **kwargs):  # pylint: disable=arguments-differ
    try:
      future = super().submit(*args, **kwargs)
    except BaseException:
      self._release()
      raise
    future.add_done_callback(lambda _: self._release())
    return future


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
  """The thread quota; deadlines and metrics for TF Serving's services."""

  def __init__(self, max_concurrent_rpcs: Optional[int] = None,
               workers: Optional[int] = None):
    """A new interceptor.

    Args:
      max_concurrent_rpcs: calls in flight, of every service; more are
        refused at once (RESOURCE_EXHAUSTED). None: no bound.
      workers: threads running the admitted calls (default:
        `max_concurrent_rpcs`). Refusals run on a thread of their own, so a
        refusal never waits for a busy worker.
    """
    if max_concurrent_rpcs is not None and max_concurrent_rpcs < 1:
      raise ValueError("`max_concurrent_rpcs` must be positive, not "
                       f"{max_concurrent_rpcs}")
    self._limit = max_concurrent_rpcs
    self._lock = threading.Lock()
    self._in_flight = 0
    self._pool = self._refusals = None
    if max_concurrent_rpcs is not None:
      self._pool = _Pool(workers or max_concurrent_rpcs, self._release)
      self._refusals = concurrent.futures.ThreadPoolExecutor(
          max_workers=1, thread_name_prefix="grpc-refusal")

  def _release(self) -> None:
    with self._lock:
      self._in_flight -= 1

  @property
  def in_flight(self) -> int:
    """Calls admitted and not yet ended."""
    return self._in_flight

  def intercept_service(self, continuation, handler_call_details):
    handler = continuation(handler_call_details)
    if handler is None:
      return None
    handler = self._observed(handler, handler_call_details.method)
    if self._limit is None:
      return handler
    # gRPC Python calls this for each new call, one at a time, right before
    # it submits the call to the pool its behavior names.
    with self._lock:
      admitted = self._in_flight < self._limit
      if admitted:
        self._in_flight += 1
    return _with_pool(handler, self._pool if admitted else self._refusals,
                      None if admitted else _refuse)

  def shutdown(self) -> None:
    """Lets the threads go once their calls are done."""
    for pool in (self._pool, self._refusals):
      if pool is not None:
        pool.shutdown(wait=False)

  def _observed(self, handler, name: str):
    """The handler, with deadlines and metrics if it is TF Serving's."""
    if handler.unary_unary is None or not name.startswith(_SERVICES):
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

    return handler._replace(unary_unary=behavior)


def _refuse(unused_request, context):
  context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, THREADPOOL_EXHAUSTED)


def _with_pool(handler, pool, replacement):
  """`handler` whose behavior runs on `pool` (and is `replacement` if given)."""
  kind = next(k for k in _BEHAVIORS if getattr(handler, k) is not None)
  inner = replacement or getattr(handler, kind)

  def behavior(request, context):
    return inner(request, context)

  behavior.experimental_thread_pool = pool
  return handler._replace(**{kind: behavior})
