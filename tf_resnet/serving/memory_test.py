"""memory.release_freed_memory: freed arena memory leaves RSS, and unloads call it."""

import gc
import json
import subprocess
import sys
import tempfile
import textwrap
from unittest import mock
import weakref

import tensorflow as tf

from tf_resnet.serving import memory
from tf_resnet.serving import model_config
from tf_resnet.serving import served_model
from tf_resnet.testing import exports

# Four threads each allocate 1,500 blocks of 32 KiB (under glibc's mmap
# threshold, so they come from per-thread arenas), keep every 16th and free
# the rest: ~176 MiB free inside the arenas, kept from the system by the
# blocks still alive, as a model's tensors are after an unload.
_PROBE = textwrap.dedent("""
    import json, sys, threading
    from tf_resnet.serving import memory

    def rss():
      with open("/proc/self/status") as f:
        for line in f:
          if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

    kept, freed = [], []
    def work(i):
      blocks = [bytes([i]) * 32768 for _ in range(1500)]
      kept.extend(blocks[::16])
      freed.append(blocks)

    base = rss()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
    full = rss()
    freed.clear()
    after_free = rss()
    released = memory.release_freed_memory()
    print(json.dumps({"base": base, "full": full, "after_free": after_free,
                      "after_release": rss(), "released": released}))
""")


class ReleaseFreedMemoryTest(tf.test.TestCase):

  def test_freed_arena_memory_leaves_rss_only_when_released(self):
    # A fresh interpreter: this process's own heap would blur the figures.
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True,
                            text=True, timeout=120, check=True)
    figures = json.loads(result.stdout)
    freed = (figures["full"] - figures["base"]) * 15 / 16
    self.assertGreater(freed, 150)  # MiB: the blocks were allocated.
    # glibc keeps the freed blocks (the problem of TF Serving #1664) ...
    self.assertGreater(figures["after_free"] - figures["base"], 0.8 * freed)
    # ... and malloc_trim(0) gives them back.
    self.assertTrue(figures["released"])
    self.assertLess(figures["after_release"] - figures["base"], 0.2 * freed)


class UnloadReleasesTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.base = tempfile.mkdtemp()
    exports.tiny_export(cls.base)

  def _model(self, release: bool) -> served_model.ServedModel:
    config = model_config.single_model_config("m", self.base)
    model = served_model.ServedModel(
        config.model_config_list.config[0],
        lifecycle=served_model.LifecycleOptions(
            enable_model_warmup=False, release_memory_after_unload=release))
    model.update()
    self.assertEqual(model.available_versions(), [1])
    return model

  def test_unload_releases_freed_memory(self):
    model = self._model(release=True)
    with mock.patch.object(memory, "release_freed_memory") as release:
      model.unload_all()
    release.assert_called_once_with()
    self.assertEqual(model.available_versions(), [])

  def test_nothing_holds_the_version_when_released(self):
    # malloc_trim can give back only what is free: if anything still held
    # the unloaded servable or its runner (the loaded SavedModel and its
    # functions), their memory would stay, trimmed or not, at every unload.
    model = self._model(release=True)
    servable = model.resolve()
    refs = [weakref.ref(servable), weakref.ref(servable._runner)]  # pylint: disable=protected-access
    del servable
    alive = []

    def release() -> bool:
      gc.collect()  # As release_freed_memory does first.
      alive.append([ref() is not None for ref in refs])
      return True

    with mock.patch.object(memory, "release_freed_memory",
                           side_effect=release):
      model.unload_all()
    self.assertEqual(alive, [[False, False]])

  def test_unload_keeps_it_when_switched_off(self):
    model = self._model(release=False)
    with mock.patch.object(memory, "release_freed_memory") as release:
      model.unload_all()
    release.assert_not_called()


if __name__ == "__main__":
  tf.test.main()
