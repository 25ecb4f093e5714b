"""Which model versions are served: TF Serving's AspiredVersionsManager, in Python.

A `ModelManager` holds one `ServedModel` per configured model. Each watches
its base path (`base_path/<integer>/saved_model.pb`, the integer parsed as TF
Serving parses it, so `00000123` is version 123 and loads from
`base_path/00000123`) and serves what its version policy (latest N, all,
specific) aspires to, with TF Serving's availability-preserving policy:

* a newly aspired version is loaded and warmed up (the recorded requests of
  `assets.extra/tf_serving_warmup_requests`) before it takes traffic, and the
  versions no longer aspired are unloaded only once an aspired one serves, so
  no request fails during a swap;
* when the newest version's directory disappears, the previous one is
  aspired again and loads again (rollback);
* a failed load is retried `max_num_load_retries` times,
  `load_retry_interval_seconds` apart; a version whose files were incomplete
  is served once they are complete. After the last retry it is END with its
  error until it leaves the aspired set and comes back;
* an unloading version first stops taking new requests, then lets those in
  flight finish (bounded by `unload_drain_seconds`); requests still queued
  for batching after that fail with UNAVAILABLE. No request waits forever.

Loading one version is `servable.py`'s; reading and validating the config
is `model_config.py`'s. Loads, unloads, polls and config reloads are
serialized by one lock, so no version is loaded twice. Status and error wording follow TensorFlow Serving
(server_core.cc, aspired_versions_manager.cc, loader_harness.cc).

(Over 350 lines, deliberately: the aspired-versions lifecycle is one state
machine under one lock, ServedModel's per-version transitions and
ModelManager's polls and reloads driving them; split, its invariants would
be read apart.)
"""

import dataclasses
import logging
import os
import re
import threading
import time
from typing import Optional, Sequence

from google.protobuf import text_format
import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from tf_resnet.serving import batching as batching_lib
from tf_resnet.serving import errors
from tf_resnet.serving import metrics
from tf_resnet.serving import model_config
from tf_resnet.serving import options
from tf_resnet.serving import servable as servable_lib

State = get_model_status_pb2.ModelVersionStatus.State
ServingError = errors.ServingError  # Kept here for callers of this module.
_LOG = logging.getLogger("tf_resnet.serving")
_INVALID = grpc.StatusCode.INVALID_ARGUMENT
_VERSION_DIR = re.compile(r"\d+")  # TF Serving: SimpleAtoi, and >= 0.
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


@dataclasses.dataclass(frozen=True)
class LifecycleOptions:
  """How versions are found, loaded, retried, warmed up and unloaded.

  The defaults are tensorflow_model_server's.

  Attributes:
    poll_seconds: seconds between looks at the base paths (0: once, at
      start; --file_system_poll_wait_seconds).
    max_num_load_retries: retries after a failed load (0: one attempt).
    load_retry_interval_seconds: between retries (TF Serving: 60 s).
    enable_model_warmup: replay assets.extra/tf_serving_warmup_requests.
    num_request_iterations_for_warmup: runs of each warm-up request (0:
      unset, once, as TF Serving's flag).
    saved_model_tags: the MetaGraph to load.
    allow_version_labels_for_unavailable_models: labels may name versions
      that are not yet available.
    unload_drain_seconds: how long an unloading version lets its in-flight
      requests finish.
    session_config: a tf.compat.v1.ConfigProto for MetaGraphs run in a
      Session (thread pools), or None.
  """

  poll_seconds: float = 1.0
  max_num_load_retries: int = 5
  load_retry_interval_seconds: float = 60.0
  enable_model_warmup: bool = True
  num_request_iterations_for_warmup: int = 0
  saved_model_tags: tuple[str, ...] = ("serve",)
  allow_version_labels_for_unavailable_models: bool = False
  unload_drain_seconds: float = 30.0
  session_config: Optional[object] = None


@dataclasses.dataclass
class VersionStatus:
  state: int
  error_code: int = 0
  error_message: str = ""


def _code_name(value: int) -> str:
  """A status code's name (`UNKNOWN`) from its number, as absl::Status prints."""
  return next((code.name for code in grpc.StatusCode if code.value[0] == value),
              str(value))


def _policy_versions(policy: model_server_config_pb2.ModelConfig,
                     available: Sequence[int]) -> list[int]:
  which = policy.model_version_policy.WhichOneof("policy_choice")
  if which == "all":
    return list(available)
  if which == "specific":
    wanted = set(policy.model_version_policy.specific.versions)
    return [v for v in available if v in wanted]
  count = (policy.model_version_policy.latest.num_versions
           if which == "latest" else 0) or 1
  return list(available)[-count:]


def version_directories(base_path: str) -> dict[int, str]:
  """Version number -> directory of the SavedModels under `base_path`.

  Names are parsed as TF Serving parses them (`00000123` is 123); other
  names (an exporter's temporary directory) are ignored, and so is a
  directory without saved_model.pb(txt) yet. Of two names for one number
  the first in sorted order wins.
  """
  if not os.path.isdir(base_path):
    return {}
  found = {}
  for name in sorted(os.listdir(base_path)):
    path = os.path.join(base_path, name)
    if not _VERSION_DIR.fullmatch(name) or not any(
        os.path.isfile(os.path.join(path, f)) for f in _SAVED_MODEL_FILES):
      continue
    found.setdefault(int(name), path)
  return found


