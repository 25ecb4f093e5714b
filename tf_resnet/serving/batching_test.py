"""Server-side batching: TF Serving's shared scheduler, its queues and options."""

import threading
import time

import grpc
import numpy as np
import tensorflow as tf

from tf_resnet.serving import batching
from tf_resnet.serving import errors
from tf_resnet.serving import options


def _double(arrays):
  if np.any(arrays["x"] < 0):
    raise ValueError("negative input")
  return {"y": arrays["x"] * 2, "n": np.full(len(arrays["x"]),
                                             len(arrays["x"]))}


def _concurrently(queue, inputs, timeout=10.0):
  """Runs each input in its own thread; (results, errors), bounded."""
  results = [None] * len(inputs)
  failures = [None] * len(inputs)

  def call(i):
    try:
      results[i] = queue.run({"x": inputs[i]}, timeout=timeout)
    except Exception as e:  # pylint: disable=broad-except
      failures[i] = e

  threads = [threading.Thread(target=call, args=(i,))
             for i in range(len(inputs))]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout + 5)
  assert not any(t.is_alive() for t in threads), "a request hung"
  return results, failures


class BatchQueueTest(tf.test.TestCase):

  def _queue(self, run=_double, threads=1, **params):
    scheduler = batching.Scheduler(threads)
    self.addCleanup(scheduler.stop)
    return scheduler.add_queue(run, options.BatchingParameters(**params),
                               name="q")

  def test_concurrent_requests_are_merged_and_split_back(self):
    queue = self._queue(max_batch_size=8, batch_timeout_micros=200_000)
    inputs = [np.arange(i, i + 2) for i in range(0, 8, 2)]
    results, failures = _concurrently(queue, inputs)
    self.assertEqual(failures, [None] * 4)
    for x, r in zip(inputs, results):
      self.assertAllEqual(r["y"], x * 2)
    # Four requests of 2 within the timeout: one call of 8.
    self.assertEqual((queue.batches_run, queue.tasks_run), (1, 4))
    self.assertAllEqual(results[0]["n"], [8, 8])

  def test_batch_stays_within_max_batch_size(self):
    queue = self._queue(max_batch_size=4, batch_timeout_micros=200_000)
    results, _ = _concurrently(queue, [np.ones(3), np.ones(3)])
    self.assertEqual(queue.batches_run, 2)
    self.assertAllEqual(results[0]["n"], [3, 3, 3])

  def test_batches_are_padded_to_the_next_allowed_size(self):
    queue = self._queue(max_batch_size=8, allowed_batch_sizes=[2, 4, 8])
    result = queue.run({"x": np.array([1.0, 2.0, 3.0])})
    # The model saw 4 rows (the last repeated); the caller gets its 3.
    self.assertAllEqual(result["n"], [4, 4, 4])
    self.assertAllEqual(result["y"], [2.0, 4.0, 6.0])
    self.assertEqual(list(queue.batch_sizes), [4])

  def test_large_batch_splitting_runs_a_big_request_in_pieces(self):
    queue = self._queue(max_batch_size=10, enable_large_batch_splitting=True,
                        max_execution_batch_size=4)
    x = np.arange(10.0)
    result = queue.run({"x": x})
    self.assertAllEqual(result["y"], x * 2)
    self.assertAllEqual(result["n"], [4] * 8 + [2] * 2)
    with self.assertRaises(errors.ServingError) as ctx:
      queue.run({"x": np.ones(11)})
    self.assertEqual(ctx.exception.message,
                     "Task size 11 is larger than maximum input batch size 10")

  def test_variable_length_inputs_are_padded_with_the_first_element(self):
    seen = []

    def record(arrays):
      seen.append(arrays["x"].copy())
      return {"y": arrays["x"].sum(axis=1)}

    queue = self._queue(record, max_batch_size=4, batch_timeout_micros=300_000,
                        pad_variable_length_inputs=True)
    results, failures = _concurrently(
        queue, [np.array([[5, 1]]), np.array([[7, 1, 1]])])
    self.assertEqual(failures, [None, None])
    self.assertAllEqual(seen[0], [[5, 1, 5], [7, 1, 1]])
    self.assertAllEqual(results[0]["y"], [11])
    unpadded = self._queue(record, max_batch_size=4,
                           batch_timeout_micros=300_000)
    seen.clear()
    results, failures = _concurrently(
        unpadded, [np.array([[5, 1]]), np.array([[7, 1, 1]])])
    # Not mergeable: each runs alone, and both succeed.
    self.assertEqual(failures, [None, None])
    self.assertAllEqual(results[1]["y"], [9])

  def test_limits_use_tf_servings_codes_and_messages(self):
    queue = self._queue(max_batch_size=4)
    with self.assertRaises(errors.ServingError) as ctx:
      queue.run({"x": np.ones(5)})
    self.assertEqual(ctx.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
    self.assertEqual(ctx.exception.message,
                     "Task size 5 is larger than maximum input batch size 4")
    slow = self._queue(lambda a: (time.sleep(0.5), _double(a))[1],
                       max_batch_size=2, max_enqueued_batches=1)
    _, failures = _concurrently(slow, [np.ones(2)] * 4)
    full = [e for e in failures if e is not None]
    self.assertNotEmpty(full)
    self.assertEqual(full[0].code, grpc.StatusCode.UNAVAILABLE)
    self.assertIn("queue to which this task was submitted is full",
                  full[0].message)

  def test_a_bad_request_fails_alone(self):
    queue = self._queue(max_batch_size=8, batch_timeout_micros=200_000)
    results, failures = _concurrently(
        queue, [np.array([1, 2]), np.array([-1]), np.array([3])])
    self.assertIsNone(failures[0])
    self.assertIsNone(failures[2])
    self.assertIsInstance(failures[1], ValueError)
    self.assertAllEqual(results[2]["y"], [6])


class SchedulerTest(tf.test.TestCase):

  def test_one_pool_of_threads_serves_every_queue(self):
    scheduler = batching.Scheduler(2)
    self.addCleanup(scheduler.stop)
    names = set()

    def run(arrays):
      names.add(threading.current_thread().name)
      return _double(arrays)

    params = options.BatchingParameters(max_batch_size=4)
    queues = [scheduler.add_queue(run, params, name=f"q{i}")
              for i in range(5)]
    for i, queue in enumerate(queues):
      self.assertAllEqual(queue.run({"x": np.array([i])})["y"], [2 * i])
    # Five queues (models, versions, signatures), two threads in all.
    self.assertLessEqual(len(names), 2)
    self.assertTrue(all(n.startswith("batch_threads-") for n in names))
    batch_threads = [t for t in threading.enumerate()
                     if t.name.startswith("batch_threads-")]
    self.assertLen(batch_threads, 2)

  def test_close_runs_what_is_queued_and_abort_fails_it_never_hangs(self):
    # Fault 1: closing a queue with requests in it used to stop its thread
    # and leave their callers waiting forever.
    scheduler = batching.Scheduler(1)
    self.addCleanup(scheduler.stop)
    release = threading.Event()
    params = options.BatchingParameters(max_batch_size=1)
    queue = scheduler.add_queue(
        lambda a: (release.wait(5), _double(a))[1], params, name="slow")
    results = {}

    def call(i):
      try:
        results[i] = queue.run({"x": np.array([i])})
      except errors.ServingError as e:
        results[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
      t.start()
    time.sleep(0.3)  # One running, three queued.
    queue.close()
    release.set()
    for t in threads:
      t.join(10)
    self.assertFalse(any(t.is_alive() for t in threads))
    self.assertEqual({i: r["y"][0] for i, r in results.items()},
                     {0: 0, 1: 2, 2: 4, 3: 6})
    with self.assertRaises(errors.ServingError) as ctx:
      queue.run({"x": np.array([1])})
    self.assertEqual(ctx.exception.code, grpc.StatusCode.UNAVAILABLE)

    release.clear()
    aborted = scheduler.add_queue(
        lambda a: (release.wait(5), _double(a))[1], params, name="aborted")
    results.clear()
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(
        i, _catch(aborted, i))) for i in range(3)]
    for t in threads:
      t.start()
    time.sleep(0.3)
    aborted.close(abort=True)
    release.set()
    for t in threads:
      t.join(10)
    self.assertFalse(any(t.is_alive() for t in threads))
    failed = [r for r in results.values() if isinstance(r, errors.ServingError)]
    self.assertLen(failed, 2)  # The two queued; the running one finished.
    self.assertEqual(failed[0].code, grpc.StatusCode.UNAVAILABLE)
    self.assertIn("queued for batching but not run", failed[0].message)

  def test_a_waiting_request_gives_up_at_its_timeout(self):
    scheduler = batching.Scheduler(1)
    self.addCleanup(scheduler.stop)
    queue = scheduler.add_queue(lambda a: (time.sleep(1.0), _double(a))[1],
                                options.BatchingParameters(max_batch_size=1))
    threading.Thread(target=queue.run, args=({"x": np.ones(1)},)).start()
    time.sleep(0.1)
    with self.assertRaises(errors.ServingError) as ctx:
      queue.run({"x": np.ones(1)}, timeout=0.2)
    self.assertEqual(ctx.exception.code, grpc.StatusCode.DEADLINE_EXCEEDED)


