"""One loaded version of a SavedModel: TF Serving's SavedModelBundle, in Python.

A `Servable` reads the version's MetaGraph for the configured tags, runs its
signatures in a tf.compat.v1 Session by tensor name (how the C++ server runs
every SavedModel: a SavedModelBundle) or, for TF2 exports, as tf.functions
(`tf.saved_model.load`), counts the requests in flight so that an unloading
version can let them finish, and owns its signatures' batch queues. Which
versions are loaded, and when, is `manager.py`'s concern.

Why a Session by default (`runner="session"`), TF2 exports included: the
server is one Python process, and a load holds the GIL wherever TensorFlow's
Python holds it, which stalls every other model's requests (TF Serving #1866).
`tf.saved_model.load` rebuilds each of the export's functions in Python
(a ResNet-50 export: 128,000 Python objects, GIL holds of 45-195 ms, 3.3-4.3
s); `session_loader` loads the MetaGraph as TF Serving's C++ loader does,
with no Python object per node (one ~60 ms hold for the nodes' import),
restores the variables in a Session run, which releases the GIL, and leaves
the collector next to nothing at unload. Outputs are the same to the bit
(servable_test); docs/performance.md has the measurements. `runner=
"function"` is kept for TF2 exports a Session cannot run.
"""

import concurrent.futures
import logging
import threading
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

from tf_resnet.serving import batching as batching_lib
from tf_resnet.serving import errors
from tf_resnet.serving import options
from tf_resnet.serving import session_loader
from tf_resnet.serving import warmup

_LOG = logging.getLogger("tf_resnet.serving")


