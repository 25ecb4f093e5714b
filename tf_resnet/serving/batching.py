"""Server-side batching: concurrent requests for one signature run as one batch.

As TF Serving's `--enable_batching`: requests queue per (version,
signature); a batch thread takes the first, adds others while the batch
stays within `max_batch_size` and `batch_timeout_micros` has not passed since
the first arrived, concatenates their inputs along the first dimension, runs
the signature once and splits the outputs back. A request larger than
`max_batch_size` fails with INVALID_ARGUMENT, a full queue with UNAVAILABLE,
with TF Serving's messages.
"""

import collections
import threading
import time
from typing import Callable

import grpc
import numpy as np

from tf_resnet.serving import manager as manager_lib
from tf_resnet.serving import metrics
from tf_resnet.serving import options

Arrays = dict[str, np.ndarray]


class _Task:

  def __init__(self, inputs: Arrays, size: int):
    self.inputs = inputs
    self.size = size
    self.done = threading.Event()
    self.outputs = None
    self.error = None


class Batcher:
  """Merges concurrent calls of one function into batches."""

  def __init__(self, run: Callable[[Arrays], Arrays],
               params: options.BatchingParameters, name: str = ""):
    self._run = run
    self.params = params
    self.name = name
    self._queue: collections.deque = collections.deque()
    self._cond = threading.Condition()
    self._closed = False
    self.batches_run = 0  # Observable: how many merged calls ran.
    self.tasks_run = 0
    self._threads = [threading.Thread(target=self._loop, daemon=True,
                                      name=f"batch-{name}-{i}")
                     for i in range(params.num_batch_threads)]
    for t in self._threads:
      t.start()

  def run(self, inputs: Arrays) -> Arrays:
    """Runs `inputs` (arrays sharing their first dimension) within a batch."""
    sizes = {len(v) for v in inputs.values()}
    if len(sizes) != 1:
      raise manager_lib.ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          "Batching requires all inputs to have the same first dimension; "
          f"got {sorted(sizes)}")
    size = sizes.pop()
    if size > self.params.max_batch_size:
      raise manager_lib.ServingError(
          grpc.StatusCode.INVALID_ARGUMENT,
          f"Task size {size} is larger than maximum input batch size "
          f"{self.params.max_batch_size}")
    task = _Task(inputs, size)
    with self._cond:
      capacity = self.params.max_enqueued_batches * self.params.max_batch_size
      if sum(t.size for t in self._queue) + size > capacity:
        raise manager_lib.ServingError(
            grpc.StatusCode.UNAVAILABLE,
            "The batch scheduling queue to which this task was submitted is "
            "full")
      self._queue.append(task)
      metrics.set_batch_queue_size(self.name, len(self._queue))
      self._cond.notify()
    task.done.wait()
    if task.error is not None:
      raise task.error
    return task.outputs

  def _take_batch(self) -> list[_Task]:
    with self._cond:
      while not self._queue and not self._closed:
        self._cond.wait()
      if self._closed:
        return []
      first = self._queue.popleft()
      batch, total = [first], first.size
      deadline = time.monotonic() + self.params.batch_timeout_micros / 1e6
      while True:
        while (self._queue and
               total + self._queue[0].size <= self.params.max_batch_size):
          task = self._queue.popleft()
          batch.append(task)
          total += task.size
        left = deadline - time.monotonic()
        if total >= self.params.max_batch_size or left <= 0 or (
            self._queue and
            total + self._queue[0].size > self.params.max_batch_size):
          return batch
        self._cond.wait(left)

  def _loop(self) -> None:
    while True:
      batch = self._take_batch()
      if not batch:
        return
      metrics.set_batch_queue_size(self.name, len(self._queue))
      try:
        merged = {k: np.concatenate([t.inputs[k] for t in batch])
                  for k in batch[0].inputs}
        outputs = self._run(merged)
        metrics.observe_batch(self.name, sum(t.size for t in batch))
        self.batches_run += 1
        self.tasks_run += len(batch)
        start = 0
        for task in batch:
          task.outputs = {k: v[start:start + task.size]
                          for k, v in outputs.items()}
          start += task.size
      except Exception as e:  # pylint: disable=broad-except
        if len(batch) == 1:
          batch[0].error = e
        else:
          # One bad request (a corrupt image) must not fail the requests it
          # was batched with: run each alone, so only it fails.
          for task in batch:
            try:
              task.outputs = self._run(task.inputs)
            except Exception as alone:  # pylint: disable=broad-except
              task.error = alone
      for task in batch:
        task.done.set()

  def close(self) -> None:
    with self._cond:
      self._closed = True
      self._cond.notify_all()
