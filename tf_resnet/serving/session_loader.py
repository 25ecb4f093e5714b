"""A SavedModel's MetaGraph in a Session, loaded as TF Serving loads it.

The steps are those of tensorflow/cc/saved_model/loader.cc
(LoadSavedModelInternal), the loader behind tensorflow_model_server's
SavedModelBundle: import the MetaGraph's GraphDef; if it has a saver, run
its restore op fed the variables' path; then run the init op (the
`__saved_model_init_op` signature's, else the `saved_model_main_op` or
`legacy_init_op` collection's) fed the assets' paths.

Why not `tf.compat.v1.saved_model.load`, which does the same: it builds the
Python side of the graph as well, a Python `Operation` for every node
(importer._ProcessNewOps), a `_DefinedFunction` for every library function,
the collections and a `Saver`. For the ResNet-50 export that is ~110 ms of
Python per load (of a ~190 ms `load_graph`), which holds the GIL in short
turns, so every request of the models already serving waits at each
hand-off while a load runs (TF Serving #1866; docs/performance.md). A
served Session needs none of it: its signatures run as callables named by
tensor. Here the library's functions are imported by calls that release the
GIL, the nodes by one call that holds it (~60 ms for the ResNet-50 export),
and no Python object exists per node, so an unload leaves the collector
nothing to walk.
"""

import os
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2
from tensorflow.core.protobuf import config_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.python.client import pywrap_tf_session as c_api  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.framework import c_api_util  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.saved_model import loader_impl  # pylint: disable=g-direct-tensorflow-import

# tensorflow/cc/saved_model/constants.h
INIT_OP_SIGNATURE_KEY = "__saved_model_init_op"
MAIN_OP_KEY = "saved_model_main_op"
LEGACY_INIT_OP_KEY = "legacy_init_op"
ASSETS_KEY = "saved_model_assets"


def meta_graph(path: str, tags: Sequence[str]) -> meta_graph_pb2.MetaGraphDef:
  """The MetaGraphDef for `tags` of the SavedModel at `path`."""
  saved_model = loader_impl.parse_saved_model(path)  # .pb or .pbtxt
  for graph in saved_model.meta_graphs:
    if set(graph.meta_info_def.tags) == set(tags):
      return graph
  available = [sorted(g.meta_info_def.tags) for g in saved_model.meta_graphs]
  raise ValueError(f"Could not find meta graph def matching supplied tags: "
                   f"{{ {' '.join(sorted(tags))} }} in {path}; available: "
                   f"{available}")


def import_graph_def(graph: tf.Graph, graph_def: graph_pb2.GraphDef) -> None:
  """Imports `graph_def` into `graph`'s C graph, without Python operations.

  The function library goes in one function at a time (TensorFlow's Python
  bindings release the GIL for these calls), then the nodes in one call.
  A library with gradient functions is imported with the nodes instead (the
  gradient mapping needs the whole library at once).
  """
  with graph._c_graph.get() as c_graph:  # pylint: disable=protected-access
    nodes = graph_def
    if graph_def.library.function and not graph_def.library.gradient:
      for function_def in graph_def.library.function:
        function = c_api.TF_FunctionImportFunctionDef(
            function_def.SerializeToString())
        try:
          c_api.TF_GraphCopyFunction(c_graph, function, None)
        finally:
          c_api.TF_DeleteFunction(function)
      nodes = graph_pb2.GraphDef(node=graph_def.node,
                                 versions=graph_def.versions)
    options = c_api.TF_NewImportGraphDefOptions()
    try:
      with c_api_util.tf_buffer(nodes.SerializeToString()) as buffer:
        results = c_api.TF_GraphImportGraphDefWithResults(
            c_graph, buffer, options)
      c_api.TF_DeleteImportGraphDefResults(results)
    finally:
      c_api.TF_DeleteImportGraphDefOptions(options)


def init_op_name(meta_graph: meta_graph_pb2.MetaGraphDef) -> str:
  """The init op to run after the restore ("": none); loader.cc GetInitOp."""
  signature = meta_graph.signature_def.get(INIT_OP_SIGNATURE_KEY)
  if signature is not None:
    return signature.outputs[INIT_OP_SIGNATURE_KEY].name
  for key in (MAIN_OP_KEY, LEGACY_INIT_OP_KEY):
    if key in meta_graph.collection_def:
      names = meta_graph.collection_def[key].node_list.value
      if len(names) != 1:
        # loader_util.cc GetInitOp's words.
        raise ValueError(f"Expected exactly one main op in : {key}")
      return names[0]
  return ""


def asset_file_defs(meta_graph: meta_graph_pb2.MetaGraphDef
                    ) -> list[meta_graph_pb2.AssetFileDef]:
  """The MetaGraph's assets; loader_util.cc GetAssetFileDefs."""
  if meta_graph.asset_file_def:
    return list(meta_graph.asset_file_def)
  assets = []
  if ASSETS_KEY in meta_graph.collection_def:
    for any_proto in meta_graph.collection_def[ASSETS_KEY].any_list.value:
      asset = meta_graph_pb2.AssetFileDef()
      any_proto.Unpack(asset)
      assets.append(asset)
  return assets


def run_once(session: tf.compat.v1.Session, feeds: Mapping[str, object],
             target: str) -> None:
  """Runs op `target` once, feeding tensors by name; returns nothing."""
  options = config_pb2.CallableOptions(feed=list(feeds),
                                       target=[target.split(":")[0]])
  run = session._make_callable_from_options(options)  # pylint: disable=protected-access
  run(*(np.asarray(v) for v in feeds.values()))


def load(path: str, meta_graph: meta_graph_pb2.MetaGraphDef,
         session_config=None) -> tf.compat.v1.Session:
  """A Session holding `meta_graph` of the SavedModel at `path`, restored."""
  graph = tf.Graph()
  import_graph_def(graph, meta_graph.graph_def)
  session = tf.compat.v1.Session(graph=graph, config=session_config)
  assets = {a.tensor_info.name: os.path.join(path, "assets", a.filename)
            for a in asset_file_defs(meta_graph)}
  if meta_graph.HasField("saver_def"):
    # loader.cc skips the restore when variables/variables.index is missing
    # and serves the variables uninitialized; like the Python loader, this
    # fails instead, so a version copied in before its variables is retried
    # (manager.py) rather than served broken.
    saver = meta_graph.saver_def
    variables = os.path.join(path, "variables", "variables")
    run_once(session, {saver.filename_tensor_name: variables, **assets},
             saver.restore_op_name)
  init = init_op_name(meta_graph)
  if init:
    run_once(session, assets, init)
  return session

