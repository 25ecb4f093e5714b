"""Which models are served: TF Serving's ServerCore, in Python.

A `ModelManager` holds one `ServedModel` per configured model
(`served_model.py`: one model's versions loaded, retried, warmed up and
unloaded; `versions.py`: which versions exist and which the policy wants).
The manager owns the model list and when it changes: config reloads
(HandleReloadConfigRequest, --model_config_file_poll_wait_seconds), the
polls of the base paths and the retries falling due, and the wait for the
initial models before the ports open (ServerCore::Create). Reading and
validating the config is `model_config.py`'s. Reloads and polls are
serialized by one lock. Status and error wording follow TensorFlow Serving
(server_core.cc).
"""

import dataclasses
import logging
import threading
import time
from typing import Optional

from google.protobuf import text_format
import grpc
import tensorflow as tf
from tensorflow_serving.config import model_server_config_pb2

from tf_resnet.serving import batching as batching_lib
from tf_resnet.serving import errors
from tf_resnet.serving import low_priority
from tf_resnet.serving import model_config
from tf_resnet.serving import options
from tf_resnet.serving import served_model
from tf_resnet.serving import versions

# Kept here for callers of this module.
ServingError = errors.ServingError
State = served_model.State
LifecycleOptions = served_model.LifecycleOptions
VersionStatus = served_model.VersionStatus
ServedModel = served_model.ServedModel
version_directories = versions.version_directories
_LOG = logging.getLogger("tf_resnet.serving")


def _code_name(value: int) -> str:
  """A status code's name (`UNKNOWN`) from its number, as absl::Status prints."""
  return next((code.name for code in grpc.StatusCode if code.value[0] == value),
              str(value))



