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
it takes traffic. As tensorflow_model_server, the ports open only once the
newest version of every configured model serves (failed loads are retried
meanwhile; a model with no version yet is waited for); a version that fails
its last retry ends the start with `Failed to start server. Error: UNKNOWN:
N servable(s) did not become available: ...` and exit status 255. SIGTERM
and SIGINT stop accepting requests, drain those in flight, and exit.

Every flag tensorflow_model_server defines (model_servers/main.cc) is
accepted; those that mean nothing here (GPU, TPU, TF Lite, ALTS, ...) log one
line saying so. As main.cc does, an unknown argument prints
`unknown argument: X` and the usage, and the server starts anyway.
Unlike tensorflow_model_server, which listens on all interfaces, this server
listens on 127.0.0.1 unless --bind_address says otherwise (0.0.0.0 in a
container or a Kubernetes pod). At start it logs TF Serving's lines with the
address it listens on ("Running gRPC ModelServer at 127.0.0.1:8500 ...",
"Exporting HTTP/REST API at:127.0.0.1:8501 ..."), and a warning when that
address is loopback only.
"""

import ipaddress
import logging as std_logging
import os
import signal
import sys
import threading
from typing import Optional

from tf_resnet import startup  # pylint: disable=g-import-not-at-top

# TensorFlow's errors stay visible to operators (level 2, not the other
# binaries' 3); its load-time INFO and WARNING lines do not, and on a machine
# without a GPU its cuInit error becomes one "No GPU" line (main), unless
# TF_CPP_MIN_LOG_LEVEL says otherwise.
_QUIET = "TF_CPP_MIN_LOG_LEVEL" not in os.environ
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN stays TensorFlow's choice here (on for CPUs with AVX-512 VNNI/BF16
# or AMX, Eigen elsewhere), unlike the training binaries, which turn it on
# on every x86-64 CPU: it speeds training batches on AVX2, but a request of
# one image there runs ~20x longer (ResNet-50 2.1-2.8 s of CPU against
# 0.13-0.16 s with Eigen; docs/performance.md#onednn-and-the-server).
# TensorFlow's preload of Keras is skipped, as in the other binaries: no
# servable needs Keras' registrations, and it is 2.5-3.5 s of every start
# (startup.skip_keras_preload).
startup.skip_keras_preload()
if _QUIET:
  startup.import_tensorflow(2)
  # Before absl's app.run, whose start-up makes TensorFlow's first device
  # query (a call_after_init hook of tensorflow.python.distribute).
  _GPUS, _CUINIT_ERROR = startup.find_gpus()

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags
from absl import logging
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tf_resnet.serving import grpc_server
from tf_resnet.serving import http_server
from tf_resnet.serving import manager as manager_lib
from tf_resnet.serving import memory
from tf_resnet.serving import metrics
from tf_resnet.serving import model_config
from tf_resnet.serving import options

_PORT = flags.DEFINE_integer("port", 8500, "gRPC port.")
_REST_API_PORT = flags.DEFINE_integer(
    "rest_api_port", 0, "Port of the REST API (0: off), on --bind_address.")
_MODEL_NAME = flags.DEFINE_string(
    "model_name", "default",
    "Name of the model (ignored if --model_config_file is set).")
_MODEL_BASE_PATH = flags.DEFINE_string(
    "model_base_path", None,
    "Directory of the model's numbered versions (what tf_resnet.export "
    "writes); ignored if --model_config_file is set.")
_MODEL_CONFIG_FILE = flags.DEFINE_string(
    "model_config_file", None,
    "A text ModelServerConfig: several models, version policies, labels. "
    "If set, --model_name and --model_base_path are ignored (as TF Serving; "
    "its Docker image always passes them).")
_POLL = flags.DEFINE_float(
    "file_system_poll_wait_seconds", 1.0,
    "Seconds between looks for new versions (0: only at start).")
_ENABLE_BATCHING = flags.DEFINE_bool(
    "enable_batching", False,
    "Merge concurrent requests for the same signature into one run.")
_BATCHING_PARAMETERS_FILE = flags.DEFINE_string(
    "batching_parameters_file", None,
    "A text BatchingParameters file (every field of TF Serving's message), "
    "as tensorflow_model_server's.")
_SSL_CONFIG_FILE = flags.DEFINE_string(
    "ssl_config_file", None,
    "A text SSLConfig (server_key and server_cert PEM contents; custom_ca "
    "and client_verify to require client certificates): serve gRPC over TLS.")
_BIND_ADDRESS = flags.DEFINE_string(
    "bind_address", "127.0.0.1",
    "Address to listen on. tensorflow_model_server always listens on all "
    "interfaces; this server listens on 127.0.0.1 unless told otherwise: "
    "0.0.0.0 (or [::]) for all interfaces, as TF Serving.")
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


# tensorflow_model_server's flags for the model lifecycle, the gRPC endpoint
# and TensorFlow's runtime (main.cc), with its defaults.
_GRPC_SOCKET_PATH = flags.DEFINE_string(
    "grpc_socket_path", "",
    "If non-empty, also serve gRPC on this Unix socket path.")
_GRPC_CHANNEL_ARGUMENTS = flags.DEFINE_string(
    "grpc_channel_arguments", "",
    "Comma-separated gRPC server arguments, e.g. "
    "grpc.max_connection_age_ms=2000 (integers are passed as integers).")
_MODEL_CONFIG_FILE_POLL = flags.DEFINE_integer(
    "model_config_file_poll_wait_seconds", 0,
    "Seconds between reads of --model_config_file (0: read once, at start).")
_MAX_NUM_LOAD_RETRIES = flags.DEFINE_integer(
    "max_num_load_retries", 5,
    "Retries of a failed version load before giving up (0: one attempt).")
_LOAD_RETRY_INTERVAL_MICROS = flags.DEFINE_integer(
    "load_retry_interval_micros", 60 * 1000 * 1000,
    "Microseconds between load retries (negative: no wait).")
_ENABLE_MODEL_WARMUP = flags.DEFINE_bool(
    "enable_model_warmup", True,
    "Replay a version's assets.extra/tf_serving_warmup_requests before it "
    "takes traffic.")
_WARMUP_ITERATIONS = flags.DEFINE_integer(
    "num_request_iterations_for_warmup", 0,
    "Runs of each warm-up request (used if > 0; else 1).")
_SAVED_MODEL_TAGS = flags.DEFINE_string(
    "saved_model_tags", "serve",
    "Comma-separated tags of the MetaGraph to load.")
_INTRA_OP = flags.DEFINE_integer(
    "tensorflow_intra_op_parallelism", 0,
    "Threads that parallelize one op (0: TensorFlow chooses).")
_INTER_OP = flags.DEFINE_integer(
    "tensorflow_inter_op_parallelism", 0,
    "Ops run at once (0: TensorFlow chooses).")
_SESSION_PARALLELISM = flags.DEFINE_integer(
    "tensorflow_session_parallelism", 0,
    "Both thread pools' size when the two flags above are 0 (0: auto).")
_SAVED_MODEL_RUNNER = flags.DEFINE_enum(
    "saved_model_runner", "session", ["session", "function"],
    "How TF2 SavedModels run: in a Session, as the C++ server runs every "
    "SavedModel, or as tf.functions (tf.saved_model.load), which holds the "
    "GIL longer while it loads and so slows the other models' requests "
    "(docs/serving.md). TF1 exports always run in a Session.")
_MODEL_LOAD_NICENESS = flags.DEFINE_integer(
    "model_load_niceness", 10,
    "Model loads and unloads run on one thread whose nice value is raised by "
    "this much (Linux), so requests to the models already serving get the "
    "CPU first (docs/serving.md); 0 loads at the requests' priority, as "
    "tensorflow_model_server does.", lower_bound=0, upper_bound=19)
_SESSION_CONFIG_FILE = flags.DEFINE_string(
    "tensorflow_session_config_file", "",
    "A text ConfigProto for the Sessions that run SavedModels; as in TF "
    "Serving, its thread counts are replaced by the parallelism flags "
    "(0: TensorFlow chooses).")
_ALLOW_UNAVAILABLE_LABELS = flags.DEFINE_bool(
    "allow_version_labels_for_unavailable_models", False,
    "Allow labels that name versions not yet available (e.g. at start).")
_ENABLE_PROFILER = flags.DEFINE_bool(
    "enable_profiler", True,
    "Serve TensorFlow's tensorflow.ProfilerService on the gRPC port, as "
    "TF Serving does (TensorBoard's \"Capture profile\" at this address); "
    "TensorFlow's profiler server itself starts on the first call, on a "
    "free port of its own.")
_ENABLE_HEALTH = flags.DEFINE_bool(
    "enable_grpc_healthcheck_service", True,
    "Serve grpc.health.v1.Health for \"\", ModelService, PredictionService "
    "and their full names (TF Serving's default is false; here it is on "
    "unless turned off).")
_VERSION = flags.DEFINE_bool("version", False, "Print the versions and exit.")

# Flags of tensorflow_model_server accepted for command-line compatibility
# that change nothing here; each one given logs why.
_NO_EFFECT = {
    "enable_per_model_batching_parameters":
        "one BatchingParameters applies to every model",
    "num_load_threads": "versions load one at a time, on one low-priority "
                        "thread (--model_load_niceness)",
    "num_unload_threads": "versions unload one at a time, on the load "
                          "thread (--model_load_niceness)",
    "flush_filesystem_caches": "there are no filesystem caches to flush",
    "use_alts_credentials": "ALTS needs Google Cloud; use --ssl_config_file",
    "platform_config_file": "only the tensorflow platform is served",
    "per_process_gpu_memory_fraction": "this server runs on the CPU",
    "remove_unused_fields_from_bundle_metagraph":
        "the MetaGraph is kept as written",
    "prefer_tflite_model": "TensorFlow Lite models are not served",
    "num_tflite_pools": "TensorFlow Lite models are not served",
    "num_tflite_interpreters_per_pool": "TensorFlow Lite models are not served",
    "enable_signature_method_name_check":
        "signatures are checked by their inputs and outputs, not method name",
    "xla_cpu_compilation_enabled": "XLA is left as TensorFlow configures it",
    "xla_gpu_compilation_enabled": "this server runs on the CPU",
    "thread_pool_factory_config_file": "inter-op threads are TensorFlow's own",
    "mixed_precision": "models run in the precision they were exported in",
    "skip_initialize_tpu": "there is no TPU",
    "enable_serialization_as_tensor_content":
        "outputs are always sent in typed fields",
}
flags.DEFINE_bool("enable_per_model_batching_parameters", False,
                  "No effect here.")
flags.DEFINE_integer("num_load_threads", 0, "No effect here.")
flags.DEFINE_integer("num_unload_threads", 0, "No effect here.")
flags.DEFINE_bool("flush_filesystem_caches", True, "No effect here.")
flags.DEFINE_bool("use_alts_credentials", False, "No effect here.")
flags.DEFINE_string("platform_config_file", "", "No effect here.")
flags.DEFINE_float("per_process_gpu_memory_fraction", 0.0, "No effect here.")
flags.DEFINE_bool("remove_unused_fields_from_bundle_metagraph", True,
                  "No effect here.")
flags.DEFINE_bool("prefer_tflite_model", False, "No effect here.")
flags.DEFINE_integer("num_tflite_pools", 0, "No effect here.")
flags.DEFINE_integer("num_tflite_interpreters_per_pool", 1, "No effect here.")
flags.DEFINE_bool("enable_signature_method_name_check", False,
                  "No effect here.")
flags.DEFINE_bool("xla_cpu_compilation_enabled", False, "No effect here.")
flags.DEFINE_bool("xla_gpu_compilation_enabled", False, "No effect here.")
flags.DEFINE_string("thread_pool_factory_config_file", "", "No effect here.")
flags.DEFINE_string("mixed_precision", "", "No effect here.")
flags.DEFINE_bool("skip_initialize_tpu", False, "No effect here.")
flags.DEFINE_bool("enable_serialization_as_tensor_content", False,
                  "No effect here.")


def load_config(path: str) -> model_server_config_pb2.ModelServerConfig:
  """Reads a text-format ModelServerConfig."""
  return model_config.read_config(path)


def parse_channel_arguments(text: str) -> list[tuple[str, object]]:
  """`k=v,k2=v2` as gRPC server options; integers as ints (as server.cc).

  Raises:
    ValueError: for an entry without `=`.
  """
  arguments = []
  for entry in filter(None, text.split(",")):
    key, sep, value = entry.partition("=")
    if not sep:
      raise ValueError(f"--grpc_channel_arguments: {entry!r} is not key=value")
    try:
      arguments.append((key, int(value)))
    except ValueError:
      arguments.append((key, value))
  return arguments


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's parsing, but unknown flags are kept for main (as main.cc)."""
  try:
    return flags.FLAGS(argv, known_only=True)
  except flags.Error as e:
    sys.stderr.write(f"FATAL Flags parsing error: {e}\n")
    app.usage(shorthelp=True, writeto_stdout=True)
    sys.exit(1)


