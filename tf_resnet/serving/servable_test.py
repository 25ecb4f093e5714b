"""Servable: a TF2 export answers the same in a Session as in tf.functions.

The server runs TF2 exports in a tf.compat.v1 Session by default (how the C++
server runs every SavedModel; servable.py says why), so every signature this
project exports must give, through the Session, what tf.saved_model.load's
functions give: the same arrays to the bit, on the same inputs.
"""

import json
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import tensorflow as tf

from tf_resnet.serving import model_config
from tf_resnet.serving import protocol
from tf_resnet.serving import servable
from tf_resnet.serving import served_model
from tf_resnet.testing import exports
from tf_resnet.testing import images


class RunnersAgreeTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.path = exports.tiny_export(seed=3)
    # Different sizes and both codecs: the resize and decode paths run.
    cls.encoded = [images.png(1), images.encode_jpeg(
        images.random_pixels(2, size=45)[:, :40])]
    cls.session = servable.Servable("tiny", 1, cls.path)
    cls.function = servable.Servable("tiny", 1, cls.path, runner="function")

  def _inputs(self, signature_def) -> dict[str, np.ndarray]:
    (alias, spec), = signature_def.inputs.items()
    if spec.dtype == tf.uint8.as_datatype_enum:
      return {alias: np.stack([images.random_pixels(4),
                               images.random_pixels(5)])}
    if alias == "inputs":  # classify: tf.Examples.
      examples = protocol.classify_request(
          self.encoded, "tiny", "").input.example_list.examples
      return {alias: np.array([e.SerializeToString() for e in examples],
                              object)}
    return {alias: np.array(self.encoded, object)}  # Image bytes.

  def test_the_default_is_a_session_and_function_can_be_chosen(self):
    self.assertEqual(self.session.loader, "session")
    self.assertEqual(self.function.loader, "function")

  def test_every_signature_gives_the_same_arrays(self):
    signatures = sorted(self.session.signature_defs)
    self.assertEqual(signatures, sorted(self.function.signature_defs))
    self.assertContainsSubset(
        ["serving_default", "predict", "predict_images", "classification"],
        signatures)
    for name in signatures:
      with self.subTest(signature=name):
        inputs = self._inputs(self.session.signature_defs[name])
        got = self.session.run(name, inputs)
        want = self.function.run(name, inputs)
        self.assertEqual(sorted(got), sorted(want))
        for key, value in want.items():
          self.assertEqual(got[key].dtype, value.dtype, key)
          np.testing.assert_array_equal(got[key], value, err_msg=key)

  def test_an_unknown_runner_is_refused(self):
    with self.assertRaisesRegex(ValueError, "runner 'eager' is not one of"):
      servable.Servable("tiny", 1, self.path, runner="eager")

  def test_the_lifecycle_option_picks_the_runner(self):
    base = tempfile.mkdtemp()
    exports.tiny_export(base)
    config = model_config.single_model_config("tiny", base).model_config_list
    for runner in servable.RUNNERS:
      with self.subTest(runner=runner):
        model = served_model.ServedModel(
            config.config[0], lifecycle=served_model.LifecycleOptions(
                enable_model_warmup=False, saved_model_runner=runner))
        model.update()
        try:
          self.assertEqual(model.resolve().loader, runner)
        finally:
          model.unload_all()


# In a fresh interpreter: frozen objects stay for the process's life, which
# the other tests of this one should not inherit.
_FREEZE_PROBE = textwrap.dedent("""
    import gc, json, weakref
    import numpy  # Some start-up objects to freeze.
    from tf_resnet.serving import memory
    
    frozen = memory.freeze_start_up_objects()
    walked_after = len(gc.get_objects())

    class Node:
      pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # A cycle: only the collector frees it.
    alive = weakref.ref(a)
    del a, b
    memory.release_freed_memory()
    print(json.dumps({"frozen": frozen, "walked_after": walked_after,
                      "freeze_count": gc.get_freeze_count(),
                      "cycle_freed": alive() is None}))
""")


class FreezeTest(tf.test.TestCase):

  def test_start_up_objects_leave_the_walks_and_later_cycles_are_freed(self):
    result = subprocess.run([sys.executable, "-c", _FREEZE_PROBE],
                            capture_output=True, text=True, timeout=120,
                            check=True)
    figures = json.loads(result.stdout)
    self.assertGreater(figures["frozen"], 10000)
    self.assertEqual(figures["freeze_count"], figures["frozen"])
    # The collector now walks only what came after the freeze.
    self.assertLess(figures["walked_after"], figures["frozen"] / 10)
    self.assertTrue(figures["cycle_freed"])


if __name__ == "__main__":
  tf.test.main()
