"""Server-side batching: TF Serving's shared batch scheduler and its queues.

As `tensorflow_model_server --enable_batching`: ONE `Scheduler` (a pool of
`num_batch_threads` threads, by default one per schedulable CPU) serves a
`BatchQueue` per (model, version, signature). A queue's batch is ready when it
holds `max_batch_size` rows (`max_execution_batch_size` with large-batch
splitting), when its oldest request has waited `batch_timeout_micros`, or when
the queue is closing; the threads take ready batches from the queues in turn.
A batch's inputs are concatenated along the first dimension (each request
padded in dimensions 1... to the batch's largest with
`pad_variable_length_inputs`; the batch padded with copies of its last row up
to the next of `allowed_batch_sizes`), the signature runs once, and the
outputs are split back (padding dropped).

Errors use TF Serving's wording: a request larger than `max_batch_size` is
INVALID_ARGUMENT, a queue holding `max_enqueued_batches` batches refuses more
with UNAVAILABLE. A batch that fails is run again one request at a time, so a
bad request (a corrupt image) fails only itself.

Lifecycle: `BatchQueue.close()` refuses new requests and still runs every
queued one; `BatchQueue.close(abort=True)` fails the queued ones with
UNAVAILABLE at once. Either way every waiting caller returns: no request
waits on a queue that will never run it.
"""

import collections
import threading
import time
from typing import Callable, Optional

import grpc
import numpy as np

from tf_resnet.serving import errors
from tf_resnet.serving import metrics
from tf_resnet.serving import options

Arrays = dict[str, np.ndarray]
ServingError = errors.ServingError


class _Task:
  """One request, or one piece of a request split across batches."""

  def __init__(self, inputs: Arrays, size: int):
    self.inputs = inputs
    self.size = size
    self.enqueued = time.monotonic()
    self.done = threading.Event()
    self.outputs: Optional[Arrays] = None
    self.error: Optional[Exception] = None

  def fail(self, error: Exception) -> None:
    self.error = error
    self.done.set()


def _pad_to(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
  """Pads dimensions 1... at the end with the array's first element (as TF Serving)."""
  if array.shape[1:] == shape:
    return array
  widths = [(0, 0)] + [(0, want - have)
                       for have, want in zip(array.shape[1:], shape)]
  if array.size == 0:
    return np.pad(array, widths)
  return np.pad(array, widths, constant_values=array.flat[0])


def merge(tasks: list[_Task], params: options.BatchingParameters
          ) -> tuple[Arrays, int]:
  """The batch's inputs, and its size with padding.

  Raises:
    ServingError: FAILED_PRECONDITION when shapes beyond the first dimension
      differ and `pad_variable_length_inputs` is off (TF Serving's message).
  """
  size = sum(t.size for t in tasks)
  padded = params.padded_size(size)
  merged = {}
  for key in tasks[0].inputs:
    arrays = [t.inputs[key] for t in tasks]
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) > 1:
      if not params.pad_variable_length_inputs or len(
          {len(s) for s in shapes}) > 1:
        raise ServingError(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"Tensors with name '{key}' from different tasks have different "
            "shapes and padding is turned off. Set pad_variable_length_inputs "
            "to true, or ensure that all tensors with the same name have "
            "equal dimensions starting with the first dim.")
      biggest = tuple(max(dims) for dims in zip(*shapes))
      arrays = [_pad_to(a, biggest) for a in arrays]
    if padded > size:
      arrays.append(np.repeat(arrays[-1][:1], padded - size, axis=0))
    merged[key] = np.concatenate(arrays)
  return merged, padded


