r"""Serves exported models over TensorFlow Serving's gRPC protocol.

Flags follow tensorflow_model_server's, so the same command line (and export
directory) runs under the real server when a deployment outgrows one machine:

  python -m tf_resnet.serving.server --port=8500 --model_name=resnet \
      --model_base_path=/models/resnet
  python -m tf_resnet.serving.server --model_config_file=models.config

Services: tensorflow.serving.PredictionService (Classify, Regress, Predict,
MultiInference, GetModelMetadata), tensorflow.serving.ModelService
(GetModelStatus, HandleReloadConfigRequest) and grpc.health.v1.Health;
with --rest_api_port, TF Serving's REST API too (rest_api_handler over
http_server, whose docstring lists the limits and deadlines).
Versions are numbered subdirectories of the base path, polled every
--file_system_poll_wait_seconds; a new version is loaded and warmed up before
it takes traffic. SIGTERM and SIGINT stop accepting requests, drain those in
flight, and exit.
"""

import logging as std_logging
import os
import signal
import sys
import threading

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tf_resnet.serving import grpc_server
from tf_resnet.serving import http_server
from tf_resnet.serving import manager as manager_lib
from tf_resnet.serving import metrics
from tf_resnet.serving import options

_PORT = flags.DEFINE_integer("port", 8500, "gRPC port.")
_REST_API_PORT = flags.DEFINE_integer(
    "rest_api_port", 0, "Port of the REST API (0: off), on --bind_address.")
_MODEL_NAME = flags.DEFINE_string("model_name", "default",
                                  "Name of the model (with --model_base_path).")
_MODEL_BASE_PATH = flags.DEFINE_string(
    "model_base_path", None,
    "Directory of the model's numbered versions (what tf_resnet.export "
    "writes).")
_MODEL_CONFIG_FILE = flags.DEFINE_string(
    "model_config_file", None,
    "A text ModelServerConfig: several models, version policies, labels. "
    "Replaces --model_name and --model_base_path.")
_POLL = flags.DEFINE_float(
    "file_system_poll_wait_seconds", 1.0,
    "Seconds between looks for new versions (0: only at start).")
_ENABLE_BATCHING = flags.DEFINE_bool(
    "enable_batching", False,
    "Merge concurrent requests for the same signature into one run.")
_BATCHING_PARAMETERS_FILE = flags.DEFINE_string(
    "batching_parameters_file", None,
    "A text BatchingParameters file (max_batch_size, batch_timeout_micros, "
    "max_enqueued_batches, num_batch_threads), as tensorflow_model_server's.")
_SSL_CONFIG_FILE = flags.DEFINE_string(
    "ssl_config_file", None,
    "A text SSLConfig (server_key and server_cert PEM contents; custom_ca "
    "and client_verify to require client certificates): serve gRPC over TLS.")
_BIND_ADDRESS = flags.DEFINE_string(
    "bind_address", "127.0.0.1",
    "Address to listen on; 0.0.0.0 (or [::]) for all interfaces.")
_MAX_MESSAGE_BYTES = flags.DEFINE_integer(
    "grpc_max_message_bytes", 256 * 1024 * 1024,
    "Largest gRPC request or response (TF Serving allows up to 2 GiB; "
    "gRPC's own default is 4 MiB).")
_REQUEST_LOG_LEVEL = flags.DEFINE_enum(
    "request_log_level", "info", ["debug", "info", "warning"],
    "Level of the per-request log lines (model, version, signature, status, "
    "latency), which are written at INFO: `warning` hides them.")
_DRAIN_SECONDS = flags.DEFINE_float(
    "drain_seconds", 30.0, "On SIGTERM, how long in-flight requests may take.")

# Transport: threads, limits, timeouts and metrics (tensorflow_model_server's
# flags and defaults).
_CPUS = len(os.sched_getaffinity(0))
_GRPC_MAX_THREADS = flags.DEFINE_integer(
    "grpc_max_threads", 4 * _CPUS,
    "Threads serving gRPC requests, and the most calls in flight: more get "
    "RESOURCE_EXHAUSTED, as tensorflow_model_server's (default 4 x CPUs).")
_REST_API_NUM_THREADS = flags.DEFINE_integer(
    "rest_api_num_threads", 4 * _CPUS,
    "Threads running REST requests (default 4 x CPUs, as TF Serving); "
    "connections waiting for their request hold none.")
_REST_API_TIMEOUT_IN_MS = flags.DEFINE_integer(
    "rest_api_timeout_in_ms", 30000,
    "Deadline of a REST request once its body is in; past it the client gets "
    "504 and, if it has not started, the request is not run. 0: none.")
_REST_API_ENABLE_CORS_SUPPORT = flags.DEFINE_bool(
    "rest_api_enable_cors_support", False,
    "Add CORS headers (Access-Control-Allow-Origin: *) to REST answers.")
_MONITORING_CONFIG_FILE = flags.DEFINE_string(
    "monitoring_config_file", None,
    "A text MonitoringConfig; with prometheus_config { enable: true path: "
    "\"/monitoring/prometheus/metrics\" }, Prometheus metrics are served at "
    "that path on the REST port.")


