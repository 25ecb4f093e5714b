"""The REST API's HTTP transport (TF Serving's model_servers/http_server.cc).

TF Serving runs its REST API on libevent: one event loop reads requests, a
fixed pool of `--rest_api_num_threads` runs them, each with a timeout of
`--rest_api_timeout_in_ms`. This is the same shape on Tornado's HTTP/1.1
server (an asyncio event loop in one background thread) and a bounded
thread pool:

  - Connections cost no thread while they wait. At most `max_connections`
    are open (more are closed at once), the listen backlog is `backlog`.
  - Each request's headers must arrive within `header_timeout` seconds of
    the connection's last answer (or its opening), however slowly they
    trickle, and its body within `body_timeout`; else the connection closes.
  - Bodies are read as they arrive: `Transfer-Encoding: chunked` is decoded
    strictly (a bad chunk size is HTTP 400 and the connection closes) and
    gzip (`Content-Encoding` naming gzip) inflated in a stream; the limits,
    `max_body_bytes` on the decoded body and `max_inflated_bytes` (TF
    Serving: 100 MiB) on the inflated one, answer 413 as soon as they are
    passed, before more is buffered.
  - The request runs in the pool under a deadline of `timeout_ms` from the
    moment its body is in (`deadline`): a request that waited past it is not
    run, and the client gets 504 (DEADLINE_EXCEEDED) when it passes.
  - OPTIONS (CORS preflight) answers as TF Serving: 200 with an `Origin`
    header, else 400. HEAD is a malformed request (400), without a body.
  - With `prometheus_path`, GET there serves the metrics (`metrics`).
"""

import asyncio
import concurrent.futures
import dataclasses
import logging
import os
import re
import threading
import time
import zlib
from typing import Optional

import grpc
from tornado import httpserver
from tornado import httputil
from tornado import netutil

from tf_resnet.serving import deadline
from tf_resnet.serving import json_writer
from tf_resnet.serving import manager as manager_lib
from tf_resnet.serving import metrics
from tf_resnet.serving import rest_api_handler

_LOG = logging.getLogger("tf_resnet.serving.requests")
_SERVER_LOG = logging.getLogger("tf_resnet.serving")
_ORIGIN = re.compile(r"https?://")
# Answers up to this size are joined and written with their headers at once
# (one send); bigger ones go out piece by piece, never copied whole.
_ONE_WRITE_BYTES = 64 * 1024
# TF Serving's AddCORSHeaders (http_rest_api_util.cc).
_CORS_HEADERS = (("Access-Control-Allow-Origin", "*"),
                 ("Access-Control-Allow-Methods", "POST, GET"),
                 ("Access-Control-Allow-Headers", "Content-Type"))


def _default_threads() -> int:
  return 4 * (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
              else os.cpu_count() or 1)


@dataclasses.dataclass(frozen=True)
class RestOptions:
  """How the REST port serves (TF Serving's defaults where it has them).

  Attributes:
    num_threads: threads running requests (`--rest_api_num_threads`; TF
      Serving: 4 x CPUs).
    timeout_ms: a request's deadline once its body is in
      (`--rest_api_timeout_in_ms`, default 30000); 0: none.
    max_body_bytes: largest body after chunked decoding (HTTP 413 beyond).
    max_inflated_bytes: largest body after gunzip (TF Serving's
      kMaxUncompressedBytes, 100 MiB).
    max_connections: open connections; more are closed at once.
    header_timeout: seconds for a request's headers to arrive, counted from
      the connection's opening or its last answer (so also the keep-alive
      idle time).
    body_timeout: seconds for a body to arrive once its headers have.
    backlog: the listen queue (the kernel may cap it at somaxconn).
    cors: add TF Serving's CORS headers (`--rest_api_enable_cors_support`).
    prometheus_path: serve metrics on GET at this path (None: off).
    log_requests: one log line per request.
  """

  num_threads: int = dataclasses.field(default_factory=_default_threads)
  timeout_ms: int = 30000
  max_body_bytes: int = 256 * 1024 * 1024
  max_inflated_bytes: int = 100 * 1024 * 1024
  max_connections: int = 1000
  header_timeout: float = 30.0
  body_timeout: float = 120.0
  backlog: int = 1024
  cors: bool = False
  prometheus_path: Optional[str] = None
  log_requests: bool = True

  def __post_init__(self):
    for name in ("num_threads", "max_body_bytes", "max_inflated_bytes",
                 "max_connections", "backlog"):
      if getattr(self, name) < 1:
        raise ValueError(f"REST option {name} must be positive, not "
                         f"{getattr(self, name)}")
    for name in ("header_timeout", "body_timeout"):
      if getattr(self, name) <= 0:
        raise ValueError(f"REST option {name} must be positive, not "
                         f"{getattr(self, name)}")
    if self.timeout_ms < 0:
      raise ValueError("REST option timeout_ms must be >= 0 (0: none), not "
                       f"{self.timeout_ms}")