class ServedModel:
  """One model name: its versions on disk, loaded, and their states."""

  def __init__(self, config: model_server_config_pb2.ModelConfig,
               batching: Optional[options.BatchingParameters] = None,
               lifecycle: Optional[LifecycleOptions] = None,
               scheduler: Optional[batching_lib.Scheduler] = None):
    self.config = config
    self.batching = batching
    self.lifecycle = lifecycle or LifecycleOptions()
    self._scheduler = scheduler
    self.name = config.name
    self._servables: dict[int, servable_lib.Servable] = {}
    self.status: dict[int, VersionStatus] = {}
    self._failures: dict[int, int] = {}  # Failed attempts, while aspired.
    self._retry_at: dict[int, float] = {}
    self._lock = threading.Lock()  # Guards _servables for readers.
    self._update_lock = threading.RLock()

  def versions_on_disk(self) -> list[int]:
    return sorted(version_directories(self.config.base_path))

  def next_retry(self) -> Optional[float]:
    """When (time.monotonic) a failed load is next due, if one is."""
    return min(self._retry_at.values(), default=None)

  def update(self) -> None:
    """Loads what the policy aspires to, then unloads what it no longer does."""
    with self._update_lock:
      directories = version_directories(self.config.base_path)
      aspired = _policy_versions(self.config, sorted(directories))
      for version in list(self._failures):
        if version not in aspired:  # Gone: a new copy gets fresh retries.
          self._failures.pop(version)
          self._retry_at.pop(version, None)
      now = time.monotonic()
      for version in sorted(aspired, reverse=True):  # Newest first.
        if version in self._servables:
          continue
        failures = self._failures.get(version, 0)
        if failures > self.lifecycle.max_num_load_retries:
          continue  # Gave up; END with its error.
        if failures and now < self._retry_at.get(version, 0.0):
          continue
        self._load(version, directories[version])
      with self._lock:
        serving_aspired = [v for v in aspired if v in self._servables]
        unaspired = [v for v in self._servables if v not in aspired]
      # Availability preserving: never unload the last serving version
      # before an aspired one serves.
      if serving_aspired:
        for version in sorted(unaspired):
          self._unload(version)

  def _load(self, version: int, path: str) -> None:
    if version not in self._failures:
      self.status[version] = VersionStatus(State.START)
    self.status[version] = VersionStatus(State.LOADING)
    try:
      servable = servable_lib.Servable(
          self.name, version, path, self.batching, scheduler=self._scheduler,
          tags=self.lifecycle.saved_model_tags,
          session_config=self.lifecycle.session_config)
      if self.lifecycle.enable_model_warmup:
        servable.warm_up(self.lifecycle.num_request_iterations_for_warmup)
    except Exception as e:  # pylint: disable=broad-except
      metrics.model_loaded(self.name, ok=False)
      self._load_failed(version, e)
      return
    with self._lock:
      self._servables[version] = servable
    self._failures.pop(version, None)
    self._retry_at.pop(version, None)
    self.status[version] = VersionStatus(State.AVAILABLE)
    metrics.model_loaded(self.name, ok=True)
    _LOG.info("model %s version %d is available (%s loader)", self.name,
              version, servable.loader)

  def _load_failed(self, version: int, e: Exception) -> None:
    failures = self._failures.get(version, 0) + 1
    self._failures[version] = failures
    message = (f"Failed to load version {version} of model {self.name}: "
               f"{type(e).__name__}: {e}")
    retries = self.lifecycle.max_num_load_retries
    if failures <= retries:
      interval = max(0.0, self.lifecycle.load_retry_interval_seconds)
      self._retry_at[version] = time.monotonic() + interval
      _LOG.warning("%s; retry %d of %d in %.1f s", message, failures, retries,
                   interval)
      # As TF Serving's LoaderHarness: LOADING until the retries run out.
      self.status[version] = VersionStatus(State.LOADING)
      return
    self._retry_at.pop(version, None)
    _LOG.error("%s (after %d retries)", message, retries)
    self.status[version] = VersionStatus(
        State.END, grpc.StatusCode.UNKNOWN.value[0], message)

  def _unload(self, version: int) -> None:
    self.status[version] = VersionStatus(State.UNLOADING)
    with self._lock:
      servable = self._servables.pop(version, None)
    if servable is not None:
      if not servable.close(self.lifecycle.unload_drain_seconds):
        _LOG.warning("model %s version %d unloaded with requests still "
                     "running after %.0f s", self.name, version,
                     self.lifecycle.unload_drain_seconds)
    self.status[version] = VersionStatus(State.END)
    metrics.model_unloaded(self.name)
    _LOG.info("model %s version %d unloaded", self.name, version)

  def unload_all(self) -> None:
    """Unloads every version (the model left the config)."""
    with self._update_lock:
      for version in sorted(self._servables):
        self._unload(version)
      self._retry_at.clear()

  def available_versions(self) -> list[int]:
    with self._lock:
      return sorted(self._servables)

  def latest_status(self) -> Optional[tuple[int, VersionStatus]]:
    """The newest version this model has tried to load, and its state
    (ServableRequest::Latest as the ServableStateMonitor sees it); None
    before any version was found."""
    with self._update_lock:
      if not self.status:
        return None
      version = max(self.status)
      return version, self.status[version]

  def resolve(self, version: Optional[int] = None,
              label: Optional[str] = None) -> servable_lib.Servable:
    """The servable a ModelSpec asks for, or TF Serving's error."""
    if label:
      labels = dict(self.config.version_labels)
      if label not in labels:
        raise ServingError(_INVALID,
                           f"Unrecognized servable version label: {label}")
      version = labels[label]
    with self._lock:
      if version is None:
        if self._servables:
          return self._servables[max(self._servables)]
        raise ServingError(grpc.StatusCode.NOT_FOUND,
                           f"Servable not found for request: "
                           f"Latest({self.name})")
      if version in self._servables:
        return self._servables[version]
    raise ServingError(grpc.StatusCode.NOT_FOUND,
                       f"Servable not found for request: "
                       f"Specific({self.name}, {version})")


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
                                       self.scheduler)
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

