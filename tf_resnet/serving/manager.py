"""Which model versions are served: loading, warm-up, version policies, polling, status.

A `ModelManager` holds one `ServedModel` per configured model. Each watches
its base path (`base_path/<integer>/saved_model.pb`) and, following its
version policy (latest N, all, or specific versions), loads new versions,
warms them up, and only then makes them visible and unloads the versions the
policy no longer wants, so no request fails during a swap. A version that
fails to load is reported as END with its error, and the versions already
serving stay. Status and error wording follow TensorFlow Serving.
"""

import dataclasses
import logging
import os
import threading
import time
from typing import Optional, Sequence

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-direct-tensorflow-import
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.config import model_server_config_pb2

from tf_resnet.serving import metrics
from tf_resnet.serving import options

State = get_model_status_pb2.ModelVersionStatus.State
_LOG = logging.getLogger("tf_resnet.serving")
_TAG = "serve"


class ServingError(Exception):
  """An RPC failure with TF Serving's status code and message."""

  def __init__(self, code: grpc.StatusCode, message: str):
    if len(message) > 1024:
      message = message[:1024 - len("...TRUNCATED")] + "...TRUNCATED"
    super().__init__(message)
    self.code = code
    self.message = message


class Servable:
  """One loaded version: its callable signatures and their SignatureDefs."""

  def __init__(self, name: str, version: int, path: str,
               batching: Optional["options.BatchingParameters"] = None):
    self.name = name
    self.batching = batching
    self._batchers = {}
    self.version = version
    self.path = path
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
      proto.ParseFromString(f.read())
    graphs = [g for g in proto.meta_graphs if _TAG in g.meta_info_def.tags]
    if not graphs:
      raise ValueError(f"{path} has no MetaGraph tagged {_TAG!r}")
    self.signature_defs = {k: v for k, v in graphs[0].signature_def.items()
                           if not k.startswith("__")}
    self.loaded = tf.saved_model.load(path, tags=[_TAG])
    self.functions = dict(self.loaded.signatures)
    self.lock = threading.Lock()

  def batcher(self, signature: str):
    """The Batcher of one signature (server-side batching)."""
    from tf_resnet.serving import batching  # pylint: disable=g-import-not-at-top
    with self.lock:
      if signature not in self._batchers:
        function = self.functions[signature]

        def run(arrays):
          outputs = function(**{k: tf.constant(v) for k, v in arrays.items()})
          return {k: v.numpy() for k, v in outputs.items()}

        self._batchers[signature] = batching.Batcher(
            run, self.batching, name=f"{self.name}-{self.version}-{signature}")
      return self._batchers[signature]

  def close(self) -> None:
    """Stops the batch threads."""
    with self.lock:
      for b in self._batchers.values():
        b.close()

  def warm_up(self) -> None:
    """Runs every classify signature once on a small image, before traffic."""
    image = tf.io.encode_png(tf.fill([40, 40, 3], tf.constant(128, tf.uint8)))
    example = tf.train.Example(features=tf.train.Features(feature={
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[image.numpy()]))})).SerializeToString()
    for key, sig in self.signature_defs.items():
      if (sig.method_name == "tensorflow/serving/classify"
          and list(sig.inputs) == ["inputs"]):
        self.functions[key](inputs=tf.constant([example]))


@dataclasses.dataclass
class VersionStatus:
  state: int
  error_code: int = 0
  error_message: str = ""


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


