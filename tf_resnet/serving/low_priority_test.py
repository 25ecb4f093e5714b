"""Loads run on a thread of raised nice value; requests do not.

Each probe runs in a fresh interpreter: TensorFlow's thread pools are made
once per process, and the point is which thread makes them.
"""

import json
import subprocess
import sys
import textwrap
import threading
import unittest

import tensorflow as tf

from tf_resnet.serving import low_priority

# Loads a tiny export through a ModelManager, answers a request from the
# main thread, and reports every thread's name and nice value and which
# threads ran the load and built the signature's executor.
_PROBE = textwrap.dedent("""
    import json, os, sys, threading
    from tf_resnet import startup
    startup.prepare_tensorflow()
    from tf_resnet.serving import manager, model_config, servable
    from tf_resnet.testing import exports
    import numpy as np

    loaded_on = []
    original = servable.Servable.__init__
    def spy(self, *args, **kwargs):
      loaded_on.append(threading.get_native_id())
      original(self, *args, **kwargs)
    servable.Servable.__init__ = spy
    import tensorflow as tf
    built_on = []
    make_callable = tf.compat.v1.Session._make_callable_from_options
    def build_spy(self, options):
      built_on.append(threading.get_native_id())
      return make_callable(self, options)
    tf.compat.v1.Session._make_callable_from_options = build_spy

    version = exports.tiny_export()
    models = manager.ModelManager(
        model_config.models_config({"tiny": os.path.dirname(version)}),
        lifecycle=manager.LifecycleOptions(
            load_niceness=int(sys.argv[1]), enable_model_warmup=False))
    tiny = models.model("tiny").resolve()
    out = tiny.run("predict_images", {"images": np.zeros([1, 8, 8, 3],
                                                         np.uint8)})
    threads = []
    for tid in sorted(os.listdir("/proc/self/task"), key=int):
      with open(f"/proc/self/task/{tid}/comm") as f:
        threads.append((f.read().strip(),
                        os.getpriority(os.PRIO_PROCESS, int(tid))))
    models.model("tiny").unload_all()
    print(json.dumps({
        "threads": threads,
        "main_nice": os.getpriority(os.PRIO_PROCESS, 0),
        "load_nice": os.getpriority(os.PRIO_PROCESS, loaded_on[0]),
        "loaded_on_main": loaded_on[0] == threading.get_native_id(),
        "build_nice": os.getpriority(os.PRIO_PROCESS, built_on[0]),
        "built_on_main": built_on[0] == threading.get_native_id(),
        "answered": sorted(out)}))
""")


def _probe(niceness: int) -> dict:
  result = subprocess.run([sys.executable, "-c", _PROBE, str(niceness)],
                          capture_output=True, text=True, timeout=180)
  if result.returncode:
    raise AssertionError(result.stderr[-3000:])
  return json.loads(result.stdout.strip().splitlines()[-1])


@unittest.skipUnless(sys.platform.startswith("linux"), "nice is per thread "
                     "on Linux only")
class LoadThreadTest(tf.test.TestCase):

  def test_the_load_runs_niced_and_tensorflows_pools_do_not(self):
    figures = _probe(10)
    base = figures["main_nice"]  # The test may itself run niced.
    self.assertFalse(figures["loaded_on_main"])
    self.assertEqual(figures["load_nice"], min(19, base + 10))
    # The signature's executor, built at its first request, on another
    # niced thread while the request waited.
    self.assertFalse(figures["built_on_main"])
    self.assertEqual(figures["build_nice"], min(19, base + 10))
    self.assertNotEmpty(figures["answered"])
    # TensorFlow's inter-op pool (the threads that run every request's
    # ops) was made before the load thread, at the requests' priority.
    pool = [nice for name, nice in figures["threads"]
            if name.startswith("tf_Compute")]
    self.assertNotEmpty(pool)
    self.assertEqual(set(pool), {base})

  def test_niceness_0_loads_in_the_callers_thread_as_tf_serving(self):
    figures = _probe(0)
    self.assertTrue(figures["loaded_on_main"])
    self.assertTrue(figures["built_on_main"])
    self.assertEqual({nice for _, nice in figures["threads"]},
                     {figures["main_nice"]})


class RunTest(tf.test.TestCase):

  def test_results_and_errors_come_back_to_the_caller(self):
    thread = low_priority.LowPriorityThreads(niceness=0)
    try:
      self.assertEqual(thread.run(lambda a, b: a + b, 2, 3), 5)
      with self.assertRaisesRegex(ValueError, "bad version"):
        thread.run(self._fail)
      # A call from the load thread itself runs there, not queued behind
      # itself (which would never return).
      self.assertEqual(
          thread.run(lambda: thread.run(threading.get_native_id)),
          thread.run(threading.get_native_id))
      self.assertNotEqual(thread.run(threading.get_native_id),
                          threading.get_native_id())
    finally:
      thread.stop()

  @staticmethod
  def _fail():
    raise ValueError("bad version")


if __name__ == "__main__":
  tf.test.main()
