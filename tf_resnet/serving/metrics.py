"""The server's Prometheus metrics, in one place.

Defined with `prometheus_client` (the Prometheus project's own Python library)
in its default registry, which also carries the process's CPU, memory and
file descriptors. Served on the REST port at the path of
`--monitoring_config_file`'s `prometheus_config`, as TF Serving does.

The rest of the server calls the small functions below (one line at each
event), so the names and labels are defined once:

  - requests: `observe_request` (both APIs; labels model, version,
    signature, api=grpc|rest, method and status),
  - batching: `set_batch_queue_size`, `observe_batch`,
  - models: `model_loaded`, `model_unloaded`, and `watch_models` for the state
    of every version at scrape time,
  - REST connections: `rest_connection_opened` / `_closed` / `_rejected`.
"""

import threading
import weakref
from typing import Optional

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
import prometheus_client
from prometheus_client import core



def _monitoring_config_class():
  """TF Serving's MonitoringConfig (config/monitoring_config.proto).

  tensorflow-serving-api does not ship it, so it is declared here with the
  same package, names and numbers: a file written for tensorflow_model_server
  parses the same.
  """
  _F = descriptor_pb2.FieldDescriptorProto  # pylint: disable=invalid-name
  proto = descriptor_pb2.FileDescriptorProto(
      name="tf_resnet_monitoring_config.proto", package="tensorflow.serving",
      syntax="proto3")
  prometheus = proto.message_type.add(name="PrometheusConfig")
  prometheus.field.add(name="enable", number=1, type=_F.TYPE_BOOL,
                       label=_F.LABEL_OPTIONAL)
  prometheus.field.add(name="path", number=2, type=_F.TYPE_STRING,
                       label=_F.LABEL_OPTIONAL)
  monitoring = proto.message_type.add(name="MonitoringConfig")
  monitoring.field.add(name="prometheus_config", number=1,
                       type=_F.TYPE_MESSAGE,
                       type_name=".tensorflow.serving.PrometheusConfig",
                       label=_F.LABEL_OPTIONAL)
  pool = descriptor_pool.DescriptorPool()
  pool.Add(proto)
  return message_factory.GetMessageClass(
      pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


MonitoringConfig = _monitoring_config_class()
# Counters without their `_created` twin series (half the page, rarely used).
prometheus_client.disable_created_metrics()
_PREFIX = "tf_resnet_serving_"
REGISTRY = prometheus_client.REGISTRY
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
# TF Serving's PrometheusExporter::kPrometheusPath.
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"

_REQUEST_LABELS = ("model", "version", "signature", "api", "method", "status")
_REQUESTS = prometheus_client.Counter(
    _PREFIX + "requests", "Requests answered, by model, version, signature, "
    "API (grpc or rest), method and status (gRPC status code name).",
    _REQUEST_LABELS)
_LATENCY = prometheus_client.Histogram(
    _PREFIX + "request_latency_seconds",
    "Time from a request's arrival to its answer.", _REQUEST_LABELS,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
             2.5, 5.0, 10.0, 30.0, 60.0))
_QUEUE = prometheus_client.Gauge(
    _PREFIX + "batch_queue_size",
    "Requests waiting in a batching queue (one per version and signature).",
    ["queue"])
_BATCH = prometheus_client.Histogram(
    _PREFIX + "batch_size", "Examples in each batch run.", ["queue"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024))
_LOADS = prometheus_client.Counter(
    _PREFIX + "model_loads", "Model version loads, by outcome (ok, error).",
    ["model", "outcome"])
_UNLOADS = prometheus_client.Counter(
    _PREFIX + "model_unloads", "Model versions unloaded.", ["model"])
_CONNECTIONS = prometheus_client.Gauge(
    _PREFIX + "rest_connections", "Open connections to the REST port.")
_REJECTED = prometheus_client.Counter(
    _PREFIX + "rest_rejected_connections",
    "REST connections closed at once because the limit of open ones was "
    "reached.")


def observe_request(*, api: str, method: str, model: str,
                    version: Optional[int], signature: Optional[str],
                    status: str, seconds: float) -> None:
  """Counts one answered request and its latency."""
  labels = (model, "" if version is None else str(version), signature or "",
            api, method, status)
  _REQUESTS.labels(*labels).inc()
  _LATENCY.labels(*labels).observe(seconds)


def set_batch_queue_size(queue: str, size: int) -> None:
  """The number of requests now waiting in a batching queue."""
  _QUEUE.labels(queue).set(size)


def observe_batch(queue: str, size: int) -> None:
  """One batch of `size` examples was run."""
  _BATCH.labels(queue).observe(size)


def model_loaded(model: str, ok: bool) -> None:
  """A version of `model` loaded (ok) or failed to."""
  _LOADS.labels(model, "ok" if ok else "error").inc()


def model_unloaded(model: str) -> None:
  """A version of `model` was unloaded."""
  _UNLOADS.labels(model).inc()


def rest_connection_opened() -> None:
  _CONNECTIONS.inc()


def rest_connection_closed() -> None:
  _CONNECTIONS.dec()


def rest_connection_rejected() -> None:
  _REJECTED.inc()


class _VersionStates:
  """Collects the state of every version of the watched managers at scrape."""

  def __init__(self):
    self._managers = weakref.WeakSet()
    self._lock = threading.Lock()

  def add(self, manager) -> None:
    with self._lock:
      self._managers.add(manager)

  def discard(self, manager) -> None:
    with self._lock:
      self._managers.discard(manager)

  def describe(self):
    return [self._family()]

  def _family(self):
    return core.GaugeMetricFamily(
        _PREFIX + "model_version_state",
        "State of each model version as TF Serving's ModelVersionStatus.State "
        "(10 START, 20 LOADING, 30 AVAILABLE, 40 UNLOADING, 50 END).",
        labels=["model", "version"])

  def collect(self):
    family = self._family()
    with self._lock:
      managers = list(self._managers)
    for manager in managers:
      for model in manager.models():
        for version, status in sorted(dict(model.status).items()):
          family.add_metric([model.name, str(version)], status.state)
    yield family


_STATES = _VersionStates()
REGISTRY.register(_STATES)


def watch_models(manager) -> None:
  """Reports the version states of a ModelManager at every scrape."""
  _STATES.add(manager)


def unwatch_models(manager) -> None:
  _STATES.discard(manager)


def scrape() -> bytes:
  """The metrics in Prometheus's text format."""
  return prometheus_client.generate_latest(REGISTRY)


def prometheus_path(text: str) -> Optional[str]:
  """The Prometheus path of a text MonitoringConfig (None: not enabled).

  Args:
    text: a `--monitoring_config_file`'s contents.

  Returns:
    The path metrics are served at, or None when Prometheus is off.

  Raises:
    text_format.ParseError: if the text is not a MonitoringConfig.
    ValueError: if the path does not start with `/`.
  """
  config = text_format.Parse(text, MonitoringConfig())
  if not config.prometheus_config.enable:
    return None
  path = config.prometheus_config.path or DEFAULT_PROMETHEUS_PATH
  if not path.startswith("/"):
    raise ValueError(f"prometheus_config path must start with '/', not "
                     f"{path!r}")
  return path
