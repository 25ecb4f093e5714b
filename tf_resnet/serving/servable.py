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
s); the Session loader imports the GraphDef once (one ~140 ms hold, 2.6 s),
restores the variables in `Session.run`, which releases the GIL, and leaves
3,400 objects for the collector at unload. Outputs are the same to the bit
(servable_test); docs/performance.md has the measurements. `runner=
"function"` is kept for TF2 exports a Session cannot run.
"""

import logging
import threading
import time
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.python.saved_model import loader_impl  # pylint: disable=g-direct-tensorflow-import

from tf_resnet.serving import batching as batching_lib
from tf_resnet.serving import options
from tf_resnet.serving import warmup

_LOG = logging.getLogger("tf_resnet.serving")


def _meta_graph(path: str, tags: Sequence[str], saved_model=None):
  """The MetaGraphDef for `tags` of the SavedModel at `path` (or parsed)."""
  if saved_model is None:
    saved_model = loader_impl.parse_saved_model(path)  # .pb or .pbtxt
  for graph in saved_model.meta_graphs:
    if set(graph.meta_info_def.tags) == set(tags):
      return graph
  available = [sorted(g.meta_info_def.tags) for g in saved_model.meta_graphs]
  raise ValueError(f"Could not find meta graph def matching supplied tags: "
                   f"{{ {' '.join(sorted(tags))} }} in {path}; available: "
                   f"{available}")


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


class _SessionRunner:
  """A MetaGraph in a tf.compat.v1 Session, signatures run by tensor name.

  This is how the C++ server runs every SavedModel (a SavedModelBundle); it
  serves TF1 and Estimator exports, including those tf.saved_model.load
  cannot wrap in functions.
  """

  def __init__(self, path: str, tags: Sequence[str], signature_defs,
               session_config=None, loader=None):
    loader = loader or loader_impl.SavedModelLoader(path)
    self._graph = tf.Graph()
    self._session = tf.compat.v1.Session(graph=self._graph,
                                         config=session_config)
    # tf.compat.v1.saved_model.load's steps, on the SavedModel the caller
    # parsed (it would parse saved_model.pb twice more, holding the GIL, and
    # log its deprecation notice).
    with self._graph.as_default():
      saver, _ = loader.load_graph(self._graph, list(tags))
      loader.restore_variables(self._session, saver)
      loader.run_init_ops(self._session, list(tags))
    self._signature_defs = signature_defs

  def run(self, signature: str, inputs: dict[str, np.ndarray]
          ) -> dict[str, np.ndarray]:
    sig = self._signature_defs[signature]
    graph = self._graph
    feeds = {}
    for alias, value in inputs.items():
      tensor = graph.get_tensor_by_name(sig.inputs[alias].name)
      if tensor.dtype != tf.string:
        value = np.asarray(value, tensor.dtype.as_numpy_dtype)
      feeds[tensor.ref()] = value
    names = list(sig.outputs)
    fetches = [graph.get_tensor_by_name(sig.outputs[k].name) for k in names]
    # Session.run refuses a feed whose shape differs from the placeholder's
    # static shape, a check of the Python client alone: the C++ server does
    # not make it (kernels see the real shapes, and a [1] tensor fed to a
    # [None, 1] placeholder runs there). So the step runs below that check.
    values = self._session._do_run(  # pylint: disable=protected-access
        None, [], fetches, feeds, None, None)
    return dict(zip(names, values))


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
               runner: str = "session"):
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
    loader = loader_impl.SavedModelLoader(path)  # Parses saved_model.pb.
    graph = _meta_graph(path, tags, loader.saved_model)
    self.signature_defs = {k: v for k, v in graph.signature_def.items()
                           if not k.startswith("__")}
    if runner not in RUNNERS:
      raise ValueError(f"runner {runner!r} is not one of {RUNNERS}")
    # Only TF2's tf.saved_model.save writes an object graph to load.
    tf2 = bool(graph.object_graph_def.nodes)
    del graph
    order = (runner, *(r for r in RUNNERS if r != runner)) if tf2 else (
        "session",)
    for i, choice in enumerate(order):
      try:
        if choice == "function":
          self._runner = _FunctionRunner(path, tags)
        else:
          self._runner = _SessionRunner(path, tags, self.signature_defs,
                                        session_config, loader)
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