class _BodyError(Exception):

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status
    self.message = message


class _Body:
  """A request body as it arrives: decoded, inflated and bounded."""

  def __init__(self, options: RestOptions, gzipped: bool):
    self._options = options
    # One buffer, not parts joined at the end: the join held the body twice.
    self._data = bytearray()
    self._size = 0
    self._inflater = self._new_inflater() if gzipped else None

  @staticmethod
  def _new_inflater():
    return zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip framing.

  def add(self, data: bytes) -> None:
    if self._inflater is None:
      self._keep(data, self._options.max_body_bytes)
      return
    limit = min(self._options.max_inflated_bytes,
                self._options.max_body_bytes)
    while data:
      try:
        # At most one byte past the limit comes out: a gzip bomb is never
        # inflated further than that.
        out = self._inflater.decompress(data, limit - self._size + 1)
      except zlib.error as e:
        raise _BodyError(400, f"Cannot gunzip the request body: {e}") from None
      self._keep(out, limit)
      data = self._inflater.unconsumed_tail
      if self._inflater.eof:
        data = self._inflater.unused_data  # A further gzip member.
        if data:
          self._inflater = self._new_inflater()

  def _keep(self, data: bytes, limit: int) -> None:
    self._size += len(data)
    if self._size > limit:
      raise _BodyError(413, f"Request body exceeds {limit} bytes")
    self._data += data

  def finish(self) -> bytearray:
    if self._inflater is not None and not self._inflater.eof and (
        self._size or self._data):
      raise _BodyError(400, "Cannot gunzip the request body: it ends early")
    body, self._data = self._data, bytearray()
    return body


