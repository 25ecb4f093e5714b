"""session_loader: a SavedModel in a Session, as TensorFlow's own loaders give it.

The truth each test checks against is TensorFlow's: the Python loader
(`tf.compat.v1.saved_model.load`, same steps with a Python graph) for TF1
exports, `tf.saved_model.load` for TF2 ones, and the rules of
tensorflow/cc/saved_model/loader_util.cc (GetInitOp, GetAssetFileDefs) for
which op initialises and which files are fed.
"""

import os
import tempfile

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from tf_resnet.serving import session_loader

_WORDS = ["zero", "one", "two", "three"]


def _vocabulary(directory: str) -> str:
  path = os.path.join(directory, "vocabulary.txt")
  with open(path, "w") as f:
    f.write("\n".join(_WORDS) + "\n")
  return path


def _tf1_export(init_key: str) -> str:
  """A TF1 builder export: a variable, and a table read from an asset."""
  v1 = tf.compat.v1
  path = os.path.join(tempfile.mkdtemp(), "1")
  vocabulary = _vocabulary(tempfile.mkdtemp())
  with tf.Graph().as_default(), v1.Session() as session:
    words = v1.placeholder(tf.string, [None], name="words")
    asset = tf.constant(vocabulary, name="vocabulary_path")
    v1.add_to_collection(v1.GraphKeys.ASSET_FILEPATHS, asset)
    table = tf.lookup.StaticHashTable(tf.lookup.TextFileInitializer(
        asset, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64,
        tf.lookup.TextFileIndex.LINE_NUMBER), -1)
    scale = v1.get_variable("scale", initializer=np.int64(7))
    ids = tf.identity(table.lookup(words) * scale, name="ids")
    session.run(v1.global_variables_initializer())
    session.run(scale.assign(10))  # Only a restore gives 10.
    builder = v1.saved_model.Builder(path)
    init = {init_key: v1.tables_initializer()}
    builder.add_meta_graph_and_variables(
        session, ["serve"], signature_def_map={
            "lookup": v1.saved_model.predict_signature_def(
                {"words": words}, {"ids": ids})},
        assets_collection=v1.get_collection(v1.GraphKeys.ASSET_FILEPATHS),
        **init)
    builder.save()
  return path


def _run(session, signature_def, inputs):
  options = config_pb2.CallableOptions(
      feed=[signature_def.inputs[k].name for k in inputs],
      fetch=[signature_def.outputs[k].name for k in signature_def.outputs])
  run = session._make_callable_from_options(options)  # pylint: disable=protected-access
  return dict(zip(signature_def.outputs, run(*inputs.values())))


def _meta_graph(path):
  return session_loader.meta_graph(path, ["serve"])


class Tf1ExportTest(tf.test.TestCase):

  def _check(self, init_key: str):
    path = _tf1_export(init_key)
    meta_graph = _meta_graph(path)
    words = np.array([b"two", b"three", b"nine"], object)
    session = session_loader.load(path, meta_graph)
    got = _run(session, meta_graph.signature_def["lookup"], {"words": words})
    with tf.Graph().as_default() as graph, tf.compat.v1.Session() as python:
      tf.compat.v1.saved_model.load(python, ["serve"], path)
      want = python.run("ids:0", {"words:0": words})
      self.assertNotEmpty(graph.get_operations())
    np.testing.assert_array_equal(got["ids"], want)
    np.testing.assert_array_equal(want, [20, 30, -10])

  def test_main_op_and_assets_as_the_python_loader(self):
    self._check("main_op")

  def test_legacy_init_op_as_the_python_loader(self):
    self._check("legacy_init_op")

  def test_the_graph_has_no_python_operations(self):
    path = _tf1_export("main_op")
    meta_graph = _meta_graph(path)
    session = session_loader.load(path, meta_graph)
    self.assertEqual(session.graph.get_operations(), [])
    got = _run(session, meta_graph.signature_def["lookup"],
               {"words": np.array([b"one"], object)})
    np.testing.assert_array_equal(got["ids"], [10])

  def test_missing_variables_fail_the_load(self):
    # An export copied in before its variables: loader.cc would serve it
    # uninitialised; this loader fails, so the manager retries it.
    path = _tf1_export("main_op")
    for name in os.listdir(os.path.join(path, "variables")):
      os.remove(os.path.join(path, "variables", name))
    with self.assertRaises(tf.errors.OpError):
      session_loader.load(path, _meta_graph(path))