def _catch(queue, i):
  try:
    return queue.run({"x": np.array([i])})
  except errors.ServingError as e:
    return e


class ParametersTest(tf.test.TestCase):

  def test_every_field_of_tf_servings_message_parses(self):
    params = options.parse_batching(
        "max_batch_size { value: 32 }\n"
        "batch_timeout_micros { value: 5000 }\n"
        "max_enqueued_batches { value: 7 }\n"
        "num_batch_threads { value: 2 }\n"
        "thread_pool_name { value: 'pool' }\n"
        "allowed_batch_sizes: 8 allowed_batch_sizes: 16\n"
        "pad_variable_length_inputs: true\n"
        "enable_large_batch_splitting { value: true }\n"
        "max_execution_batch_size { value: 16 }\n")
    self.assertEqual(params, options.BatchingParameters(
        max_batch_size=32, batch_timeout_micros=5000, max_enqueued_batches=7,
        num_batch_threads=2, thread_pool_name="pool",
        allowed_batch_sizes=(8, 16), pad_variable_length_inputs=True,
        enable_large_batch_splitting=True, max_execution_batch_size=16))

  def test_defaults_are_tf_servings(self):
    params = options.parse_batching(None)
    self.assertEqual(params.max_batch_size, 1000)
    self.assertEqual(params.max_enqueued_batches, 10)
    self.assertEqual(params.num_batch_threads, len(__import__(
        "os").sched_getaffinity(0)))
    self.assertEqual(params.batch_timeout_micros, 0)

  def test_values_tf_serving_refuses_are_refused(self):
    with self.assertRaisesRegex(ValueError, "max_batch_size must be positive"):
      options.parse_batching("max_batch_size { value: 0 }")
    with self.assertRaisesRegex(
        ValueError, "Last entry in allowed_batch_sizes must match "
        "max_batch_size; last entry was 8; expected 16"):
      options.parse_batching("max_batch_size { value: 16 }\n"
                             "allowed_batch_sizes: 4 allowed_batch_sizes: 8")
    with self.assertRaisesRegex(ValueError, "monotonically increasing"):
      options.BatchingParameters(max_batch_size=8, allowed_batch_sizes=(8, 4,
                                                                        8))
    with self.assertRaisesRegex(
        ValueError, "must be equal to max_execution_batch_size"):
      options.BatchingParameters(max_batch_size=16, allowed_batch_sizes=(4,),
                                 enable_large_batch_splitting=True,
                                 max_execution_batch_size=8)


if __name__ == "__main__":
  tf.test.main()
