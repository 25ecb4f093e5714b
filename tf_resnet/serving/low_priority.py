"""Model loads, unloads and executor builds on threads of lower CPU priority.

A version loading competes for the CPU with the requests of the models
already serving: a ResNet-50 export takes about a core-second to load here
(its graph imported, its variables restored, an executor built for each
step), and TF Serving's users see other models' p99 jump from 20 to over
100 ms while one loads (tensorflow/serving#1866, #881).

The same holds for the first request to each signature of a version run in
a Session: the Session prunes and optimizes (Grappler) the graph for that
signature's feeds and fetches before it runs, 0.8-2 s of one core per
signature of the ResNet-50 export.

tensorflow_model_server loads on threads of its own (`--num_load_threads`)
at the priority of its request threads. Here the manager runs every load
and unload on one thread, and those executor builds on two more, whose Linux
nice values are raised, so the kernel gives requests the CPU first and
these what requests leave; on an idle machine they take as long as before.
On Linux the nice value is per thread (setpriority(2) on a thread id);
elsewhere they run at normal priority.

Threads inherit their creator's nice value, so TensorFlow's thread pools
(created with the first Session or eager op) must exist before the first
load runs here, or every request would run at the load's priority:
`LowPriorityThreads` creates them first, in the calling thread.
"""

import concurrent.futures
import logging
import os
import sys
import threading
from typing import Callable, Optional, TypeVar

import tensorflow as tf

_LOG = logging.getLogger("tf_resnet.serving")
_T = TypeVar("_T")

# Above any request thread (nice 0), below anything else on the machine
# started at nice 19 (batch jobs that should yield to both).
DEFAULT_NICENESS = 10


def thread_niceness(native_id: Optional[int] = None) -> int:
  """A thread's nice value (this thread's by default); Linux only."""
  return os.getpriority(os.PRIO_PROCESS,
                        native_id or threading.get_native_id())


_pools_lock = threading.Lock()
_pools_created = False


def create_tensorflow_thread_pools(session_config=None) -> None:
  """Creates TensorFlow's process-wide thread pools in the calling thread.

  The first Session creates the inter-op pool every Session shares, sized by
  its ConfigProto (so `session_config` is the one the models' Sessions
  use), and the first eager op the eager runtime's pools. Once per process.
  """
  global _pools_created
  with _pools_lock:
    if not _pools_created:
      _create_pools(session_config)
      _pools_created = True


def _create_pools(session_config) -> None:
  with tf.Graph().as_default() as graph:
    one = tf.constant(1)
    with tf.compat.v1.Session(graph=graph, config=session_config) as session:
      session.run(one)
  tf.constant(1).numpy()


class LowPriorityThreads:
  """Runs callables on `workers` threads at a raised nice value."""

  def __init__(self, niceness: int = DEFAULT_NICENESS, session_config=None,
               workers: int = 1, name: str = "model-load"):
    """Starts the threads.

    Args:
      niceness: added to the process's nice value for these threads (0:
        the priority of requests).
      session_config: the ConfigProto of the models' Sessions, for the
        thread pools created before the first load.
      workers: threads; calls beyond them queue.
      name: the threads' name prefix.
    """
    self.niceness = niceness
    if niceness:
      create_tensorflow_thread_pools(session_config)
    self._idents: set[int] = set()
    self._executor = concurrent.futures.ThreadPoolExecutor(
        workers, thread_name_prefix=name, initializer=self._start)
    # Start the threads now, so a failure to lower their priority is logged
    # at start-up rather than at the first load.
    barrier = threading.Barrier(workers)
    for f in [self._executor.submit(barrier.wait) for _ in range(workers)]:
      f.result()

  def _start(self) -> None:
    self._idents.add(threading.get_ident())
    if not self.niceness:
      return
    if not sys.platform.startswith("linux"):
      _LOG.info("model loads run at normal priority: a per-thread nice "
                "value needs Linux")
      return
    native_id = threading.get_native_id()
    try:
      os.setpriority(os.PRIO_PROCESS, native_id,
                     min(19, thread_niceness(native_id) + self.niceness))
    except OSError as e:
      _LOG.warning("model loads run at normal priority: %s", e)

  def run(self, fn: Callable[..., _T], *args) -> _T:
    """fn(*args) on one of the threads; returns what it returns or raises."""
    if threading.get_ident() in self._idents:
      return fn(*args)  # Already on one (a load that unloads, say).
    return self._executor.submit(fn, *args).result()

  def stop(self) -> None:
    self._executor.shutdown(wait=True)