class ModelManager:
  """All served models; polls their base paths in a background thread."""

  def __init__(self, config: model_server_config_pb2.ModelServerConfig,
               poll_seconds: Optional[float] = None,
               batching: Optional[options.BatchingParameters] = None,
               lifecycle: Optional[LifecycleOptions] = None):
    """Loads the configured models (see `LifecycleOptions` for how).

    Args:
      config: the models.
      poll_seconds: overrides `lifecycle.poll_seconds` when given.
      batching: merge concurrent requests (None: off); every model, version
        and signature shares one scheduler of `num_batch_threads` threads.
      lifecycle: loading, retries, warm-up, unloading.

    Raises:
      ServingError: for a config TF Serving refuses.
    """
    lifecycle = lifecycle or LifecycleOptions()
    if poll_seconds is not None:
      lifecycle = dataclasses.replace(lifecycle, poll_seconds=poll_seconds)
    self.lifecycle = lifecycle
    self.poll_seconds = lifecycle.poll_seconds
    self.batching = batching
    self.scheduler = (None if batching is None else batching_lib.Scheduler(
        batching.num_batch_threads, batching.thread_pool_name))
    # Loads and unloads one at a time, and executor builds (a Session's
    # first run of a signature) two at a time, below requests' priority.
    self.load_thread = self.build_threads = None
    if lifecycle.load_niceness:
      self.load_thread = low_priority.LowPriorityThreads(
          lifecycle.load_niceness, lifecycle.session_config)
      self.build_threads = low_priority.LowPriorityThreads(
          lifecycle.load_niceness, workers=2, name="executor-build")
    self._models: dict[str, ServedModel] = {}
    self.config = model_server_config_pb2.ModelServerConfig()
    self._lock = threading.Lock()  # Guards _models for readers.
    self._update_lock = threading.RLock()  # Serializes reloads and polls.
    self._stop = threading.Event()
    self._wake = threading.Event()
    # Counts finished polls and reloads, the only places versions change
    # state, so a waiter sleeps until there is something new to look at.
    self._changed = threading.Condition()
    self._changes = 0
    self._threads: list[threading.Thread] = []
    self.reload(config)

  def reload(self, config: model_server_config_pb2.ModelServerConfig) -> None:
    """Replaces the model list (HandleReloadConfigRequest), keeping loaded models.

    Raises:
      ServingError: for a config TF Serving refuses; nothing changes then.
    """
    with self._update_lock:
      model_config.validate_config(config, self.config)
      self._check_labels(config)
      models = {}
      for c in config.model_config_list.config:
        existing = self._models.get(c.name)
        if existing is not None and existing.config.base_path == c.base_path:
          existing.config = c
          models[c.name] = existing
        else:
          models[c.name] = ServedModel(c, self.batching, self.lifecycle,
                                       self.scheduler, self.load_thread,
                                       self.build_threads)
      for model in models.values():
        model.update()
      with self._lock:
        removed = [m for n, m in self._models.items()
                   if models.get(n) is not m]
        self._models = models
        self.config = model_server_config_pb2.ModelServerConfig()
        self.config.CopyFrom(config)
      for model in removed:
        model.unload_all()
    self._wake.set()  # New retries may be due.
    self._notify_change()

  def _notify_change(self) -> None:
    with self._changed:
      self._changes += 1
      self._changed.notify_all()

  def _check_labels(self, config) -> None:
    if self.lifecycle.allow_version_labels_for_unavailable_models:
      return
    for c in config.model_config_list.config:
      existing = self._models.get(c.name)
      available = (existing.available_versions()
                   if existing is not None
                   and existing.config.base_path == c.base_path else [])
      for label, version in sorted(c.version_labels.items()):
        if version not in available:
          raise ServingError(
              grpc.StatusCode.FAILED_PRECONDITION,
              f"Request to assign label to version {version} of model "
              f"{c.name}, which is not currently available for inference")
        del label

  def model(self, name: str) -> ServedModel:
    with self._lock:
      model = self._models.get(name)
    if model is None:
      raise ServingError(grpc.StatusCode.NOT_FOUND,
                         f"Servable not found for request: Latest({name})")
    return model

  def models(self) -> list[ServedModel]:
    with self._lock:
      return list(self._models.values())

  def poll_once(self) -> None:
    # A host event in profiles (TensorBoard's trace viewer, the gRPC port's
    # ProfilerService): when the base paths were polled and versions loaded.
    with tf.profiler.experimental.Trace("ModelManager.poll_once"):
      try:
        with self._update_lock:
          for model in self.models():
            model.update()
      finally:
        self._notify_change()

  def _next_wait(self) -> Optional[float]:
    due = [m.next_retry() for m in self.models()]
    due = [d for d in due if d is not None]
    waits = [max(0.0, min(due) - time.monotonic())] if due else []
    if self.poll_seconds > 0:
      waits.append(self.poll_seconds)
    return min(waits) if waits else None

  def start(self) -> None:
    """Polls for new versions every `poll_seconds`, and retries failed loads."""
    if self._threads:
      return

    def loop():
      while not self._stop.is_set():
        self._wake.wait(self._next_wait())
        self._wake.clear()
        if self._stop.is_set():
          return
        try:
          self.poll_once()
        except Exception:  # pylint: disable=broad-except
          _LOG.exception("polling the model directories failed")

    self._start_thread(loop, "version-poller")

  def wait_for_initial_models(self, log_every_seconds: float = 30.0) -> None:
    """Blocks until every model's newest version serves or has given up.

    What tensorflow_model_server does before it opens its ports
    (ServerCore::Create waits for ServableRequest::Latest of every configured
    model): failed loads are retried meanwhile (call `start` first), a model
    with no version under its base path yet is waited for, and a version
    whose last retry failed fails the start.

    Raises:
      ServingError: UNKNOWN, TF Serving's "N servable(s) did not become
        available: {{{name: M version: V} due to error: ...}, }" naming every
        version that ended in error; or CANCELLED if `stop` was called.
    """
    next_log = time.monotonic()
    while True:
      with self._changed:
        seen = self._changes
      pending, failed = [], []
      for model in self.models():
        latest = model.latest_status()
        if latest is None or latest[1].state not in (State.AVAILABLE,
                                                     State.END):
          pending.append((model, latest))
        elif latest[1].state == State.END:
          failed.append((model.name, *latest))
      if not pending:
        break
      if time.monotonic() >= next_log:
        next_log = time.monotonic() + log_every_seconds
        for model, latest in pending:
          if latest is None:
            _LOG.warning(
                "No versions of servable %s found under base path %s; "
                "waiting for one before serving", model.name,
                model.config.base_path)
          else:
            _LOG.info("waiting for model %s version %d to load", model.name,
                      latest[0])
      with self._changed:
        self._changed.wait_for(
            lambda: self._changes != seen or self._stop.is_set(),
            timeout=max(0.0, next_log - time.monotonic()))
      if self._stop.is_set():
        raise ServingError(grpc.StatusCode.CANCELLED,
                           "stopped while waiting for the initial models")
    if failed:
      described = "".join(
          f"{{{{name: {name} version: {version}}} due to error: "
          f"{_code_name(status.error_code)}: "
          f"{status.error_message}}}, " for name, version, status in failed)
      raise ServingError(
          grpc.StatusCode.UNKNOWN,
          f"{len(failed)} servable(s) did not become available: "
          f"{{{described}}}")

  def watch_config_file(self, path: str, seconds: float) -> None:
    """Reloads the config from `path` every `seconds` (TF Serving's
    --model_config_file_poll_wait_seconds); errors are logged, and the
    models served stay."""
    if seconds <= 0:
      return

    def loop():
      while not self._stop.wait(seconds):
        try:
          config = model_config.read_config(path)
          if config != self.config:
            self.reload(config)
            _LOG.info("reloaded the model config from %s", path)
        except (OSError, text_format.ParseError, ServingError) as e:
          _LOG.error("PollFilesystemAndReloadConfig failed: %s", e)

    self._start_thread(loop, "config-poller")

  def _start_thread(self, target, name: str) -> None:
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    self._threads.append(thread)

  def stop(self) -> None:
    """Stops polling, and fails requests still queued for batching."""
    self._stop.set()
    self._wake.set()
    self._notify_change()
    for thread in self._threads:
      thread.join(timeout=10)
    if self.scheduler is not None:
      self.scheduler.stop()