class ServedModel:
  """One model name: its versions on disk, loaded, and their states."""

  def __init__(self, config: model_server_config_pb2.ModelConfig,
               batching: Optional["options.BatchingParameters"] = None):
    self.config = config
    self.batching = batching
    self.name = config.name
    self._servables: dict[int, Servable] = {}
    self.status: dict[int, VersionStatus] = {}
    self._lock = threading.Lock()
    self._update_lock = threading.Lock()

  def versions_on_disk(self) -> list[int]:
    base = self.config.base_path
    if not os.path.isdir(base):
      return []
    return sorted(int(d) for d in os.listdir(base) if d.isdigit()
                  and os.path.isfile(os.path.join(base, d, "saved_model.pb")))

  def update(self) -> None:
    """Loads what the policy wants and is new, then unloads what it no longer wants."""
    with self._update_lock:
      wanted = _policy_versions(self.config, self.versions_on_disk())
      for version in wanted:
        if version in self._servables:
          continue
        if self.status.get(version, VersionStatus(0)).state == State.END:
          continue  # Failed before, or unloaded: not retried until restart.
        self._load(version)
      with self._lock:
        loaded_wanted = [v for v in wanted if v in self._servables]
      if not loaded_wanted:
        return  # Nothing new could load: keep serving what serves.
      for version in list(self._servables):
        if version not in wanted:
          self._unload(version)

  def _load(self, version: int) -> None:
    path = os.path.join(self.config.base_path, str(version))
    self.status[version] = VersionStatus(State.START)
    self.status[version] = VersionStatus(State.LOADING)
    try:
      servable = Servable(self.name, version, path, self.batching)
      servable.warm_up()
    except Exception as e:  # pylint: disable=broad-except
      _LOG.error("model %s version %d failed to load: %s", self.name, version,
                 e)
      metrics.model_loaded(self.name, ok=False)
      self.status[version] = VersionStatus(
          State.END, grpc.StatusCode.UNKNOWN.value[0],
          f"Failed to load version {version} of model {self.name}: "
          f"{type(e).__name__}: {e}"[:1000])
      return
    with self._lock:
      self._servables[version] = servable
    self.status[version] = VersionStatus(State.AVAILABLE)
    metrics.model_loaded(self.name, ok=True)
    _LOG.info("model %s version %d is available", self.name, version)

  def _unload(self, version: int) -> None:
    self.status[version] = VersionStatus(State.UNLOADING)
    with self._lock:
      servable = self._servables.pop(version, None)
    if servable is not None:
      servable.close()
    self.status[version] = VersionStatus(State.END)
    metrics.model_unloaded(self.name)
    _LOG.info("model %s version %d unloaded", self.name, version)

  def resolve(self, version: Optional[int] = None,
              label: Optional[str] = None) -> Servable:
    """The servable a ModelSpec asks for, or TF Serving's error."""
    if label:
      labels = dict(self.config.version_labels)
      if label not in labels:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
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
               poll_seconds: float = 1.0,
               batching: Optional["options.BatchingParameters"] = None):
    self.batching = batching
    self._models: dict[str, ServedModel] = {}
    self._lock = threading.Lock()
    self.poll_seconds = poll_seconds
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None
    self.reload(config)

  def reload(self, config: model_server_config_pb2.ModelServerConfig) -> None:
    """Replaces the model list (HandleReloadConfigRequest), keeping loaded models."""
    configs = config.model_config_list.config
    names = [c.name for c in configs]
    if len(set(names)) != len(names):
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                         f"Illegal to list model {names[0]} multiple times "
                         "in config list")
    models = {}
    for c in configs:
      if c.model_platform and c.model_platform != "tensorflow":
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"Unsupported model_platform {c.model_platform} "
                           f"for model {c.name}")
      existing = self._models.get(c.name)
      if existing is not None and existing.config.base_path == c.base_path:
        existing.config = c
        models[c.name] = existing
      else:
        models[c.name] = ServedModel(c, self.batching)
    for model in models.values():
      model.update()
    with self._lock:
      self._models = models

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
    for model in self.models():
      model.update()

  def start(self) -> None:
    """Polls for new versions every `poll_seconds` (0: never)."""
    if self.poll_seconds <= 0 or self._thread is not None:
      return

    def loop():
      while not self._stop.wait(self.poll_seconds):
        try:
          self.poll_once()
        except Exception:  # pylint: disable=broad-except
          _LOG.exception("polling the model directories failed")

    self._thread = threading.Thread(target=loop, name="version-poller",
                                    daemon=True)
    self._thread.start()

  def stop(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join(timeout=10)


def single_model_config(name: str, base_path: str
                        ) -> model_server_config_pb2.ModelServerConfig:
  """The config of `--model_name` and `--model_base_path`."""
  config = model_server_config_pb2.ModelServerConfig()
  model = config.model_config_list.config.add()
  model.name = name
  model.base_path = os.path.abspath(base_path)
  model.model_platform = "tensorflow"
  return config


def wait_until_available(manager: ModelManager, timeout: float = 60.0) -> None:
  """Blocks until every model serves a version (for start-up)."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if all(any(s.state == State.AVAILABLE for s in m.status.values())
           for m in manager.models()):
      return
    time.sleep(0.1)