def _lifecycle() -> manager_lib.LifecycleOptions:
  """The lifecycle options; the Session config as TF Serving's server.cc.

  Raises:
    ValueError: an unreadable or malformed session config file.
  """
  intra = _INTRA_OP.value or _SESSION_PARALLELISM.value
  inter = _INTER_OP.value or _SESSION_PARALLELISM.value
  session_config = None
  if intra or inter or _SESSION_CONFIG_FILE.value:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    session_config = tf.compat.v1.ConfigProto()
    if _SESSION_CONFIG_FILE.value:
      try:
        with open(_SESSION_CONFIG_FILE.value) as f:
          text_format.Parse(f.read(), session_config)
      except (OSError, text_format.ParseError) as e:
        raise ValueError(f"cannot read --tensorflow_session_config_file "
                         f"{_SESSION_CONFIG_FILE.value}: {e}") from e
    # server.cc then sets both thread counts from the flags, whatever the
    # file said: intra and inter if either is given, else the session
    # parallelism (0 by default, which lets TensorFlow choose).
    session_config.intra_op_parallelism_threads = intra
    session_config.inter_op_parallelism_threads = inter
    if intra or inter:
      # Before any op runs, or TensorFlow refuses the change.
      tf.config.threading.set_intra_op_parallelism_threads(intra)
      tf.config.threading.set_inter_op_parallelism_threads(inter)
  return manager_lib.LifecycleOptions(
      poll_seconds=max(0.0, _POLL.value),
      max_num_load_retries=max(0, _MAX_NUM_LOAD_RETRIES.value),
      load_retry_interval_seconds=max(0, _LOAD_RETRY_INTERVAL_MICROS.value)
      / 1e6,
      enable_model_warmup=_ENABLE_MODEL_WARMUP.value,
      num_request_iterations_for_warmup=max(0, _WARMUP_ITERATIONS.value),
      saved_model_tags=tuple(t.strip() for t in
                             _SAVED_MODEL_TAGS.value.split(",") if t.strip()),
      allow_version_labels_for_unavailable_models=(
          _ALLOW_UNAVAILABLE_LABELS.value),
      session_config=session_config,
      saved_model_runner=_SAVED_MODEL_RUNNER.value,
      load_niceness=_MODEL_LOAD_NICENESS.value)