def rest_options(max_body_bytes: int, log_requests: bool
                 ) -> http_server.RestOptions:
  """The REST port's options from the transport flags.

  Raises:
    ValueError: for a bad monitoring config or option.
  """
  path = None
  if _MONITORING_CONFIG_FILE.value:
    try:
      with open(_MONITORING_CONFIG_FILE.value) as f:
        path = metrics.prometheus_path(f.read())
    except (OSError, ValueError, text_format.ParseError) as e:
      raise ValueError("cannot read --monitoring_config_file "
                       f"{_MONITORING_CONFIG_FILE.value}: {e}") from None
    if path and not _REST_API_PORT.value:
      logging.warning("--monitoring_config_file: Prometheus metrics are "
                      "served on the REST port, and --rest_api_port is off")
  return http_server.RestOptions(
      num_threads=_REST_API_NUM_THREADS.value,
      timeout_ms=_REST_API_TIMEOUT_IN_MS.value, max_body_bytes=max_body_bytes,
      cors=_REST_API_ENABLE_CORS_SUPPORT.value, prometheus_path=path,
      log_requests=log_requests)


def load_config(path: str) -> model_server_config_pb2.ModelServerConfig:
  """Reads a text-format ModelServerConfig."""
  config = model_server_config_pb2.ModelServerConfig()
  with open(path) as f:
    text_format.Parse(f.read(), config)
  return config


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if bool(_MODEL_CONFIG_FILE.value) == bool(_MODEL_BASE_PATH.value):
    sys.exit("error: give exactly one of --model_base_path (with "
             "--model_name) or --model_config_file")
  try:
    config = (load_config(_MODEL_CONFIG_FILE.value) if _MODEL_CONFIG_FILE.value
              else manager_lib.single_model_config(_MODEL_NAME.value,
                                                   _MODEL_BASE_PATH.value))
  except (OSError, text_format.ParseError) as e:
    sys.exit(f"error: cannot read --model_config_file: {e}")
  for model in config.model_config_list.config:
    if not os.path.isdir(model.base_path):
      sys.exit(f"error: model {model.name}: base path {model.base_path} "
               "does not exist")
  batching = ssl_config = None
  try:
    rest = rest_options(_MAX_MESSAGE_BYTES.value, log_requests=True)
    if _ENABLE_BATCHING.value:
      text = None
      if _BATCHING_PARAMETERS_FILE.value:
        with open(_BATCHING_PARAMETERS_FILE.value) as f:
          text = f.read()
      batching = options.parse_batching(text)
    elif _BATCHING_PARAMETERS_FILE.value:
      sys.exit("error: --batching_parameters_file needs --enable_batching")
    if _SSL_CONFIG_FILE.value:
      with open(_SSL_CONFIG_FILE.value) as f:
        ssl_config = options.parse_ssl(f.read())
  except (OSError, ValueError, text_format.ParseError) as e:
    sys.exit(f"error: {e}")
  std_logging.basicConfig(
      level=std_logging.INFO, stream=sys.stderr,
      format="%(asctime)s %(levelname)s %(name)s %(message)s")
  logging.set_verbosity(logging.WARNING)  # TensorFlow's own chatter.
  # The server's lines (one per request, version loads) at their own level.
  std_logging.getLogger("tf_resnet.serving").setLevel(std_logging.INFO)
  std_logging.getLogger("tf_resnet.serving.requests").setLevel(
      _REQUEST_LOG_LEVEL.value.upper())
  try:
    server = grpc_server.Server(
        config, port=_PORT.value, bind_address=_BIND_ADDRESS.value,
        poll_seconds=_POLL.value, workers=_GRPC_MAX_THREADS.value,
        max_message_bytes=_MAX_MESSAGE_BYTES.value, batching=batching,
        ssl_config=ssl_config, rest_port=_REST_API_PORT.value or None,
        rest_options=rest)
  except (RuntimeError, manager_lib.ServingError) as e:
    sys.exit(f"error: {e}")
  statuses = {m.name: {v: s.state for v, s in m.status.items()}
              for m in server.models.models()}
  print(f"Serving gRPC on {_BIND_ADDRESS.value}:{server.port}; models: "
        f"{statuses} (30 = AVAILABLE)", flush=True)
  if server.rest_port:
    print(f"Serving REST on {_BIND_ADDRESS.value}:{server.rest_port}",
          flush=True)
  stopped = threading.Event()

  def on_signal(signum, frame):
    del frame
    print(f"Signal {signum}: draining requests, then stopping", flush=True)
    threading.Thread(target=lambda: (server.stop(_DRAIN_SECONDS.value),
                                     stopped.set())).start()

  signal.signal(signal.SIGTERM, on_signal)
  signal.signal(signal.SIGINT, on_signal)
  while not stopped.wait(0.5):
    pass
  print("Stopped", flush=True)


def run():
  """Console-script entry point."""
  app.run(main)


if __name__ == "__main__":
  run()
