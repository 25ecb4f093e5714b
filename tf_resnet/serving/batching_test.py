"""Server-side batching: merging, splitting, limits and failure isolation."""

import threading
import time

import grpc
import numpy as np
import tensorflow as tf

from tf_resnet.serving import batching
from tf_resnet.serving import manager
from tf_resnet.serving import options


def _double(arrays):
  if np.any(arrays["x"] < 0):
    raise ValueError("negative input")
  return {"y": arrays["x"] * 2, "n": np.full(len(arrays["x"]),
                                             len(arrays["x"]))}


class BatcherTest(tf.test.TestCase):

  def _concurrently(self, batcher, inputs):
    results = [None] * len(inputs)
    errors = [None] * len(inputs)

    def call(i):
      try:
        results[i] = batcher.run({"x": inputs[i]})
      except Exception as e:  # pylint: disable=broad-except
        errors[i] = e

    threads = [threading.Thread(target=call, args=(i,))
               for i in range(len(inputs))]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
    return results, errors

  def test_concurrent_requests_are_merged_and_split_back(self):
    batcher = batching.Batcher(
        _double, options.BatchingParameters(max_batch_size=8,
                                            batch_timeout_micros=200_000))
    self.addCleanup(batcher.close)
    inputs = [np.arange(i, i + 2) for i in range(0, 8, 2)]
    results, errors = self._concurrently(batcher, inputs)
    self.assertEqual(errors, [None] * 4)
    for x, r in zip(inputs, results):
      self.assertAllEqual(r["y"], x * 2)
    # Four requests of 2 within the timeout: one call of 8.
    self.assertEqual((batcher.batches_run, batcher.tasks_run), (1, 4))
    self.assertAllEqual(results[0]["n"], [8, 8])

  def test_batch_stays_within_max_batch_size(self):
    batcher = batching.Batcher(
        _double, options.BatchingParameters(max_batch_size=4,
                                            batch_timeout_micros=200_000))
    self.addCleanup(batcher.close)
    results, _ = self._concurrently(batcher, [np.ones(3), np.ones(3)])
    self.assertEqual(batcher.batches_run, 2)
    self.assertAllEqual(results[0]["n"], [3, 3, 3])

  def test_limits_use_tf_servings_codes_and_messages(self):
    batcher = batching.Batcher(_double,
                               options.BatchingParameters(max_batch_size=4))
    self.addCleanup(batcher.close)
    with self.assertRaises(manager.ServingError) as ctx:
      batcher.run({"x": np.ones(5)})
    self.assertEqual(ctx.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
    self.assertEqual(ctx.exception.message,
                     "Task size 5 is larger than maximum input batch size 4")
    slow = batching.Batcher(
        lambda a: (time.sleep(0.5), _double(a))[1],
        options.BatchingParameters(max_batch_size=2, max_enqueued_batches=1))
    self.addCleanup(slow.close)
    _, errors = self._concurrently(slow, [np.ones(2)] * 4)
    full = [e for e in errors if e is not None]
    self.assertNotEmpty(full)
    self.assertEqual(full[0].code, grpc.StatusCode.UNAVAILABLE)
    self.assertIn("queue to which this task was submitted is full",
                  full[0].message)

  def test_a_bad_request_fails_alone(self):
    batcher = batching.Batcher(
        _double, options.BatchingParameters(max_batch_size=8,
                                            batch_timeout_micros=200_000))
    self.addCleanup(batcher.close)
    results, errors = self._concurrently(
        batcher, [np.array([1, 2]), np.array([-1]), np.array([3])])
    self.assertIsNone(errors[0])
    self.assertIsNone(errors[2])
    self.assertIsInstance(errors[1], ValueError)
    self.assertAllEqual(results[2]["y"], [6])

  def test_parameters_parse_tf_servings_text_format(self):
    params = options.parse_batching(
        "max_batch_size { value: 32 }\n"
        "batch_timeout_micros { value: 5000 }\n"
        "num_batch_threads { value: 2 }\n")
    self.assertEqual(params, options.BatchingParameters(
        max_batch_size=32, batch_timeout_micros=5000, num_batch_threads=2))
    with self.assertRaisesRegex(ValueError, "max_batch_size must be positive"):
      options.parse_batching("max_batch_size { value: 0 }")


class ServingErrorTest(tf.test.TestCase):

  def test_long_messages_are_truncated_as_tf_serving_does(self):
    error = manager.ServingError(grpc.StatusCode.INTERNAL, "x" * 2000)
    self.assertLen(error.message, 1024)
    self.assertTrue(error.message.endswith("...TRUNCATED"))
    self.assertEqual(manager.ServingError(grpc.StatusCode.INTERNAL,
                                          "short").message, "short")


if __name__ == "__main__":
  tf.test.main()
