"""One model name's versions through their lifecycle, as TF Serving's LoaderHarness.

A `ServedModel` serves what its version policy aspires to (`versions.py`),
with TF Serving's availability-preserving policy:

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

Loading one version is `servable.py`'s; when to update and the list of
models is `manager.py`'s. A model's loads and unloads are serialized by its
update lock, so no version is loaded twice. Status and error wording follow
TensorFlow Serving (aspired_versions_manager.cc, loader_harness.cc).
"""

import dataclasses
import logging
import threading
import time
from typing import Optional

import grpc
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from tf_resnet.serving import batching as batching_lib
from tf_resnet.serving import errors
from tf_resnet.serving import low_priority
from tf_resnet.serving import memory
from tf_resnet.serving import metrics
from tf_resnet.serving import options
from tf_resnet.serving import servable as servable_lib
from tf_resnet.serving import versions as versions_lib

State = get_model_status_pb2.ModelVersionStatus.State
ServingError = errors.ServingError
_LOG = logging.getLogger("tf_resnet.serving")
_INVALID = grpc.StatusCode.INVALID_ARGUMENT


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
    saved_model_runner: how TF2 exports run: "session" (as the C++ server
      runs every SavedModel) or "function" (tf.saved_model.load); see
      servable.py.
    release_memory_after_unload: give an unloaded version's freed memory
      back to the system (memory.py: malloc_trim), so RSS comes back.
    load_niceness: loads and unloads run on one thread whose nice value is
      raised by this much, so requests to the models serving get the CPU
      first, and so do a Session's executor builds (low_priority.py; 0: at
      the requests' priority, as TF Serving).
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
  saved_model_runner: str = "session"
  release_memory_after_unload: bool = True
  load_niceness: int = 0


@dataclasses.dataclass
class VersionStatus:
  state: int
  error_code: int = 0
  error_message: str = ""



class ServedModel:
  """One model name: its versions on disk, loaded, and their states."""

  def __init__(self, config: model_server_config_pb2.ModelConfig,
               batching: Optional[options.BatchingParameters] = None,
               lifecycle: Optional[LifecycleOptions] = None,
               scheduler: Optional[batching_lib.Scheduler] = None,
               load_thread: Optional[low_priority.LowPriorityThreads] = None,
               build_threads: Optional[low_priority.LowPriorityThreads] = None):
    self.config = config
    self._load_thread = load_thread
    self._build_threads = build_threads
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
    return sorted(versions_lib.version_directories(self.config.base_path))

  def next_retry(self) -> Optional[float]:
    """When (time.monotonic) a failed load is next due, if one is."""
    return min(self._retry_at.values(), default=None)

  def update(self) -> None:
    """Loads what the policy aspires to, then unloads what it no longer does."""
    with self._update_lock:
      directories = versions_lib.version_directories(self.config.base_path)
      aspired = versions_lib.aspired_versions(self.config, sorted(directories))
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
    self._on_load_thread(self._load_now, version, path)

  def _on_load_thread(self, fn, *args) -> None:
    if self._load_thread is None:
      fn(*args)
    else:
      self._load_thread.run(fn, *args)

  def _load_now(self, version: int, path: str) -> None:
    if version not in self._failures:
      self.status[version] = VersionStatus(State.START)
    self.status[version] = VersionStatus(State.LOADING)
    try:
      servable = servable_lib.Servable(
          self.name, version, path, self.batching, scheduler=self._scheduler,
          tags=self.lifecycle.saved_model_tags,
          session_config=self.lifecycle.session_config,
          runner=self.lifecycle.saved_model_runner,
          build=self._build_threads and self._build_threads.run)
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
    # The servable's last reference goes on the load thread, so its Session
    # closes and its memory is collected and trimmed there.
    self._on_load_thread(self._unload_now, version)

  def _unload_now(self, version: int) -> None:
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
    if servable is not None and self.lifecycle.release_memory_after_unload:
      del servable  # The last reference here: its memory is free now.
      memory.release_freed_memory()  # Housekeeping, after END is reported.

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

