"""The JSON scanner against rapidjson: python-rapidjson as the oracle, v1.1.0's reader.h where they differ."""

import json
import math

import numpy as np
import rapidjson
import tensorflow as tf

from tf_resnet.serving import errors
from tf_resnet.serving import json_parser

# Malformed bodies; python-rapidjson (rapidjson after v1.1.0) answers each
# as TF Serving's v1.1.0 does.
_MALFORMED = (
    b'{"a": }', b'{"a" 1}', b'{"a": 1 "b": 2}', b'{"a": [1 2]}', b'{"a": "x',
    b'{"a": "xyz', b'{"\xc3\xa9": [}', b'{"a": [1, 2', b'{"a": {"b": 1}',
    b"{a: 1}", b"{'a': 1}", b'{"a": tru}', b'{"a": nul}', b'{"a": falsy}',
    b'{"a": 01}', b'{"a": 1.}', b'{"a": 1.e5}', b'{"a": 1e}', b'{"a": 1e+}',
    b'{"a": -}', b'{"a": -x}', b'{"a": .5}', b'{"a": +1}', b'{"a": In}',
    b'{"a": Infinit}', b'{"a": Infx}', b'{"a": Na}', b'{"a": nan}',
    b'{"a": "\\q"}', b'{"a": "\\u12x4"}', b'{"a": "\\ud800"}',
    b'{"a": "\\ud800\\u0041"}', b'{"a": [1,]}', b'{"a": 1,}', b'[1, }',
    b'{"a": [[1, 2], [3, 4]}', b'{"a": [1.5, 2.5, "x" 3]}', b'{"\xc3\xa9": "',
    b'{"a": 1e400}', b'{"a": 1.5e}', b'{"a": truex}', b'{"a": [1.2, 3e]}',
)
# Valid bodies with TF Serving's kParseNanAndInfFlag values.
_NAN_AND_INFINITY = (
    (b'{"a": [NaN, Infinity, -Infinity, Inf, -Inf, -NaN]}',
     [math.nan, math.inf, -math.inf, math.inf, -math.inf, math.nan]),
)


def _ours(body: bytes) -> str:
  try:
    json_parser.parse(body)
  except errors.ServingError as e:
    return e.message
  return "parsed"


def _oracle(body: bytes) -> str:
  try:
    rapidjson.loads(body, number_mode=rapidjson.NM_NAN)
  except rapidjson.JSONDecodeError as e:
    # "Parse error at offset N: message" -> TF Serving's ParseJson wording.
    offset, message = str(e)[len("Parse error at offset "):].split(": ", 1)
    return f"JSON Parse error: {message} at offset: {offset}"
  return "parsed"


class RapidjsonTest(tf.test.TestCase):

  def test_errors_and_offsets_as_rapidjson(self):
    for body in _MALFORMED:
      self.assertEqual(_ours(body), _oracle(body), repr(body))

  def test_nan_and_infinity_as_tf_serving_parses_them(self):
    for body, values in _NAN_AND_INFINITY:
      self.assertAllEqual(rapidjson.loads(body, number_mode=rapidjson.NM_NAN)
                          ["a"], values)
      self.assertAllEqual(json_parser.parse(body).root["a"], values)

  def test_where_v1_1_0_differs_from_the_oracle(self):
    # TF Serving pins rapidjson v1.1.0 (workspace.bzl); python-rapidjson
    # wraps a later rapidjson and decodes bytes itself. Each case below is
    # read from v1.1.0's include/rapidjson/reader.h.
    # ParseStringToStream: a control character other than NUL is
    # kParseErrorStringEscapeInvalid (later rapidjson: "Invalid encoding").
    self.assertEqual(_oracle(b'{"a": "x\x01"}'), "JSON Parse error: Invalid "
                     "encoding in string. at offset: 8")
    self.assertEqual(_ours(b'{"a": "x\x01"}'), "JSON Parse error: Invalid "
                     "escape character in string. at offset: 8")
    # ... and a NUL is the end of the input: a missing quotation mark there.
    self.assertEqual(_ours(b'{"a": "x\x00"}'), "JSON Parse error: Missing a "
                     "closing quotation mark in string. at offset: 8")
    # Without kParseValidateEncodingFlag (TF Serving's ParseJson) string
    # bytes are copied unchecked; python-rapidjson refuses them in Python.
    with self.assertRaises(UnicodeDecodeError):
      rapidjson.loads(b'{"a": "\xff\xfe"}')
    doc = json_parser.parse(b'{"a": "\xff\xfe", "b": "\xc3\xa9"}')
    self.assertEqual(json_parser.encode(doc.root["a"]), b"\xff\xfe")
    self.assertEqual(json_parser.encode(doc.root["b"]), b"\xc3\xa9")
    # ParseNumber: an integer beyond 64 bits is a double, and beyond a
    # double's range kParseErrorNumberTooBig at its start (python-rapidjson
    # reads integers itself, as Python ints).
    huge = b'{"a": ' + b"7" * 400 + b"}"
    self.assertEqual(_oracle(huge), "parsed")
    self.assertEqual(_ours(huge), "JSON Parse error: Number too big to be "
                     "stored in double. at offset: 6")
    # Not a difference of versions but of timing: a dense numeric array is
    # checked pair by pair when scanned, and a number with a second `.` or
    # `e` is found when the array is converted for its input (the same
    # error then, json_tensor_test.py), not while scanning.
    self.assertEqual(_oracle(b'{"a": [1.2.3]}'), "JSON Parse error: Missing "
                     "a comma or ']' after an array element. at offset: 10")
    self.assertIsInstance(json_parser.parse(b'{"a": [1.2.3]}').root["a"],
                          json_parser.NumericArray)
    # kParseStopWhenDoneFlag: what follows the root is not read.
    self.assertEqual(_oracle(b'{"a": 1} x'), "JSON Parse error: The document "
                     "root must not be followed by other values. at offset: 9")
    self.assertEqual(json_parser.parse(b'{"a": 1} x').root, {"a": 1})