class BatchQueue:
  """The queue of one signature of one version, served by a `Scheduler`."""

  def __init__(self, scheduler: "Scheduler", run: Callable[[Arrays], Arrays],
               params: options.BatchingParameters, name: str):
    self._scheduler = scheduler
    self._run = run
    self.params = params
    self.name = name
    self._tasks: collections.deque[_Task] = collections.deque()
    self._closed = False
    self.batches_run = 0  # Observable: merged calls run, and their sizes.
    self.tasks_run = 0
    self.batch_sizes: collections.deque[int] = collections.deque(maxlen=256)

  def run(self, inputs: Arrays, timeout: Optional[float] = None) -> Arrays:
    """Runs `inputs` (arrays sharing their first dimension) within batches.

    Args:
      inputs: the request's tensors by input name.
      timeout: seconds to wait for the result (None: until it is run or the
        queue is closed, which always ends the wait).

    Returns:
      The request's outputs by name.

    Raises:
      ServingError: INVALID_ARGUMENT for a request the queue cannot take,
        UNAVAILABLE when the queue is full or closed, DEADLINE_EXCEEDED when
        `timeout` passes; or the error of running the request.
    """
    sizes = {len(v) for v in inputs.values()}
    if len(sizes) != 1:
      raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          "Batching requires all inputs to have the same first dimension; "
          f"got {sorted(sizes)}")
    size = sizes.pop()
    if size > self.params.input_size_limit:
      raise ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"Task size {size} is larger than maximum input batch size "
          f"{self.params.input_size_limit}")
    step = self.params.execution_batch_size
    if size > step:  # Only with enable_large_batch_splitting.
      tasks = [_Task({k: v[i:i + step] for k, v in inputs.items()},
                     min(step, size - i)) for i in range(0, size, step)]
    else:
      tasks = [_Task(inputs, size)]
    self._scheduler.enqueue(self, tasks)
    deadline = None if timeout is None else time.monotonic() + timeout
    for task in tasks:
      left = None if deadline is None else max(0.0, deadline - time.monotonic())
      if not task.done.wait(left):
        self._scheduler.cancel(self, tasks)
        raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                           "Deadline exceeded while waiting in the batch "
                           f"queue of {self.name}")
    for task in tasks:
      if task.error is not None:
        raise task.error
    if len(tasks) == 1:
      return tasks[0].outputs
    return {k: np.concatenate([t.outputs[k] for t in tasks])
            for k in tasks[0].outputs}

  def close(self, abort: bool = False) -> None:
    """Refuses new requests; runs the queued ones, or fails them (`abort`)."""
    self._scheduler.close_queue(self, abort)

  # Called by the scheduler, under its lock.

  def _ready(self, now: float) -> Optional[float]:
    """0 if a batch is ready, else seconds until one is (None: no tasks)."""
    if not self._tasks:
      return None
    if self._closed or (sum(t.size for t in self._tasks)
                        >= self.params.execution_batch_size):
      return 0.0
    wait = self._tasks[0].enqueued + self.params.batch_timeout_micros / 1e6
    return max(0.0, wait - now)

  def _take(self) -> list[_Task]:
    limit = self.params.execution_batch_size
    batch = [self._tasks.popleft()]
    total = batch[0].size
    while self._tasks and total + self._tasks[0].size <= limit:
      task = self._tasks.popleft()
      batch.append(task)
      total += task.size
    return batch

  # Called by a scheduler thread, outside the lock.

  def _process(self, batch: list[_Task]) -> None:
    try:
      merged, padded = merge(batch, self.params)
      outputs = self._run(merged)
      metrics.observe_batch(self.name, sum(t.size for t in batch))
      start = 0
      for task in batch:
        task.outputs = {k: v[start:start + task.size]
                        for k, v in outputs.items()}
        start += task.size
      for key, value in outputs.items():
        if len(value) != padded:
          raise ServingError(
              grpc.StatusCode.INTERNAL,
              f"Batched output tensor {key} has {len(value)} rows, but "
              f"expected {padded}")
      self.batches_run += 1
      self.tasks_run += len(batch)
      self.batch_sizes.append(padded)
    except Exception as e:  # pylint: disable=broad-except
      if len(batch) == 1:
        batch[0].error = e
      else:
        # One bad request must not fail the requests it was batched with:
        # run each alone, so only it fails.
        for task in batch:
          try:
            task.outputs = self._run(merge([task], self.params)[0])
            task.outputs = {k: v[:task.size] for k, v in task.outputs.items()}
          except Exception as alone:  # pylint: disable=broad-except
            task.error = alone
    for task in batch:
      task.done.set()