class _Request(httputil.HTTPMessageDelegate):
  """One request on a connection: headers, body, then the answer."""

  def __init__(self, server: "RestServer",
               connection: httputil.HTTPConnection):
    self._server = server
    self._connection = connection
    self._body: Optional[_Body] = None
    self._error: Optional[_BodyError] = None
    self._answered = False
    self.method = ""
    self.path = ""
    self.headers = httputil.HTTPHeaders()
    self.began = time.perf_counter()

  def headers_received(self, start_line, headers) -> None:
    self.began = time.perf_counter()
    self.method = start_line.method
    self.path = start_line.path.split("?", 1)[0].split("#", 1)[0]
    self.headers = headers
    options = self._server.options
    try:
      length = int(headers.get("Content-Length") or 0)
    except ValueError:
      length = 0  # Tornado answers 400 for it.
    if length > options.max_body_bytes:
      self._fail(413, f"Request body of {length} bytes exceeds "
                 f"{options.max_body_bytes} bytes")
      return
    self._body = _Body(options,
                       "gzip" in headers.get("Content-Encoding", "").lower())

  def data_received(self, chunk: bytes) -> None:
    if self._answered or self._error is not None:
      return
    try:
      self._body.add(chunk)
    except _BodyError as e:
      # Nothing more is kept, but the rest is read (within the wire limit
      # and the body deadline) before the answer: closing with unread data
      # would reset the connection and could lose the answer.
      self._error, self._body = e, None

  def finish(self) -> None:
    if self._answered:
      return
    try:
      if self._error is not None:
        raise self._error
      body = self._body.finish()
    except _BodyError as e:
      self._fail(e.status, e.message, close=False)
      return
    self._body = None
    self._server.answer(self, body)

  def on_connection_close(self) -> None:
    self._body = None

  def _fail(self, status: int, message: str, close: bool = True) -> None:
    """Answers at once; `close`: the body is not read, the connection ends."""
    self._body = None
    reply = rest_api_handler.Reply(status, {"error": message},
                                   grpc.StatusCode.INVALID_ARGUMENT)
    self.respond(reply, close=close)
    self._server.log(self, reply)

  def respond(self, reply: rest_api_handler.Reply, close: bool = False,
              content_type: str = "application/json",
              data: Optional[bytes] = None) -> None:
    """Writes the answer (in the event loop's thread)."""
    if self._answered:
      return
    self._answered = True
    if data is not None:
      pieces = [data]
    else:
      # Tensors in the body are JSON text already (json_writer.RawJson),
      # written piece by piece: a big answer is never copied whole.
      pieces = (json_writer.pieces(reply.body) if reply.body is not None
                else [])
    size = sum(map(len, pieces))
    headers = httputil.HTTPHeaders()
    if size or reply.body is not None:
      headers["Content-Type"] = content_type
    headers["Content-Length"] = str(size)
    if self._server.options.cors and rest_api_handler.API_PATH.fullmatch(
        self.path):
      for name, value in _CORS_HEADERS:
        headers[name] = value
    if close or self._server.stopping:
      headers["Connection"] = "close"
    start = httputil.ResponseStartLine(
        "HTTP/1.1", reply.status,
        httputil.responses.get(reply.status, "Unknown"))
    try:
      if self.method == "HEAD":
        pieces = []
      elif size <= _ONE_WRITE_BYTES:
        # A small answer goes out with its headers in one send.
        pieces = [b"".join(pieces)]
      self._connection.write_headers(start, headers,
                                     pieces[0] if pieces else None)
      for piece in pieces[1:]:
        self._connection.write(piece)
      self._connection.finish()
    except Exception:  # pylint: disable=broad-except
      _SERVER_LOG.debug("cannot write a REST answer", exc_info=True)
    # An answer before the whole body was read closes the connection once
    # written (Tornado's HTTP1Connection.finish): the rest is never buffered.


class _HTTPServer(httpserver.HTTPServer):
  """Tornado's HTTPServer with a bound on open connections."""

  max_connections = 1000
  _open = 0

  def handle_stream(self, stream, address) -> None:
    if self._open >= self.max_connections:
      metrics.rest_connection_rejected()
      stream.close()
      return
    self._open += 1
    metrics.rest_connection_opened()
    super().handle_stream(stream, address)

  def on_close(self, server_conn) -> None:
    self._open -= 1
    metrics.rest_connection_closed()
    super().on_close(server_conn)


