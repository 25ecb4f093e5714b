"""The gRPC server object: PredictionService, ModelService, ProfilerService and health over a ModelManager."""

import concurrent.futures
import logging
from typing import Optional, Sequence

import grpc
from grpc_health.v1 import health as health_lib
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
from tensorflow_serving.config import model_server_config_pb2

from tf_resnet.serving import http_server
from tf_resnet.serving import interceptors
from tf_resnet.serving import manager as manager_lib
from tf_resnet.serving import metrics
from tf_resnet.serving import options
from tf_resnet.serving import profiler as profiler_lib
from tf_resnet.serving import services


# The overall status (""), the names tensorflow_model_server registers
# (server.cc: "ModelService", "PredictionService"), and the services' full
# names, which grpc_health_probe and Kubernetes' gRPC probes are usually
# given.
HEALTH_SERVICE_NAMES = ("", "ModelService", "PredictionService",
                        "tensorflow.serving.ModelService",
                        "tensorflow.serving.PredictionService")


class Server:
  """A running TF-Serving-protocol server (used by the binary and by tests)."""

  def __init__(self, config: model_server_config_pb2.ModelServerConfig, *,
               port: int = 0, bind_address: str = "127.0.0.1",
               poll_seconds: float = 1.0, workers: int = 8,
               max_message_bytes: int = 256 * 1024 * 1024,
               log_requests: bool = True,
               batching: Optional[options.BatchingParameters] = None,
               ssl_config=None,
               rest_port: Optional[int] = None,
               lifecycle: Optional[manager_lib.LifecycleOptions] = None,
               socket_path: Optional[str] = None,
               channel_arguments: Sequence[tuple[str, object]] = (),
               config_file: Optional[str] = None,
               config_file_poll_seconds: float = 0.0,
               health: bool = True,
               rest_options: Optional[http_server.RestOptions] = None,
               max_concurrent_rpcs: Optional[int] = None,
               wait_for_models: bool = False,
               profiler: bool = True):
    """Loads the models and starts serving.

    Args:
      config: the models to serve.
      port: gRPC port; 0 picks a free one (see `self.port`).
      bind_address: the address to listen on.
      poll_seconds: seconds between looks for new versions (0: never).
      workers: gRPC request threads.
      max_message_bytes: gRPC message limit, both directions.
      log_requests: one log line per request.
      batching: merge concurrent requests per signature (None: off).
      ssl_config: an `options.SSLConfig` for TLS (None: plaintext).
      rest_port: port of TF Serving's REST API, on `bind_address` and
        without TLS as in TF Serving; 0 picks a free one (see
        `self.rest_port`); None: off.
      lifecycle: how versions load, retry, warm up and unload (None: TF
        Serving's defaults, with `poll_seconds`).
      socket_path: also serve gRPC on this Unix socket (--grpc_socket_path).
      channel_arguments: extra gRPC server options (--grpc_channel_arguments),
        applied after the message limits, so they can override them.
      config_file: the --model_config_file `config` came from, re-read every
        `config_file_poll_seconds` (0: never).
      config_file_poll_seconds: see `config_file`.
      health: serve grpc.health.v1.Health (HEALTH_SERVICE_NAMES).
      rest_options: the REST port's threads, limits, timeouts and metrics
        path (`http_server.RestOptions`; default: its defaults, with
        max_body_bytes = `max_message_bytes`).
      max_concurrent_rpcs: gRPC calls in flight (running or waiting for a
        thread); more get RESOURCE_EXHAUSTED, as TF Serving's
        `--grpc_max_threads`. None: as many as `workers`.
      wait_for_models: open the ports only once every model's newest
        version serves, retrying failed loads meanwhile, as
        tensorflow_model_server does (`ModelManager.wait_for_initial_models`);
        False: serve at once, whatever loaded on the first attempt.
      profiler: serve TensorFlow's ProfilerService on the gRPC port, as TF
        Serving's --enable_profiler (`profiler.py`).

    Raises:
      RuntimeError: if a port cannot be bound.
      manager_lib.ServingError: with `wait_for_models`, when a model's newest
        version failed its last retry (TF Serving's UNKNOWN "N servable(s) did
        not become available").
    """
    self.models = manager_lib.ModelManager(config, poll_seconds, batching,
                                           lifecycle)
    if wait_for_models:
      self.models.start()  # Retries failed loads while we wait.
      try:
        self.models.wait_for_initial_models()
      except manager_lib.ServingError:
        self.models.stop()
        raise
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes),
               *channel_arguments]
    # The bound is the interceptor's, so that a refused call gets TF
    # Serving's words; gRPC's own pool runs nothing the interceptor admits.
    self._interceptor = interceptors.RequestInterceptor(
        max_concurrent_rpcs=max_concurrent_rpcs or workers, workers=workers)
    self._grpc = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=workers),
        options=options, interceptors=[self._interceptor])
    services.add_to_server(self._grpc, self.models, log_requests)
    if profiler:  # As TF Serving's server.cc.
      profiler_lib.add_to_server(self._grpc)
      logging.getLogger("tf_resnet.serving").info(
          "Profiler service is enabled")
    self.health = None
    if health:
      self.health = health_lib.HealthServicer()
      health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
    address = (f"[{bind_address}]" if ":" in bind_address
               and not bind_address.startswith("[") else bind_address)
    if ssl_config is None:
      self.port = self._grpc.add_insecure_port(f"{address}:{port}")
    else:
      credentials = grpc.ssl_server_credentials(
          [(ssl_config.server_key.encode(), ssl_config.server_cert.encode())],
          root_certificates=(ssl_config.custom_ca.encode()
                             if ssl_config.custom_ca else None),
          require_client_auth=ssl_config.client_verify)
      self.port = self._grpc.add_secure_port(f"{address}:{port}",
                                             credentials)
    if not self.port:
      raise RuntimeError(f"cannot listen on {address}:{port}")
    if socket_path:  # As TF Serving: the same credentials as the port.
      bound = (self._grpc.add_insecure_port(f"unix:{socket_path}")
               if ssl_config is None else
               self._grpc.add_secure_port(f"unix:{socket_path}", credentials))
      if not bound:
        raise RuntimeError(f"cannot listen on the Unix socket {socket_path}")
    rest_options = rest_options or http_server.RestOptions(
        max_body_bytes=max_message_bytes, log_requests=log_requests)
    self._rest = None if rest_port is None else http_server.RestServer(
        self.models, port=rest_port, bind_address=bind_address,
        options=rest_options)
    metrics.watch_models(self.models)
    self.rest_port = None if self._rest is None else self._rest.port
    self._grpc.start()
    self.models.start()
    if config_file:
      self.models.watch_config_file(config_file, config_file_poll_seconds)
    self._set_health(True)

  def _set_health(self, serving: bool) -> None:
    state = (health_pb2.HealthCheckResponse.SERVING if serving
             else health_pb2.HealthCheckResponse.NOT_SERVING)
    if self.health is None:
      return
    for service in HEALTH_SERVICE_NAMES:
      self.health.set(service, state)

  def stop(self, grace: Optional[float] = 5.0) -> None:
    """Stops accepting requests, lets those in flight finish, and stops."""
    self._set_health(False)
    if self._rest is not None:
      self._rest.stop(grace)
    self._grpc.stop(grace).wait()
    self._interceptor.shutdown()
    self.models.stop()
    metrics.unwatch_models(self.models)

  def wait(self) -> None:
    self._grpc.wait_for_termination()