class Scheduler:
  """TF Serving's SharedBatchScheduler: one pool of threads for every queue."""

  def __init__(self, num_threads: int, name: str = "batch_threads"):
    if num_threads < 1:
      raise ValueError(f"`num_threads` must be positive, not {num_threads}")
    self._cond = threading.Condition()
    self._queues: list[BatchQueue] = []
    self._next = 0  # Round-robin start, so no queue starves another.
    self._stopped = False
    self._threads = [threading.Thread(target=self._loop, daemon=True,
                                      name=f"{name}-{i}")
                     for i in range(num_threads)]
    for t in self._threads:
      t.start()

  @property
  def num_threads(self) -> int:
    return len(self._threads)

  def add_queue(self, run: Callable[[Arrays], Arrays],
                params: options.BatchingParameters,
                name: str = "") -> BatchQueue:
    """A new queue whose batches are run by `run` on this scheduler's threads."""
    queue = BatchQueue(self, run, params, name)
    with self._cond:
      if self._stopped:
        raise ServingError(grpc.StatusCode.UNAVAILABLE,
                           "The batch scheduler has stopped")
      self._queues.append(queue)
    return queue

  def enqueue(self, queue: BatchQueue, tasks: list[_Task]) -> None:
    with self._cond:
      if queue._closed:  # pylint: disable=protected-access
        raise ServingError(grpc.StatusCode.UNAVAILABLE,
                           f"The batch queue of {queue.name} is closed (its "
                           "version is unloading)")
      params = queue.params
      capacity = params.max_enqueued_batches * params.execution_batch_size
      queued = sum(t.size for t in queue._tasks)  # pylint: disable=protected-access
      if queued + sum(t.size for t in tasks) > capacity:
        raise ServingError(
            grpc.StatusCode.UNAVAILABLE,
            "The batch scheduling queue to which this task was submitted is "
            "full")
      queue._tasks.extend(tasks)  # pylint: disable=protected-access
      metrics.set_batch_queue_size(queue.name, len(queue._tasks))  # pylint: disable=protected-access
      self._cond.notify_all()

  def cancel(self, queue: BatchQueue, tasks: list[_Task]) -> None:
    """Drops tasks whose caller stopped waiting."""
    with self._cond:
      for task in tasks:
        try:
          queue._tasks.remove(task)  # pylint: disable=protected-access
        except ValueError:
          pass  # Already taken into a batch.

  def close_queue(self, queue: BatchQueue, abort: bool) -> None:
    with self._cond:
      queue._closed = True  # pylint: disable=protected-access
      if abort or self._stopped:
        self._fail_queued(queue, f"version unloaded ({queue.name})")
      if not queue._tasks and queue in self._queues:  # pylint: disable=protected-access
        self._queues.remove(queue)
      self._cond.notify_all()

  def stop(self) -> None:
    """Fails what is queued, and stops the threads."""
    with self._cond:
      self._stopped = True
      for queue in self._queues:
        queue._closed = True  # pylint: disable=protected-access
        self._fail_queued(queue, "the server is stopping")
      self._queues.clear()
      self._cond.notify_all()
    for t in self._threads:
      t.join(timeout=10)

  @staticmethod
  def _fail_queued(queue: BatchQueue, why: str) -> None:
    while queue._tasks:  # pylint: disable=protected-access
      queue._tasks.popleft().fail(ServingError(  # pylint: disable=protected-access
          grpc.StatusCode.UNAVAILABLE,
          f"Request was queued for batching but not run: {why}"))

  def _take_ready(self) -> tuple[Optional[BatchQueue], list[_Task],
                                 Optional[float]]:
    """A ready batch, or the seconds until one may be ready."""
    now = time.monotonic()
    soonest = None
    count = len(self._queues)
    for i in range(count):
      queue = self._queues[(self._next + i) % count]
      wait = queue._ready(now)  # pylint: disable=protected-access
      if wait == 0.0:
        self._next = (self._next + i + 1) % count
        batch = queue._take()  # pylint: disable=protected-access
        if queue._closed and not queue._tasks:  # pylint: disable=protected-access
          self._queues.remove(queue)
        return queue, batch, None
      if wait is not None:
        soonest = wait if soonest is None else min(soonest, wait)
    return None, [], soonest

  def _loop(self) -> None:
    while True:
      with self._cond:
        while True:
          if self._stopped:
            return
          queue, batch, wait = self._take_ready()
          if queue is not None:
            metrics.set_batch_queue_size(queue.name, len(queue._tasks))  # pylint: disable=protected-access
            break
          self._cond.wait(wait)
      queue._process(batch)  # pylint: disable=protected-access