class ParseTest(tf.test.TestCase):

  def test_parse_errors_in_rapidjson_words(self):
    for body, message in (
        (b"", "The document is empty"),  # TF Serving's own check.
        (b" \n", "The document is empty. at offset: 2"),
        (b'{"a": }', "Invalid value. at offset: 6"),
        (b'{"a" 1}', "Missing a colon after a name of object member. at "
         "offset: 5"),
        (b'{"a": 1 "b": 2}', "Missing a comma or '}' after an object member. "
         "at offset: 8"),
        (b'{"a": [1 2]}', "Missing a comma or ']' after an array element. at "
         "offset: 9"),
        # rapidjson reports where the input ends (reader.h, a NUL at the end
        # of its stream).
        (b'{"a": "x', "Missing a closing quotation mark in string. at "
         "offset: 8"),
        # Offsets count bytes, as rapidjson's.
        (b'{"\xc3\xa9": [}', "Invalid value. at offset: 8")):
      with self.assertRaises(errors.ServingError) as caught:
        json_parser.parse(body)
      self.assertEqual(caught.exception.message, "JSON Parse error: "
                       + message)

  def test_the_http_layers_buffer_is_emptied_once_decoded(self):
    body = bytearray(b'{"a": [1, 2], "b": "x"}')
    doc = json_parser.parse(body)
    self.assertEqual(body, b"")
    self.assertEqual(doc.root["b"], "x")
    self.assertAllEqual(doc.root["a"].to_numpy(np.int64), [1, 2])

  def test_values_beyond_the_limit_are_refused(self):
    body = json.dumps({"instances": [[[], "x"]] * 40}).encode()
    with self.assertRaisesRegex(errors.ServingError, "more than 100 values "
                                "outside dense numeric arrays"):
      json_parser.parse(body, max_values=100)
    # Dense numeric arrays count once, however large.
    big = json.dumps({"instances": [[0] * 10000] * 10}).encode()
    doc = json_parser.parse(big, max_values=100)
    self.assertEqual(doc.root["instances"].shape, [10, 10000])

  def test_exponents_may_have_leading_zeros_integers_not(self):
    # json.dumps writes 1e-05 and -2.5e-07; JSON's grammar allows them.
    doc = json_parser.parse(b'{"a": [1e-05, -2.5e-07, 3E+01, -0.5, 0]}')
    self.assertIsInstance(doc.root["a"], json_parser.NumericArray)
    self.assertAllEqual(doc.root["a"].to_numpy(np.float64),
                        [1e-05, -2.5e-07, 30, -0.5, 0])
    for body in (b'{"a": [1, 01]}', b'{"a": [1, -01]}', b'{"a": [-00]}'):
      self.assertEqual(_ours(body), _oracle(body))

  def test_large_arrays_convert_a_chunk_at_a_time(self):
    # Several of the scanner's 1 MiB chunks, cut after commas.
    rng = np.random.default_rng(0)
    values = rng.normal(0, 1e3, [300, 1000]).round(rng.integers(0, 9))
    text = json.dumps({"inputs": values.tolist()})
    self.assertGreater(len(text), 2 << 20)
    array = json_parser.parse(text.encode()).root["inputs"]
    self.assertIsInstance(array, json_parser.NumericArray)
    self.assertAllEqual(array.to_numpy(np.float64), values)
    self.assertAllEqual(array.to_numpy(np.float32), values.astype(np.float32))
    # Not integers: the general path decides for an integer input.
    self.assertIsNone(array.to_numpy(np.int64))
    ints = json_parser.parse(json.dumps({"x": [[1, 2], [3, 2**40]]}).encode())
    self.assertAllEqual(ints.root["x"].to_numpy(np.int64), [[1, 2], [3, 2**40]])
    self.assertIsNone(ints.root["x"].to_numpy(np.int32))  # Out of range.


if __name__ == "__main__":
  tf.test.main()
