"""Error texts: gRPC's cut, and TensorFlow's runtime errors as Session::Run says them."""

import tempfile

import grpc
import numpy as np
import tensorflow as tf

from tf_resnet.serving import errors
from tf_resnet.serving import servable
from tf_resnet.serving import session_loader


class _Checks(tf.Module):

  @tf.function(input_signature=[tf.TensorSpec([None], tf.uint8, name="x")])
  def small(self, x):
    with tf.control_dependencies([tf.debugging.Assert(
        tf.reduce_all(x < 100), ["too big:", x])]):
      return {"y": tf.identity(x)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                              name="inputs")])
  def parse(self, inputs):
    return {"v": tf.io.parse_example(
        inputs, {"v": tf.io.FixedLenFeature([], tf.float32)})["v"]}


def _message(runner, signature, inputs) -> str:
  try:
    runner.run(signature, inputs)
  except tf.errors.OpError as e:
    return e.message
  raise AssertionError(f"{signature} ran")


class GrpcDetailsTest(tf.test.TestCase):

  def test_grpc_statuses_are_cut_as_tf_serving_cuts_them(self):
    # model_servers/grpc_status_util.cc:24-33 (tensorflow/serving at
    # 9d981c5c): the first kErrorMessageLimit = 1024 characters, then
    # "...TRUNCATED"; the status itself (and so REST's answer) stays whole.
    long = "".join(chr(ord("a") + i % 26) for i in range(2000))
    error = errors.ServingError(grpc.StatusCode.INVALID_ARGUMENT, long)
    self.assertEqual(error.message, long)
    self.assertEqual(errors.grpc_details(long), long[:1024] + "...TRUNCATED")
    self.assertEqual(errors.grpc_details(long[:1024]), long[:1024])


class TensorflowMessageTest(tf.test.TestCase):
  """The function runner's (eager) texts, cleaned, equal the Session's.

  The C++ server runs every signature with Session::Run; the Session runner
  here does too, below TensorFlow's Python API, whose only wrapper there is
  "Graph execution error:". So a cleaned eager text must equal the cleaned
  Session text, and carry none of eager's wrappers.
  """

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    path = tempfile.mkdtemp()
    module = _Checks()
    tf.saved_model.save(module, path, signatures={
        "small": module.small, "parse": module.parse})
    graph = session_loader.meta_graph(path, ["serve"])
    cls.function = servable._FunctionRunner(path, ["serve"])  # pylint: disable=protected-access
    cls.session = servable._SessionRunner(path, graph, graph.signature_def)  # pylint: disable=protected-access

  def assertSameAsSession(self, signature, inputs, expected):
    eager = _message(self.function, signature, inputs)
    session = _message(self.session, signature, inputs)
    for wrapper in ("Graph execution error", "__inference", "[Op:",
                    "Detected at node"):
      self.assertIn(wrapper, eager)  # What there was to remove.
    cleaned = errors.tensorflow_message(eager)
    self.assertEqual(cleaned, errors.tensorflow_message(session))
    self.assertEqual(cleaned, expected)

  def test_a_failed_assertion(self):
    self.assertSameAsSession(
        "small", {"x": np.array([7, 200], np.uint8)},
        "assertion failed: [too big:] [7 200]\n\t "
        "[[{{node Assert/AssertGuard/Assert}}]]")

  def test_parse_example_on_bytes_that_are_not_an_example(self):
    # TensorFlow's example_proto_fast_parsing.cc; TF Serving answers it for
    # a JPEG sent to a classify signature.
    self.assertSameAsSession(
        "parse", {"inputs": np.array([b"abc"], object)},
        "Could not parse example input, value: 'abc'\n\t "
        "[[{{node ParseExample/ParseExampleV2}}]]")

  def test_a_wrong_dtype_in_session_words(self):
    eager = _message(self.function, "parse",
                     {"inputs": np.zeros([1], np.float32)})
    session = _message(self.session, "parse",
                       {"inputs": np.zeros([1], np.float32)})
    self.assertIn("cannot compute __inference", eager)
    # FunctionCallFrame::SetArgs (tensorflow/core/framework/function.cc),
    # which Session::Run calls on its feeds.
    self.assertEqual(errors.tensorflow_message(session),
                     "Expects arg[0] to be string but float is provided")
    self.assertEqual(errors.tensorflow_message(eager),
                     errors.tensorflow_message(session))


if __name__ == "__main__":
  tf.test.main()