class _FunctionRunner:
  """A TF2 SavedModel's signatures as tf.functions (tf.saved_model.load)."""

  def __init__(self, path: str, tags: Sequence[str]):
    self._loaded = tf.saved_model.load(path, tags=list(tags))
    self._functions = dict(self._loaded.signatures)

  def run(self, signature: str, inputs: dict[str, np.ndarray]
          ) -> dict[str, np.ndarray]:
    outputs = self._functions[signature](
        **{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


# TensorFlow's DataTypeString where it differs from NumPy's dtype name.
_DATA_TYPE_STRING = {"float32": "float", "float64": "double",
                     "float16": "half"}


class _SessionRunner:
  """A MetaGraph in a tf.compat.v1 Session, signatures run by tensor name.

  This is how the C++ server runs every SavedModel (a SavedModelBundle); it
  serves TF1 and Estimator exports, including those tf.saved_model.load
  cannot wrap in functions.

  Each signature (and set of inputs given) runs as a Session callable, made
  at its first request by `build`: the Session then prunes and optimizes
  (Grappler) the graph for those feeds and fetches, 0.8-2 s of one core for
  a ResNet-50 signature here, so `build` may run it on another thread, at
  the loads' lower priority (low_priority.py), while the request waits.
  """

  def __init__(self, path: str, meta_graph, signature_defs,
               session_config=None,
               build: Callable[[Callable[[], Any]], Any] = lambda f: f()):
    self._session = session_loader.load(path, meta_graph, session_config)
    self._signature_defs = signature_defs
    self._build = build
    self._lock = threading.Lock()
    self._callables: dict[tuple, concurrent.futures.Future] = {}

  def _callable(self, signature: str, aliases: tuple[str, ...]):
    """The Session callable of a signature fed `aliases`, made once."""
    key = (signature, aliases)
    with self._lock:
      future = self._callables.get(key)
      mine = future is None
      if mine:
        future = self._callables[key] = concurrent.futures.Future()
    if mine:
      sig = self._signature_defs[signature]
      callable_options = config_pb2.CallableOptions(
          feed=[sig.inputs[a].name for a in aliases],
          fetch=[sig.outputs[k].name for k in sig.outputs])
      make = self._session._make_callable_from_options  # pylint: disable=protected-access
      try:
        future.set_result(self._build(lambda: make(callable_options)))
      except BaseException as e:
        with self._lock:  # The next request tries again.
          del self._callables[key]
        future.set_exception(e)
    return future.result()

  def run(self, signature: str, inputs: dict[str, np.ndarray]
          ) -> dict[str, np.ndarray]:
    sig = self._signature_defs[signature]
    aliases = tuple(sorted(inputs))
    feeds = []
    for index, alias in enumerate(aliases):
      dtype = tf.as_dtype(sig.inputs[alias].dtype)
      if dtype != tf.string:
        feeds.append(np.asarray(inputs[alias], dtype.as_numpy_dtype))
        continue
      value = np.asarray(inputs[alias])
      if value.dtype.kind not in "OSU":
        # Session::Run's words (FunctionCallFrame::SetArgs); a callable's
        # own check says "Type mismatch: actual float vs. expect string".
        got = _DATA_TYPE_STRING.get(value.dtype.name, value.dtype.name)
        raise tf.errors.InvalidArgumentError(None, None, errors.SET_ARGS.format(
            index=index, expected="string", got=got))
      feeds.append(value)
    # A callable feeds the tensors as they are: like the C++ server, and
    # unlike Session.run's Python client, it does not refuse a feed whose
    # shape differs from the placeholder's static shape (kernels see the
    # real shapes, and a [1] tensor fed to a [None, 1] placeholder runs).
    values = self._callable(signature, aliases)(*feeds)
    return dict(zip(sig.outputs, values))


RUNNERS = ("session", "function")


class Servable:
  """One loaded version: its SignatureDefs, and running them.

  Requests enter through `run`, which counts them, so an unloading version
  can let those in flight finish (`close`).
  """

  def __init__(self, name: str, version: int, path: str,
               batching: Optional[options.BatchingParameters] = None, *,
               scheduler: Optional[batching_lib.Scheduler] = None,
               tags: Sequence[str] = ("serve",), session_config=None,
               runner: str = "session",
               build: Optional[Callable[[Callable[[], Any]], Any]] = None):
    """Loads a version.

    Args:
      name: the model's name.
      version: the version number.
      path: the version's directory.
      batching: merge concurrent requests per signature (None: off).
      scheduler: the shared batch scheduler (needed with `batching`).
      tags: the MetaGraph's tags.
      session_config: ConfigProto for a MetaGraph run in a Session.
      runner: how a TF2 export runs, "session" or "function"; if that fails
        to load, the other is tried. TF1 exports always run in a Session.
      build: runs a Session's executor build (a signature's first run) and
        returns its result, on another thread say; None: in the request's.

    Raises:
      Exception: whatever loading raised (the manager reports it).
    """
    self.name = name
    self.version = version
    self.path = path
    self.batching = batching
    self._scheduler = scheduler
    if batching is not None and scheduler is None:
      raise ValueError("`batching` needs the shared `scheduler`")
    graph = session_loader.meta_graph(path, tags)  # Parses saved_model.pb.
    self.signature_defs = {k: v for k, v in graph.signature_def.items()
                           if not k.startswith("__")}
    if runner not in RUNNERS:
      raise ValueError(f"runner {runner!r} is not one of {RUNNERS}")
    # Only TF2's tf.saved_model.save writes an object graph to load.
    tf2 = bool(graph.object_graph_def.nodes)
    order = (runner, *(r for r in RUNNERS if r != runner)) if tf2 else (
        "session",)
    for i, choice in enumerate(order):
      try:
        if choice == "function":
          self._runner = _FunctionRunner(path, tags)
        else:
          self._runner = _SessionRunner(path, graph, self.signature_defs,
                                        session_config,
                                        build or (lambda f: f()))
        self.loader = choice
        break
      except Exception as e:  # pylint: disable=broad-except
        if i + 1 == len(order):
          raise
        _LOG.warning("model %s version %d: the %s loader failed (%s); "
                     "trying the %s loader", name, version, choice, e,
                     order[i + 1])
    self._queues: dict[str, batching_lib.BatchQueue] = {}
    self._cond = threading.Condition()
    self._in_flight = 0
    self._closed = False

  @property
  def in_flight(self) -> int:
    return self._in_flight

  def batch_queue(self, signature: str) -> Optional[batching_lib.BatchQueue]:
    """The batch queue of a signature (None: unbatched, or closed)."""
    with self._cond:
      if self._closed or self.batching is None:
        return None
      if signature not in self._queues:
        self._queues[signature] = self._scheduler.add_queue(
            lambda arrays: self._runner.run(signature, arrays), self.batching,
            name=f"{self.name}/{self.version}/{signature}")
      return self._queues[signature]

  def run(self, signature: str, inputs: dict[str, np.ndarray],
          timeout: Optional[float] = None) -> dict[str, np.ndarray]:
    """Runs a signature on arrays (through its batch queue with batching).

    Args:
      signature: the signature key (must exist).
      inputs: arrays by input alias.
      timeout: seconds a batched request may wait (None: until run).

    Returns:
      Arrays by output alias.
    """
    with self._cond:
      self._in_flight += 1
    try:
      queue = self.batch_queue(signature)
      if queue is None:
        # Unbatched, or a request that resolved this version just before it
        # unloaded: the model is still loaded, so it runs to the end.
        return self._runner.run(signature, inputs)
      return queue.run(inputs, timeout)
    finally:
      with self._cond:
        self._in_flight -= 1
        self._cond.notify_all()

  def warm_up(self, iterations: int = 0) -> int:
    """Replays the version's warm-up requests; returns how many were read."""
    return warmup.replay(self, iterations)

  def close(self, drain_seconds: float = 30.0) -> bool:
    """Lets in-flight requests finish, then closes the batch queues.

    Requests still queued after `drain_seconds` fail with UNAVAILABLE.

    Returns:
      Whether every in-flight request finished within `drain_seconds`.
    """
    deadline = time.monotonic() + drain_seconds
    with self._cond:
      while self._in_flight and time.monotonic() < deadline:
        self._cond.wait(max(0.0, deadline - time.monotonic()))
      drained = not self._in_flight
      self._closed = True
      queues = list(self._queues.values())
    for queue in queues:
      queue.close(abort=True)
    return drained
