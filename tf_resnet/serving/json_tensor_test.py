"""The JSON tensor codec against json.loads and TF Serving's wording."""

import json

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2  # pylint: disable=g-direct-tensorflow-import
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import regression_pb2

from tf_resnet.serving import json_tensor
from tf_resnet.serving import json_writer
from tf_resnet.serving import manager

_FLOAT, _DOUBLE = types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE
_INT64, _UINT8 = types_pb2.DT_INT64, types_pb2.DT_UINT8
_INT32 = types_pb2.DT_INT32
_NUMPY = {_FLOAT: np.float32, _DOUBLE: np.float64, _INT64: np.int64,
          _UINT8: np.uint8, _INT32: np.int32}


def _tensors(body, dtypes):
  if not isinstance(body, bytes):
    body = json.dumps(body).encode()
  tensors, _ = json_tensor.predict_tensors(json_tensor.parse(body), dtypes)
  return {name: tf.make_ndarray(proto) for name, proto in tensors.items()}


class ParseTest(tf.test.TestCase):

  def assertError(self, body, message, dtypes=None):
    with self.assertRaises(manager.ServingError) as caught:
      if dtypes is None:
        json_tensor.parse(body)
      else:
        _tensors(body, dtypes)
    self.assertEqual(caught.exception.message, message)

  def test_dense_numeric_arrays_are_decoded_as_json_loads_does(self):
    rng = np.random.default_rng(0)
    for dtype in _NUMPY:
      for shape in ([3], [2, 3], [1, 4, 2], [2, 1, 3, 2]):
        if dtype in (_FLOAT, _DOUBLE):
          values = rng.normal(0, 1e3, shape).round(rng.integers(0, 8))
          values.flat[0] = 16777217  # An integer token for a float input.
        else:
          values = rng.integers(0, 200, shape)
        text = json.dumps({"inputs": values.tolist()})
        # Whitespace as people write it: spaces, newlines, none.
        for body in (text, text.replace(", ", ","),
                     text.replace(", ", ",\n  ").replace("[", "[ ")):
          doc = json_tensor.parse(body.encode())
          self.assertIsInstance(doc.root["inputs"], json_tensor.NumericArray)
          got = _tensors(body.encode(), {"x": dtype})["x"]
          expected = np.array(json.loads(body)["inputs"]).astype(
              _NUMPY[dtype])
          self.assertEqual(got.dtype, expected.dtype)
          self.assertAllEqual(got, expected)

  def test_numeric_arrays_are_packed_not_python_objects(self):
    doc = json_tensor.parse(b'{"instances": [[1.5, 2], [3, 4e-1]]}')
    tensors, row_format = json_tensor.predict_tensors(doc, {"x": _FLOAT})
    self.assertTrue(row_format)
    self.assertLen(tensors["x"].tensor_content, 16)  # 4 float32s, packed.
    self.assertEmpty(tensors["x"].float_val)
    self.assertAllEqual(tf.make_ndarray(tensors["x"]),
                        np.array([[1.5, 2], [3, 0.4]], np.float32))

  def test_integers_convert_to_floats_without_a_lossless_check(self):
    # TF Serving removed the "without loss of precision" check in 2021.
    got = _tensors({"instances": [16777217, 2**53 + 1]}, {"x": _FLOAT})
    self.assertAllEqual(got["x"], np.array([16777217, 2**53 + 1], np.float32))
    got = _tensors({"inputs": {"x": [[16777217]], "y": [2**63 - 1]}},
                   {"x": _DOUBLE, "y": _FLOAT})
    self.assertEqual(got["x"][0, 0], 16777217.0)
    self.assertEqual(got["y"][0], np.float32(2**63))
    # Named instances with a scalar (general path).
    got = _tensors({"instances": [{"x": 16777217}]}, {"x": _FLOAT})
    self.assertEqual(got["x"][0], np.float32(16777217))

  def test_huge_numbers_are_parse_errors(self):
    self.assertError(b'{"instances": [' + b"7" * 5000 + b"]}",
                     "JSON Parse error: Number too big to be stored in "
                     "double. at offset: 15")
    self.assertError(b'{"a": 1, "b": -' + b"9" * 400 + b"}",
                     "JSON Parse error: Number too big to be stored in "
                     "double. at offset: 14")
    # In a dense array, found when it is converted for its input.
    self.assertError(b'{"instances": [1e400]}',
                     "JSON Parse error: Number too big to be stored in "
                     "double. at offset: 15", {"x": _FLOAT})
    self.assertError(b'{"instances": [1.2.3]}', "JSON Parse error: Missing a "
                     "comma or ']' after an array element. at offset: 18",
                     {"x": _FLOAT})
    # Beyond 64 bits but within a double: a double, as rapidjson reads it.
    self.assertError({"instances": [2**64]},
                     "Failed to process element: 0 of 'instances' list. "
                     "Error: INVALID_ARGUMENT: JSON Value: "
                     "1.8446744073709552e19 Type: Number is not of expected "
                     "type: int64", {"x": _INT64})
    self.assertAllEqual(_tensors({"instances": [2**64]}, {"x": _DOUBLE})["x"],
                        [2.0**64])

  def test_the_root_must_be_an_object(self):
    # The scanner's own errors: json_parser_test.py.
    self.assertError(b"[1, 2]", "JSON Value: [1, 2] Is not object")
    self.assertError(b'{"a": "x', "JSON Parse error: Missing a closing "
                     "quotation mark in string. at offset: 8")

  def test_nan_and_infinity_reach_float_tensors(self):
    # TF Serving parses with kParseNanAndInfFlag (json_tensor.cc ParseJson).
    got = _tensors(b'{"instances": [NaN, Inf, -Inf, -NaN, Infinity]}',
                   {"x": _FLOAT})["x"]
    self.assertAllEqual(got, np.array([np.nan, np.inf, -np.inf, np.nan,
                                       np.inf], np.float32))

  def test_strings_keep_bytes_that_are_not_utf8(self):
    # rapidjson without kParseValidateEncodingFlag copies them unchecked.
    got = _tensors(b'{"instances": ["\xff\xfeA", "\xc3\xa9"]}',
                   {"x": types_pb2.DT_STRING})["x"]
    self.assertAllEqual(got, [b"\xff\xfeA", b"\xc3\xa9"])

  def test_irregular_arrays_get_tf_servings_errors(self):
    self.assertError({"instances": [[1, 2], [3]]},
                     "Failed to process element: 1 of 'instances' list. "
                     "Error: INVALID_ARGUMENT: Expecting tensor size: 2 but "
                     "got: 1", {"x": _FLOAT})
    self.assertError({"inputs": [[1, 2], [3, [4]]]},
                     "Encountered list at unexpected level: 2 expected < 2",
                     {"x": _FLOAT})
    self.assertError({"inputs": [[1, 2], [3, 4, 5]]},
                     "Encountered list at unexpected size: 3 at level: 1 "
                     "expected size: 2", {"x": _FLOAT})
    self.assertError({"inputs": [1.5]}, "JSON Value: 1.5 Type: Number is not "
                     "of expected type: int32", {"x": _INT32})
    self.assertError({"inputs": [256, "a"]}, 'JSON Value: "a" Type: String '
                     "is not of expected type: uint8", {"x": _UINT8})
    self.assertError({"instances": 3}, "JSON Value: {\n    \"instances\": 3\n}"
                     " Expecting 'instances' to be an list/array",
                     {"x": _FLOAT})

  def test_debug_strings_as_rapidjson_writes_them(self):
    doc = json_tensor.parse(b'{"inputs": [[1, 2.50], [3, 4]], "s": "x",'
                            b' "o": [{"a": null}], "e": {}, "f": 1e-7}')
    self.assertEqual(json_tensor.debug_string(doc.root), (
        '{\n    "inputs": [[1, 2.5], [3, 4]],\n    "s": "x",\n    "o": [{\n'
        '            "a": null\n        }],\n    "e": {},\n    "f": 1e-7\n}'))
    # Cut after 256 bytes, as TF Serving's JsonWriterWithLimit.
    long = json_tensor.parse(json.dumps({"x": list(range(1000))}).encode())
    text = json_tensor.debug_string(long.root)
    self.assertBetween(len(text), 256, 270)
    self.assertStartsWith(text, '{\n    "x": [0, 1, 2, 3,')


