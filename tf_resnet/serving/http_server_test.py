"""The REST transport under hostile and heavy clients, on 127.0.0.1.

Raw sockets speak HTTP/1.1 so that malformed framing, trickling headers and
idle connections can be sent as an attacker would. Every load is bounded (a
few hundred connections, seconds).
"""

import base64
import concurrent.futures
import gzip
import json
import socket
import tempfile
import threading
import time
from unittest import mock
import urllib.error
import urllib.request

import grpc
import tensorflow as tf
from prometheus_client import parser as prometheus_parser
from tensorflow_serving.apis import prediction_service_pb2_grpc

from tf_resnet.serving import grpc_server
from tf_resnet.serving import http_server
from tf_resnet.serving import manager
from tf_resnet.serving import metrics
from tf_resnet.serving import model_config
from tf_resnet.serving import protocol
from tf_resnet.serving import services
from tf_resnet.testing import exports
from tf_resnet.testing import images

HEADER_TIMEOUT = 1.5


def _b64(data: bytes) -> dict[str, str]:
  return {"b64": base64.b64encode(data).decode("ascii")}


def _connect(port: int, timeout: float = 10.0) -> socket.socket:
  return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def _read_reply(sock: socket.socket) -> tuple[int, dict, bytes]:
  """(status, headers, body) of one HTTP/1.1 reply with a Content-Length."""
  data = b""
  while b"\r\n\r\n" not in data:
    chunk = sock.recv(65536)
    if not chunk:
      raise ConnectionError(f"closed after {data!r}")
    data += chunk
  head, body = data.split(b"\r\n\r\n", 1)
  lines = head.decode("latin1").split("\r\n")
  headers = {k.lower(): v.strip() for k, v in
             (line.split(":", 1) for line in lines[1:])}
  length = int(headers.get("content-length", 0))
  while len(body) < length:
    chunk = sock.recv(65536)
    if not chunk:
      break
    body += chunk
  return int(lines[0].split()[1]), headers, body


def _is_closed(sock: socket.socket) -> bool:
  try:
    return sock.recv(1) == b""
  except (ConnectionResetError, BrokenPipeError):
    return True


class HttpServerTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    base = tempfile.mkdtemp()
    exports.tiny_export(base, seed=1)
    config = model_config.single_model_config("m", base)
    cls.options = http_server.RestOptions(
        num_threads=4, header_timeout=HEADER_TIMEOUT, body_timeout=3.0,
        max_inflated_bytes=1 << 20, prometheus_path="/metrics",
        log_requests=False)
    cls.server = grpc_server.Server(config, port=0, rest_port=0,
                                    poll_seconds=0, log_requests=False,
                                    rest_options=cls.options)
    cls.port = cls.server.rest_port
    cls.image = images.png(0)
    cls.classify = json.dumps({"examples": [
        {"image/encoded": _b64(cls.image)}]}).encode()

  @classmethod
  def tearDownClass(cls):
    cls.server.stop(grace=1)
    super().tearDownClass()

  def _extra_server(self, **options) -> http_server.RestServer:
    """Another REST port on the same models, with other options."""
    rest = http_server.RestServer(
        self.server.models,
        options=http_server.RestOptions(log_requests=False, **options))
    self.addCleanup(rest.stop, 1)
    return rest

  def _post(self, port: int, body: bytes, headers=(), path="/v1/models/m"
            ":classify") -> tuple[int, dict, bytes]:
    with _connect(port) as sock:
      head = "".join(f"{k}: {v}\r\n" for k, v in headers)
      if not any(k.lower() == "transfer-encoding" for k, _ in headers):
        head += f"Content-Length: {len(body)}\r\n"
      sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode()
                   + body)
      return _read_reply(sock)

  def _status_ok(self, port=None) -> bool:
    url = f"http://127.0.0.1:{port or self.port}/v1/models/m"
    with urllib.request.urlopen(url, timeout=10) as reply:
      return reply.status == 200

  def test_chunked_bodies_are_decoded(self):
    body = self.classify
    chunks = [body[:7], body[7:100], body[100:]]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
    status, _, answer = self._post(
        self.port, chunked + b"0\r\n\r\n", [("Transfer-Encoding", "chunked")])
    self.assertEqual(status, 200, answer)
    _, _, plain = self._post(self.port, body)
    self.assertEqual(json.loads(answer), json.loads(plain))

  def test_bad_chunk_sizes_answer_400_and_close(self):
    for size in (b"-1", b"zz", b"0x10"):
      with _connect(self.port, timeout=5) as sock:
        sock.sendall(b"POST /v1/models/m:classify HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n" + size + b"\r\n"
                     + b"{" * 100)
        # Never read until the client closes: the answer comes at once.
        status, _, _ = _read_reply(sock)
        self.assertEqual(status, 400, size)
        self.assertTrue(_is_closed(sock))
    self.assertTrue(self._status_ok())

  def test_body_limit_applies_to_decoded_bytes(self):
    rest = self._extra_server(max_body_bytes=4096)
    chunk = b"x" * 1000
    status, _, answer = self._post(
        rest.port, b"3e8\r\n%s\r\n" % chunk * 5 + b"0\r\n\r\n",
        [("Transfer-Encoding", "chunked")])
    self.assertEqual(status, 413)
    self.assertEqual(json.loads(answer),
                     {"error": "Request body exceeds 4096 bytes"})
    status, _, answer = self._post(rest.port, b"x" * 5000)
    self.assertEqual((status, json.loads(answer)), (413, {
        "error": "Request body of 5000 bytes exceeds 4096 bytes"}))

  def test_gzip_bodies_are_inflated_up_to_the_limit(self):
    status, _, answer = self._post(
        self.port, gzip.compress(self.classify),
        [("Content-Encoding", "gzip")])
    self.assertEqual(status, 200, answer)
    self.assertLen(json.loads(answer)["results"], 1)
    # 64 MiB of zeros in 64 KiB of gzip, against a 1 MiB limit: refused as
    # soon as the limit is passed.
    bomb = gzip.compress(b"0" * (64 << 20), compresslevel=9)
    self.assertLess(len(bomb), 1 << 17)
    began = time.monotonic()
    status, _, answer = self._post(self.port, bomb,
                                   [("Content-Encoding", "gzip")])
    self.assertEqual((status, json.loads(answer)), (413, {
        "error": "Request body exceeds 1048576 bytes"}))
    self.assertLess(time.monotonic() - began, 2.0)
    status, _, answer = self._post(self.port, b"not gzip",
                                   [("Content-Encoding", "gzip")])
    self.assertEqual(status, 400)
    self.assertStartsWith(json.loads(answer)["error"],
                          "Cannot gunzip the request body")

  def test_64_simultaneous_connects_are_all_answered_within_2s(self):
    barrier = threading.Barrier(64)

    def one(_):
      barrier.wait()
      began = time.monotonic()
      with _connect(self.port) as sock:
        sock.sendall(b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = _read_reply(sock)
      return status, time.monotonic() - began

    with concurrent.futures.ThreadPoolExecutor(64) as pool:
      results = list(pool.map(one, range(64)))
    self.assertEqual([s for s, _ in results], [200] * 64)
    self.assertLess(max(t for _, t in results), 2.0)

  def test_trickled_headers_are_cut_at_the_deadline_while_others_are_served(
      self):
    closed_after = []

    def trickle():
      with _connect(self.port) as sock:
        began = time.monotonic()
        request = b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\nX-Slow: "
        try:
          for i in range(60):  # One byte a second, for a minute at most.
            sock.sendall(request[i:i + 1] if i < len(request) else b"a")
            sock.settimeout(1.0)
            try:
              if sock.recv(1) == b"":
                break
            except socket.timeout:
              pass
        except (BrokenPipeError, ConnectionResetError):
          pass
        closed_after.append(time.monotonic() - began)

    slow = threading.Thread(target=trickle)
    slow.start()
    # Meanwhile other clients are served, each at once.
    for _ in range(5):
      began = time.monotonic()
      self.assertTrue(self._status_ok())
      self.assertLess(time.monotonic() - began, 1.0)
      time.sleep(0.2)
    slow.join(timeout=60)
    self.assertLen(closed_after, 1)
    self.assertLess(closed_after[0], HEADER_TIMEOUT + 1.5)

  def test_idle_connections_hold_no_threads_and_are_bounded(self):
    threads = threading.active_count()
    idle = [_connect(self.port) for _ in range(300)]
    try:
      time.sleep(0.3)
      self.assertLess(threading.active_count() - threads, 5)
      self.assertTrue(self._status_ok())
    finally:
      for sock in idle:
        sock.close()
    # Past max_connections, a new connection is closed at once.
    rest = self._extra_server(max_connections=10)
    idle = [_connect(rest.port) for _ in range(10)]
    try:
      time.sleep(0.3)
      with _connect(rest.port) as extra:
        extra.sendall(b"GET /v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(_is_closed(extra))
    finally:
      for sock in idle:
        sock.close()
    time.sleep(0.3)
    self.assertTrue(self._status_ok(rest.port))

  def test_requests_past_their_timeout_get_504_and_queued_ones_do_not_run(
      self):
    rest = self._extra_server(num_threads=1, timeout_ms=300)
    calls = []
    release = threading.Event()
    classify = services.handle_classify

    def slow_classify(models, request):
      calls.append(request)
      release.wait(10)
      return classify(models, request)

    url = f"http://127.0.0.1:{rest.port}/v1/models/m:classify"

    def post():
      request = urllib.request.Request(url, data=self.classify,
                                       method="POST")
      began = time.monotonic()
      try:
        with urllib.request.urlopen(request, timeout=10) as reply:
          answer = json.loads(reply.read())
          return reply.status, answer, time.monotonic() - began
      except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read()), time.monotonic() - began

    with mock.patch.object(services, "handle_classify", slow_classify):
      with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(post)
        time.sleep(0.1)
        second = pool.submit(post)  # Waits for the only thread.
        for status, answer, seconds in (first.result(), second.result()):
          self.assertEqual((status, answer),
                           (504, {"error": "Deadline Exceeded"}))
          self.assertLess(seconds, 2.0)
      release.set()
    # The first ran (it cannot be stopped), the second never did.
    self.assertLen(calls, 1)
    # Once the first is done, the thread serves again.
    statuses = []
    for _ in range(20):
      try:
        statuses.append(self._status_ok(rest.port))
        break
      except urllib.error.HTTPError as e:
        statuses.append(e.code)
        time.sleep(0.5)
    self.assertEqual(statuses[-1], True)

  def test_options_and_head_as_tf_serving(self):
    def call(method, headers=(), port=None):
      with _connect(port or self.port) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers)
        sock.sendall(f"{method} /v1/models/m HTTP/1.1\r\nHost: x\r\n{head}"
                     "\r\n".encode())
        return _read_reply(sock)

    status, _, body = call("OPTIONS")
    self.assertEqual((status, json.loads(body)), (400, {
        "error": "Origin header is missing in CORS preflight"}))
    status, headers, body = call("OPTIONS", [("Origin", "https://a.example")])
    self.assertEqual((status, body), (200, b""))
    self.assertNotIn("access-control-allow-origin", headers)
    # HEAD is no API call: a malformed request, answered without a body.
    status, headers, body = call("HEAD")
    self.assertEqual((status, body), (400, b""))
    self.assertEqual(headers["content-type"], "application/json")
    cors = self._extra_server(cors=True)
    status, headers, _ = call("OPTIONS", [("Origin", "http://a.example")],
                              port=cors.port)
    self.assertEqual(status, 200)
    self.assertEqual(headers["access-control-allow-origin"], "*")
    self.assertEqual(headers["access-control-allow-methods"], "POST, GET")

  def test_prometheus_metrics_count_requests_of_both_apis(self):

    def scrape():
      url = f"http://127.0.0.1:{self.port}/metrics"
      with urllib.request.urlopen(url, timeout=10) as reply:
        self.assertStartsWith(reply.headers["Content-Type"], "text/plain")
        text = reply.read().decode()
      samples = {}
      for family in prometheus_parser.text_string_to_metric_families(text):
        for sample in family.samples:
          samples[(sample.name, tuple(sorted(sample.labels.items())))] = (
              sample.value)
      return samples

    def requests(samples, **labels):
      key = ("tf_resnet_serving_requests_total",
             tuple(sorted(labels.items())))
      return samples.get(key, 0.0)

    rest_ok = dict(api="rest", method="classify", model="m", version="1",
                   signature="serving_default", status="OK")
    grpc_ok = dict(rest_ok, api="grpc", method="Classify")
    rest_missing = dict(api="rest", method="classify", model="nope",
                        version="", signature="", status="NOT_FOUND")
    before = scrape()
    for _ in range(2):
      self.assertEqual(self._post(self.port, self.classify)[0], 200)
    self.assertEqual(self._post(self.port, self.classify,
                                path="/v1/models/nope:classify")[0], 404)
    with grpc.insecure_channel(f"127.0.0.1:{self.server.port}") as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      stub.Classify(protocol.classify_request([self.image], "m",
                                              "serving_default"), timeout=30)
    after = scrape()
    self.assertEqual(requests(after, **rest_ok) - requests(before, **rest_ok),
                     2)
    self.assertEqual(requests(after, **rest_missing)
                     - requests(before, **rest_missing), 1)
    self.assertEqual(requests(after, **grpc_ok) - requests(before, **grpc_ok),
                     1)
    latency = ("tf_resnet_serving_request_latency_seconds_count",
               tuple(sorted(rest_ok.items())))
    self.assertEqual(after[latency] - before.get(latency, 0), 2)
    state = ("tf_resnet_serving_model_version_state",
             (("model", "m"), ("version", "1")))
    self.assertEqual(after[state], manager.State.AVAILABLE)
    self.assertGreaterEqual(
        after[("tf_resnet_serving_model_loads_total",
               (("model", "m"), ("outcome", "ok")))], 1)
    self.assertIn(("tf_resnet_serving_rest_connections", ()), after)


class MonitoringConfigTest(tf.test.TestCase):

  def test_prometheus_path_from_a_monitoring_config(self):
    self.assertEqual(metrics.prometheus_path(
        'prometheus_config: { enable: true, path: "/monitoring/prometheus/'
        'metrics" }'), "/monitoring/prometheus/metrics")
    self.assertEqual(metrics.prometheus_path(
        "prometheus_config { enable: true }"), metrics.DEFAULT_PROMETHEUS_PATH)
    self.assertIsNone(metrics.prometheus_path("prometheus_config {}"))
    with self.assertRaisesRegex(ValueError, "must start with '/'"):
      metrics.prometheus_path('prometheus_config {enable: true path: "m"}')


if __name__ == "__main__":
  tf.test.main()