def _log_addresses(log, bind_address: str, port: int,
                   rest_port: Optional[int]) -> None:
  """TF Serving's start-up lines with the address bound, and what it means.

  tensorflow_model_server logs "Running gRPC ModelServer at 0.0.0.0:8500 ..."
  and "Exporting HTTP/REST API at:localhost:8501 ..." (model_servers/
  server.cc:430 and 451) and listens on all interfaces; this server names
  the address it listens on, and says so when that is loopback only (a
  container's published port or a Kubernetes Service then reaches nothing).
  """
  host = (f"[{bind_address}]" if ":" in bind_address
          and not bind_address.startswith("[") else bind_address)
  log.info("Running gRPC ModelServer at %s:%d ...", host, port)
  if rest_port:
    log.info("Exporting HTTP/REST API at:%s:%d ...", host, rest_port)
  try:
    loopback = ipaddress.ip_address(bind_address.strip("[]")).is_loopback
  except ValueError:
    loopback = bind_address == "localhost"
  if loopback:
    log.warning("Listening on %s only: clients on other machines, or outside "
                "this container, cannot connect. tensorflow_model_server "
                "listens on all interfaces; --bind_address=0.0.0.0 does that "
                "here.", bind_address)


def main(argv):
  if _VERSION.value:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from tf_resnet import __version__  # pylint: disable=g-import-not-at-top
    print(f"TensorFlow ModelServer: tf_resnet {__version__} (TF Serving "
          f"protocol)\nTensorFlow Library: {tf.__version__}")
    return
  if len(argv) > 1:
    # As tensorflow_model_server: say so, show the usage, and start anyway.
    print(f"unknown argument: {argv[1]}", flush=True)
    app.usage(shorthelp=True, writeto_stdout=True)
  std_logging.basicConfig(
      level=std_logging.INFO, stream=sys.stderr,
      format="%(asctime)s %(levelname)s %(name)s %(message)s")
  log = std_logging.getLogger("tf_resnet.serving")
  for name, why in _NO_EFFECT.items():
    if flags.FLAGS[name].present:
      log.warning("--%s is accepted for compatibility with "
                  "tensorflow_model_server and has no effect here: %s", name,
                  why)
  if _MODEL_CONFIG_FILE.value:
    if _MODEL_BASE_PATH.value:
      log.info("--model_config_file is set: --model_name and "
               "--model_base_path are ignored")
  elif not _MODEL_BASE_PATH.value:
    sys.exit("error: give --model_base_path (with --model_name) or "
             "--model_config_file")
  try:
    config = (load_config(_MODEL_CONFIG_FILE.value) if _MODEL_CONFIG_FILE.value
              else model_config.single_model_config(_MODEL_NAME.value,
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
    channel_arguments = parse_channel_arguments(_GRPC_CHANNEL_ARGUMENTS.value)
    lifecycle = _lifecycle()
  except (OSError, ValueError, text_format.ParseError) as e:
    sys.exit(f"error: {e}")
  logging.set_verbosity(logging.WARNING)  # TensorFlow's own chatter.
  # The server's lines (one per request, version loads) at their own level.
  log.setLevel(std_logging.INFO)
  std_logging.getLogger("tf_resnet.serving.requests").setLevel(
      _REQUEST_LOG_LEVEL.value.upper())
  if _QUIET and not _GPUS:
    log.info("No GPU%s: the models run on the CPU",
             f" (CUDA: {_CUINIT_ERROR})" if _CUINIT_ERROR else "")
  frozen = memory.freeze_start_up_objects()
  log.debug("%d start-up objects frozen out of the collector's walks", frozen)
  try:
    server = grpc_server.Server(
        config, port=_PORT.value, bind_address=_BIND_ADDRESS.value,
        workers=_GRPC_MAX_THREADS.value,
        max_message_bytes=_MAX_MESSAGE_BYTES.value, batching=batching,
        ssl_config=ssl_config, rest_port=_REST_API_PORT.value or None,
        lifecycle=lifecycle, socket_path=_GRPC_SOCKET_PATH.value or None,
        channel_arguments=channel_arguments,
        config_file=_MODEL_CONFIG_FILE.value,
        config_file_poll_seconds=_MODEL_CONFIG_FILE_POLL.value,
        health=_ENABLE_HEALTH.value, rest_options=rest, wait_for_models=True,
        profiler=_ENABLE_PROFILER.value)
  except manager_lib.ServingError as e:
    # tensorflow_model_server's words and exit status (main.cc returns -1).
    print(f"Failed to start server. Error: {e.code.name}: {e.message}",
          flush=True)
    sys.exit(255)
  except RuntimeError as e:
    sys.exit(f"error: {e}")
  statuses = {m.name: {v: s.state for v, s in m.status.items()}
              for m in server.models.models()}
  _log_addresses(log, _BIND_ADDRESS.value, server.port, server.rest_port)
  print(f"Serving gRPC on {_BIND_ADDRESS.value}:{server.port}; models: "
        f"{statuses} (30 = AVAILABLE)", flush=True)
  if _GRPC_SOCKET_PATH.value:
    print(f"Serving gRPC on unix:{_GRPC_SOCKET_PATH.value}", flush=True)
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
  app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
  run()