class _Tf2Module(tf.Module):

  def __init__(self, vocabulary: str):
    super().__init__()
    self.table = tf.lookup.StaticHashTable(tf.lookup.TextFileInitializer(
        vocabulary, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, tf.int64,
        tf.lookup.TextFileIndex.LINE_NUMBER), -1)
    self.scale = tf.Variable(np.int64(3))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def lookup(self, words):
    return {"ids": self.table.lookup(words) * self.scale}


class Tf2ExportTest(tf.test.TestCase):

  def test_functions_init_op_and_assets_as_tf_saved_model_load(self):
    path = os.path.join(tempfile.mkdtemp(), "1")
    module = _Tf2Module(_vocabulary(tempfile.mkdtemp()))
    tf.saved_model.save(module, path, signatures={"lookup": module.lookup})
    meta_graph = _meta_graph(path)
    self.assertNotEmpty(meta_graph.graph_def.library.function)
    self.assertNotEmpty(meta_graph.asset_file_def)
    words = np.array([b"one", b"zero", b"x"], object)
    session = session_loader.load(path, meta_graph)
    got = _run(session, meta_graph.signature_def["lookup"], {"words": words})
    want = tf.saved_model.load(path).signatures["lookup"](
        tf.constant(words))["ids"].numpy()
    np.testing.assert_array_equal(got["ids"], want)
    np.testing.assert_array_equal(want, [3, 0, -3])


class InitOpTest(tf.test.TestCase):
  """loader_util.cc GetInitOp's order, and GetAssetFileDefs' two sources."""

  def test_the_signature_comes_first_then_main_op_then_legacy(self):
    meta_graph = meta_graph_pb2.MetaGraphDef()
    self.assertEqual(session_loader.init_op_name(meta_graph), "")
    meta_graph.collection_def["legacy_init_op"].node_list.value.append("old")
    self.assertEqual(session_loader.init_op_name(meta_graph), "old")
    meta_graph.collection_def["saved_model_main_op"].node_list.value.append(
        "main")
    self.assertEqual(session_loader.init_op_name(meta_graph), "main")
    meta_graph.signature_def["__saved_model_init_op"].outputs[
        "__saved_model_init_op"].name = "NoOp"
    self.assertEqual(session_loader.init_op_name(meta_graph), "NoOp")

  def test_two_main_ops_are_refused(self):
    meta_graph = meta_graph_pb2.MetaGraphDef()
    meta_graph.collection_def["saved_model_main_op"].node_list.value.extend(
        ["a", "b"])
    with self.assertRaisesRegex(ValueError, "Expected exactly one main op"):
      session_loader.init_op_name(meta_graph)

  def test_assets_from_the_meta_graph_else_from_the_collection(self):
    asset = meta_graph_pb2.AssetFileDef(filename="v.txt")
    asset.tensor_info.name = "path:0"
    meta_graph = meta_graph_pb2.MetaGraphDef()
    meta_graph.collection_def["saved_model_assets"].any_list.value.add().Pack(
        asset)
    self.assertEqual(session_loader.asset_file_defs(meta_graph), [asset])
    other = meta_graph_pb2.AssetFileDef(filename="w.txt")
    meta_graph.asset_file_def.append(other)
    self.assertEqual(session_loader.asset_file_defs(meta_graph), [other])


if __name__ == "__main__":
  tf.test.main()