class ExamplesTest(tf.test.TestCase):

  def test_feature_kinds_follow_json_values(self):
    request = classification_pb2.ClassificationRequest()
    json_tensor.fill_examples(json_tensor.parse(json.dumps({
        "examples": [{"f": [1.5, 2.0], "i": [16777217, 3], "s": "x",
                      "b": {"b64": "eHk="}}]}).encode()), request)
    feature = request.input.example_list.examples[0].features.feature
    self.assertEqual(list(feature["f"].float_list.value), [1.5, 2.0])
    self.assertEqual(list(feature["i"].int64_list.value), [16777217, 3])
    self.assertEqual(list(feature["s"].bytes_list.value), [b"x"])
    self.assertEqual(list(feature["b"].bytes_list.value), [b"xy"])
    # As TF Serving: a feature's kind is its first value's, an integer
    # after a float is an error.
    with self.assertRaisesRegex(manager.ServingError, "Unexpected element "
                                "type in feature: f expecting type: float"):
      json_tensor.fill_examples(json_tensor.parse(
          b'{"examples": [{"f": [1.5, 2]}]}'), request)


class JsonFormatTest(tf.test.TestCase):

  def assertJson(self, value, text):
    self.assertEqual(json_writer.dumps(value).decode(), text)

  def test_row_and_columnar_formats(self):
    scores = tf.make_tensor_proto(np.array([[0.2, 0.8], [1.0, 0.0]],
                                           np.float32))
    names = tf.make_tensor_proto(np.array([b"cat", b"\xff\xfe"]))
    # One output: a list of its values; several: a dict per instance.
    self.assertJson(json_tensor.predictions_json({"scores": scores}),
                    "[[0.2, 0.8], [1.0, 0.0]]")
    self.assertJson(json_tensor.predictions_json({"scores": scores,
                                                  "names": names}),
                    '[{"names": "cat", "scores": [0.2, 0.8]}, '
                    '{"names": {"b64": "//4="}, "scores": [1.0, 0.0]}]')
    self.assertJson(json_tensor.outputs_json({"scores": scores}),
                    "[[0.2, 0.8], [1.0, 0.0]]")
    # Outputs named *_bytes are base64 even when they are text.
    self.assertJson(json_tensor.outputs_json({"names_bytes": names,
                                              "n": tf.make_tensor_proto(7)}),
                    '{"n": 7, "names_bytes": [{"b64": "Y2F0"}, '
                    '{"b64": "//4="}]}')
    with self.assertRaisesRegex(manager.ServingError,
                                "Tensor name: n has no shape information"):
      json_tensor.predictions_json({"n": tf.make_tensor_proto(7)})

  def test_scores_and_values_as_tf_serving_writes_floats(self):
    # TF Serving's json_tensor_test.cc, MakeJsonFromRegressionResult:
    # `[ 0.2, Infinity, 1.0, -Infinity, NaN ]`.
    result = regression_pb2.RegressionResult()
    for value in (0.2, np.inf, 1.0, -np.inf, np.nan):
      result.regressions.add(value=value)
    self.assertJson(json_tensor.regression_json(result),
                    '{"results": [0.2, Infinity, 1.0, -Infinity, NaN]}')


if __name__ == "__main__":
  tf.test.main()