class RestServer(httputil.HTTPServerConnectionDelegate):
  """TF Serving's REST API on a port, served by a background thread."""

  def __init__(self, models: manager_lib.ModelManager, *, port: int = 0,
               bind_address: str = "127.0.0.1",
               options: Optional[RestOptions] = None):
    """Binds the port and starts serving.

    Args:
      models: the served models.
      port: the REST port; 0 picks a free one (see `self.port`).
      bind_address: the address to listen on (IPv4, IPv6 or a host name).
      options: limits, timeouts and extras (default: `RestOptions()`).

    Raises:
      RuntimeError: if the port cannot be bound.
    """
    self.models = models
    self.options = options or RestOptions()
    self.stopping = False
    host = bind_address.strip("[]")
    try:
      sockets = netutil.bind_sockets(port, host,
                                     backlog=self.options.backlog)
    except OSError as e:
      raise RuntimeError(f"cannot listen on {bind_address}:{port} for the "
                         f"REST API: {e}") from e
    self.port = sockets[0].getsockname()[1]
    self._executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=self.options.num_threads, thread_name_prefix="rest-worker")
    self._active = 0
    self._idle: Optional[asyncio.Event] = None
    self._loop = asyncio.new_event_loop()
    self._thread = threading.Thread(target=self._run, name="rest-server",
                                    daemon=True)
    self._thread.start()
    asyncio.run_coroutine_threadsafe(self._start(sockets), self._loop).result()

  def _run(self) -> None:
    asyncio.set_event_loop(self._loop)
    self._loop.run_forever()

  async def _start(self, sockets) -> None:
    self._idle = asyncio.Event()
    self._idle.set()
    # Tornado enforces the deadlines and chunked framing; the body limits
    # are applied here (to decoded bytes), so its own is set past them.
    self._http = _HTTPServer(
        self, idle_connection_timeout=self.options.header_timeout,
        body_timeout=self.options.body_timeout,
        max_body_size=2 * self.options.max_body_bytes + (1 << 20),
        max_header_size=64 * 1024)
    self._http.max_connections = self.options.max_connections
    self._http.add_sockets(sockets)

  # HTTPServerConnectionDelegate.
  def start_request(self, server_conn, request_conn) -> _Request:
    return _Request(self, request_conn)

  def answer(self, request: _Request, body: bytes) -> None:
    """Answers a request whose body is in (in the event loop's thread)."""
    self._active += 1
    self._idle.clear()
    task = self._loop.create_task(self._answer(request, body))
    task.add_done_callback(lambda _: self._done())

  def _done(self) -> None:
    self._active -= 1
    if not self._active:
      self._idle.set()

  async def _answer(self, request: _Request, body: bytes) -> None:
    options = self.options
    if options.prometheus_path and request.path == options.prometheus_path:
      reply = rest_api_handler.Reply(200, None)
      request.respond(reply, content_type=metrics.CONTENT_TYPE,
                      data=metrics.scrape())
      return
    if (request.method == "OPTIONS"
        and rest_api_handler.API_PATH.fullmatch(request.path)):
      # TF Serving's CORS preflight (RestApiRequestDispatcher).
      if _ORIGIN.search(request.headers.get("Origin", "")):
        reply = rest_api_handler.Reply(200, None)
      else:
        code = grpc.StatusCode.FAILED_PRECONDITION
        reply = rest_api_handler.Reply(
            rest_api_handler.http_status(code),
            {"error": "Origin header is missing in CORS preflight"}, code)
      request.respond(reply)
      self.log(request, reply)
      return
    timeout = options.timeout_ms / 1000 if options.timeout_ms else None
    work = self._loop.run_in_executor(
        self._executor, self._process, request.method, request.path, body,
        timeout)
    del body
    try:
      # Cancelling the future on timeout also drops the work if it has not
      # started: a request that waited out its deadline in the queue is not
      # run.
      reply = await asyncio.wait_for(work, timeout)
    except asyncio.TimeoutError:
      code = grpc.StatusCode.DEADLINE_EXCEEDED
      reply = rest_api_handler.Reply(
          rest_api_handler.http_status(code), {"error": "Deadline Exceeded"},
          code)
    request.respond(reply)
    self.log(request, reply)

  def _process(self, method: str, path: str, body: bytes,
               timeout: Optional[float]) -> rest_api_handler.Reply:
    with deadline.scope(timeout):
      return rest_api_handler.process(self.models, method, path, body)

  def log(self, request: _Request, reply: rest_api_handler.Reply) -> None:
    """Logs and counts one answered request."""
    seconds = time.perf_counter() - request.began
    metrics.observe_request(
        api="rest", method=reply.method, model=reply.model,
        version=reply.version, signature=reply.signature,
        status=reply.code.name, seconds=seconds)
    if self.options.log_requests:
      _LOG.info("method=REST:%s model=%s version=%s signature=%s status=%s "
                "http=%d latency_ms=%.1f", reply.method or request.path,
                reply.model, reply.version, reply.signature, reply.code.name,
                reply.status, 1000 * seconds)

  async def _shutdown(self, grace: Optional[float]) -> None:
    self.stopping = True
    self._http.stop()  # No new connections.
    if grace is not None and self._active:
      try:
        await asyncio.wait_for(self._idle.wait(), grace)
      except asyncio.TimeoutError:
        pass
    await self._http.close_all_connections()

  def stop(self, grace: Optional[float] = 5.0) -> None:
    """Stops accepting connections and lets requests in flight finish.

    Args:
      grace: seconds to wait for requests in flight; None: do not wait.
    """
    if not self._thread.is_alive():
      return
    asyncio.run_coroutine_threadsafe(self._shutdown(grace),
                                     self._loop).result()
    self._loop.call_soon_threadsafe(self._loop.stop)
    self._thread.join()
    self._loop.close()
    self._executor.shutdown(wait=False, cancel_futures=True)
