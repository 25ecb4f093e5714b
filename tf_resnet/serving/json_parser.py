"""The JSON scanner under TF Serving's codec: bounded memory, rapidjson's errors.

`json.loads` builds one Python object per JSON value (24-64 bytes for a
2-byte `0,`), so a 32 MiB document of numbers became gigabytes. Here a
dense, purely numeric nested array (an image as `[[[0, 1, ...]]]`) is never
built as Python objects: its text is checked against the rectangular
skeleton its shape implies (`_dense_numeric_array`) and converted by numpy,
a chunk at a time, straight into the input's dtype (`NumericArray`).
Everything else is parsed value by value by the json module's C scanner and
counted, and a document with more than `max_values` such values is refused
(INVALID_ARGUMENT) before it can grow.

Errors are TF Serving's (`JSON Parse error: <rapidjson's GetParseError_En>
at offset: <byte>`), for the rapidjson v1.1.0 it pins, parsing with
kParseIterativeFlag | kParseNanAndInfFlag | kParseStopWhenDoneFlag
(tensorflow_serving/util/json_tensor.cc, ParseJson).
"""

import codecs
import json
import json.decoder
import json.scanner
import math
import re
from typing import Optional

import grpc
import numpy as np

from tf_resnet.serving import errors

ServingError = errors.ServingError
_INVALID = grpc.StatusCode.INVALID_ARGUMENT

# Values parsed as Python objects (outside dense numeric arrays) per request:
# at most ~100 bytes each, so about 100 MB. TF Serving's rapidjson DOM has no
# such limit but costs 16 bytes a value, not 30-60.
DEFAULT_MAX_VALUES = 1_000_000
_INT64_MIN, _UINT64_MAX = -2**63, 2**64 - 1
# rapidjson (without kParseValidateEncodingFlag, as TF Serving parses) keeps
# a string's bytes as they are, UTF-8 or not. Text is decoded with
# surrogateescape (a byte that is not UTF-8 becomes U+DC80-U+DCFF) and
# encoded back with this handler, which also writes lone surrogates from
# `\u` escapes as rapidjson does (3 bytes). Only a `\udc80`-`\udcff` escape
# in a body that is not UTF-8 elsewhere comes back as one byte, not three.
ENCODING_ERRORS = "tf_resnet.json_bytes"


def _encode_error(error: UnicodeEncodeError):
  out = bytearray()
  for char in error.object[error.start:error.end]:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:
      out.append(code - 0xDC00)
    else:
      out += char.encode("utf-8", "surrogatepass")
  return bytes(out), error.end


codecs.register_error(ENCODING_ERRORS, _encode_error)


def encode(text: str) -> bytes:
  """A parsed string's bytes, as rapidjson holds them."""
  return text.encode("utf-8", ENCODING_ERRORS)


class NumericArray:
  """A dense nested array of JSON numbers, text until its dtype is known.

  Attributes:
    shape: the array's dimensions.
  """

  __slots__ = ("_text", "_start", "_end", "shape", "_integral")

  def __init__(self, text: str, start: int, end: int, shape: list[int],
               integral: bool):
    self._text, self._start, self._end = text, start, end
    self.shape = shape
    self._integral = integral  # No `.`, `e` or `E`: every token an integer.

  def __len__(self) -> int:
    return self.shape[0]

  def source(self) -> str:
    return self._text[self._start:self._end]

  def to_python(self, parser: "_Parser") -> list:
    """The nested lists `json.loads` would give (the general path)."""
    return parser.parse(self._text, self._start)[0]

  def tokens(self):
    """`[`, `]` and the numbers of the source, in order (for messages)."""
    for match in _TOKEN.finditer(self._text, self._start, self._end):
      yield match.group()

  def to_numpy(self, numpy_type) -> Optional[np.ndarray]:
    """The values as `numpy_type`, or None when the general path must decide.

    The text is converted a chunk at a time (cut after a comma) into the
    result, so the result is the only allocation of the array's size.
    Integer types take only integer tokens within their range (else the
    general path answers as TF Serving, with its type errors); floats take
    any number, rounded from a double as rapidjson's GetFloat.
    """
    integer = not np.issubdtype(numpy_type, np.floating)
    if integer and not self._integral:
      return None
    info = np.iinfo(numpy_type) if integer else None
    out = np.empty(math.prod(self.shape), numpy_type)
    filled, start = 0, self._start
    while start < self._end:
      stop = min(start + _CHUNK, self._end)
      if stop < self._end:
        stop = self._text.rfind(",", start, stop) + 1
        if stop <= start:
          return None
      try:
        piece = np.fromstring(
            self._text[start:stop].translate(_SEPARATORS_TO_SPACE),
            dtype=np.int64 if integer else np.float64, sep=" ")
      except ValueError:
        return None
      if filled + piece.size > out.size:
        return None
      if piece.size and integer:
        # numpy saturates what int64 cannot hold: from 10**18 on, the
        # general path decides exactly (uint64 range, doubles beyond 64
        # bits).
        low, high = piece.min(), piece.max()
        if (low <= -10**18 or high >= 10**18 or low < info.min
            or high > info.max):
          return None
      elif piece.size and not np.isfinite(piece).all():
        return None  # 1e400: TF Serving's parser refuses it ("too big").
      with np.errstate(over="ignore"):  # 1e39 as float32: inf, as GetFloat.
        out[filled:filled + piece.size] = piece
      filled += piece.size
      start = stop
    if filled != out.size:
      return None
    return out.reshape(self.shape)


_WHITESPACE = re.compile(r"[ \t\n\r]*")
# Characters of a JSON array of numbers: brackets, commas, whitespace and
# the characters of numbers.
_NUMERIC_RUN = re.compile(r"[\[\],0-9.eE+\- \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_TOKEN = re.compile(r"[\[\]]|" + _NUMBER.pattern)
_DROP_WHITESPACE = str.maketrans("", "", " \t\n\r")
_SEPARATORS_TO_SPACE = str.maketrans("[],", "   ")
_NUMBER_CHARS_TO_X = str.maketrans("0123456789.eE+-", "x" * 15)
_MAX_FAST_RANK = 32
# A second `.` or `e` in a number, or a 3-digit exponent (which may not fit a
# double): the general path decides (it refuses them as TF Serving does).
_LONGEST_NUMBER = 300
_CHUNK = 1 << 20


def _character_classes():
  """Tables that find what JSON's number grammar forbids, pair by pair."""
  table = np.full(256, 10, np.uint8)  # 10: not a numeric array's character.
  for chars, code in (("0", 0), ("123456789", 1), (".", 2), ("eE", 3),
                      ("+", 4), ("-", 5), ("[", 6), ("]", 7), (",", 8),
                      (" \t\n\r", 9)):
    for char in chars:
      table[ord(char)] = code
  digits, separators = (0, 1), (6, 7, 8, 9)
  bad = np.zeros(121, bool)
  pair = lambda a, b: a * 11 + b
  for a in range(11):
    for b in range(11):
      bad[pair(a, b)] = (
          10 in (a, b)
          or (b == 4 and a != 3)                       # `+` only after `e`
          or (b == 5 and a not in (3,) + separators)   # `-`: sign or exponent
          or (a in (4, 5) and b not in digits)         # a sign needs a digit
          or (b == 2 and a not in digits)              # `.` between digits
          or (a == 2 and b not in digits)
          or (b == 3 and a not in digits)              # `e` after a digit,
          or (a == 3 and b not in digits + (4, 5)))    # then a digit or sign
  # No leading zeros in an integer part: `01` (three characters from a
  # separator), `-01` (four: a `-` after `e` begins an exponent, which may
  # have them, as `1e-05`).
  leading_zero = np.zeros(11 * 121, bool)
  signed_leading_zero = np.zeros(121 * 121, bool)
  for b in digits:
    for a in separators:
      leading_zero[pair(a, 0) * 11 + b] = True
      signed_leading_zero[pair(a, 5) * 121 + pair(0, b)] = True
  return table, bad, leading_zero, signed_leading_zero


_CLASSES, _BAD_PAIRS, _BAD_TRIPLES, _BAD_QUADS = _character_classes()


def _numbers_are_json(source: str) -> bool:
  """Whether every number in a numeric array's text follows JSON's grammar.

  Checked on character pairs, triples and quadruples with numpy, a chunk at
  a time, so the cost is a few passes over the text, not a Python object per
  number.
  A second `.` or `e` in one number passes here but not numpy's conversion
  (`NumericArray.to_numpy`), which then leaves it to the general path.
  """
  data = source.encode("ascii")
  for start in range(0, max(len(data) - 3, 1), _CHUNK):
    chunk = np.frombuffer(data, np.uint8, offset=start,
                          count=min(_CHUNK + 3, len(data) - start))
    codes = _CLASSES[chunk]
    pairs = codes[:-1] * np.uint8(11) + codes[1:]
    if _BAD_PAIRS[pairs].any():
      return False
    if len(codes) > 2 and _BAD_TRIPLES[
        pairs[:-1].astype(np.uint16) * 11 + codes[2:]].any():
      return False
    if len(codes) > 3 and _BAD_QUADS[
        pairs[:-2].astype(np.uint16) * 121 + pairs[2:]].any():
      return False
  return True


def _skeleton(shape: list[int]) -> str:
  """The text of a dense array of `shape` with every number written `x`."""
  text = "x"
  for size in reversed(shape):
    text = "[" + ",".join([text] * size) + "]"
  return text


def _dense_numeric_array(text: str, start: int) -> Optional[NumericArray]:
  """The numeric array at `text[start]` (an object member's value), if dense.

  Only a member's value is tried: what follows it is whitespace, then `,` or
  `}`, so the run of numeric characters from `start` ends within a few
  characters of the value's end and every character is looked at once.
  """
  run_end = _NUMERIC_RUN.match(text, start).end()
  end = run_end
  while end > start and text[end - 1] in " \t\n\r,":
    end -= 1
  if end - start < 2 or text[end - 1] != "]":
    return None
  source = text[start:end]
  if source.count("[") != source.count("]") or not _numbers_are_json(source):
    return None
  integral = not ("." in source or "e" in source or "E" in source)
  skeleton = source.translate(_NUMBER_CHARS_TO_X)
  del source
  if "x" * _LONGEST_NUMBER in skeleton:
    return None  # May not fit a double: the general path refuses it.
  # Each number becomes one `x`; whitespace goes only then, so `[1 2]` stays
  # two numbers (`[xx]`) and cannot pass for `[12]`.
  while "xx" in skeleton:
    skeleton = skeleton.replace("xx", "x")
  skeleton = skeleton.translate(_DROP_WHITESPACE)
  rank = len(skeleton) - len(skeleton.lstrip("["))
  if rank > _MAX_FAST_RANK or "[]" in skeleton:
    return None
  # The first array at each level holds shape[level] elements: one more than
  # the separators of its children, `]` * (rank - level - 1) + `,`.
  shape = []
  for level in range(rank):
    depth = rank - level
    first_end = skeleton.find("]" * depth)
    if first_end < 0:
      return None
    first = skeleton[level:first_end + depth]
    separator = "]" * (depth - 1) + "," if depth > 1 else ","
    shape.append(first.count(separator) + 1)
  if skeleton != _skeleton(shape):
    return None  # Ragged, misplaced numbers, or not JSON: the general path.
  return NumericArray(text, start, end, shape, integral)


class _NumberTooBig(Exception):

  def __init__(self, token: str):
    super().__init__(token)
    self.token = token


def _parse_int(token: str):
  # As rapidjson: integers beyond 64 bits are doubles, and beyond a double's
  # range an error (Python's int() would refuse 4300+ digits with ValueError).
  if len(token) < 20:
    return int(token)
  if len(token) > 400:
    raise _NumberTooBig(token)
  value = int(token)
  if _INT64_MIN <= value <= _UINT64_MAX:
    return value
  return _parse_float(token)


def _parse_float(token: str) -> float:
  value = float(token)
  if math.isinf(value):
    raise _NumberTooBig(token)
  return value


# Python's messages as rapidjson's (GetParseError_En), which TF Serving sends.
_PARSE_ERRORS = (
    ("Expecting value", "Invalid value."),
    ("Expecting property name enclosed in double quotes",
     "Missing a name for object member."),
    ("Expecting ':' delimiter",
     "Missing a colon after a name of object member."),
    ("Unterminated string starting at",
     "Missing a closing quotation mark in string."),
    ("Invalid \\escape", "Invalid escape character in string."),
)
_DIGITS = tuple("0123456789")
_HIGH_SURROGATE = re.compile("[\\ud800-\\udbff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}"
                               r"(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")


def _rapidjson_error(error: json.JSONDecodeError) -> tuple[str, int]:
  """rapidjson v1.1.0's message and offset (a character index) for an error.

  reader.h, ParseStringToStream: input that ends inside a string, and a NUL,
  are a missing quotation mark where the input ends (or the NUL is); another
  control character is an invalid escape (newer rapidjson says "Invalid
  encoding").
  """
  text, message, pos = error.doc, error.msg, error.pos
  if message.startswith("Unterminated string"):
    return "Missing a closing quotation mark in string.", len(text)
  if message.startswith("Invalid control character"):
    if text[pos] == "\0":
      return "Missing a closing quotation mark in string.", pos
    return "Invalid escape character in string.", pos
  if message.startswith("Invalid \\uXXXX escape"):  # json: at the `u`.
    return "Incorrect hex digit after \\u escape in string.", pos - 1
  for python, rapidjson in _PARSE_ERRORS:
    if message.startswith(python):
      return rapidjson, pos
  return message, pos


class _Parser:
  """A JSON parser that keeps dense numeric arrays as `NumericArray`.

  Objects and arrays are walked here and scalars parsed by the json module's
  C scanner, so every value built as a Python object is counted. As
  TF Serving's rapidjson (kParseStopWhenDoneFlag), text after the top-level
  value is ignored, and of repeated keys the first counts.
  """

  def __init__(self, max_values: int):
    self._max_values = max_values
    self._values = 0
    decoder = json.JSONDecoder(parse_int=_parse_int, parse_float=_parse_float)
    self._scalar = json.scanner.make_scanner(decoder)

  def _count(self, text: str, idx: int) -> None:
    self._values += 1
    if self._values > self._max_values:
      raise ServingError(
          _INVALID, f"JSON Parse error: more than {self._max_values} values "
          "outside dense numeric arrays (the server's limit per request) at "
          f"offset: {_byte_offset(text, idx)}")

  def parse(self, text: str, idx: int, fast: bool = False):
    """(value, end) of the JSON value at text[idx], or TF Serving's error."""
    try:
      return self.parse_value_at(text, idx, fast)
    except json.JSONDecodeError as e:
      message, pos = _rapidjson_error(e)
      raise ServingError(_INVALID, f"JSON Parse error: {message} at offset: "
                         f"{_byte_offset(text, pos)}") from None
    except _NumberTooBig as e:
      offset = _byte_offset(text, max(text.find(e.token, idx), 0))
      raise ServingError(
          _INVALID, "JSON Parse error: Number too big to be stored in double. "
          f"at offset: {offset}") from None
    except RecursionError:
      raise ServingError(_INVALID, "JSON Parse error: the document is nested "
                         "too deeply") from None

  def parse_value_at(self, text: str, idx: int, fast: bool):
    """(value, end) of the JSON value at text[idx] (after whitespace)."""
    idx = _WHITESPACE.match(text, idx).end()
    char = text[idx:idx + 1]
    if char == "[" and fast:
      array = _dense_numeric_array(text, idx)
      if array is not None:
        self._count(text, idx)
        return array, array._end  # pylint: disable=protected-access
    if char == "{":
      return self._object(text, idx + 1)
    if char == "[":
      return self._array(text, idx + 1)
    self._count(text, idx)
    if char == '"':
      return _string(text, idx + 1)
    if char in _LITERALS:
      word, value = _LITERALS[char]
      return value, _expect(text, idx, word)
    if char in ("N", "I") or (
        char == "-" and text[idx + 1:idx + 2] not in _DIGITS):
      return _nan_or_infinity(text, idx)
    try:
      value, end = self._scalar(text, idx)
    except StopIteration:
      raise json.JSONDecodeError("Expecting value", text, idx) from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      _check_number_end(text, idx, end)
    return value, end

  def _object(self, text: str, idx: int):
    self._count(text, idx)
    result = {}
    idx = _WHITESPACE.match(text, idx).end()
    if text[idx:idx + 1] == "}":
      return result, idx + 1
    while True:
      if text[idx:idx + 1] != '"':
        raise json.JSONDecodeError(
            "Expecting property name enclosed in double quotes", text, idx)
      key, idx = _string(text, idx + 1)
      idx = _WHITESPACE.match(text, idx).end()
      if text[idx:idx + 1] != ":":
        raise json.JSONDecodeError("Expecting ':' delimiter", text, idx)
      value, idx = self.parse_value_at(text, idx + 1, fast=True)
      result.setdefault(key, value)
      idx = _WHITESPACE.match(text, idx).end()
      char = text[idx:idx + 1]
      if char == "}":
        return result, idx + 1
      if char != ",":
        raise json.JSONDecodeError("Missing a comma or '}' after an object "
                                   "member.", text, idx)
      idx = _WHITESPACE.match(text, idx + 1).end()

  def _array(self, text: str, idx: int):
    self._count(text, idx)
    result = []
    idx = _WHITESPACE.match(text, idx).end()
    if text[idx:idx + 1] == "]":
      return result, idx + 1
    while True:
      value, idx = self.parse_value_at(text, idx, fast=False)
      result.append(value)
      idx = _WHITESPACE.match(text, idx).end()
      char = text[idx:idx + 1]
      if char == "]":
        return result, idx + 1
      if char != ",":
        raise json.JSONDecodeError("Missing a comma or ']' after an array "
                                   "element.", text, idx)
      idx += 1


def _string(text: str, idx: int):
  """(string, end) of the string whose first character is text[idx]."""
  value, end = json.decoder.scanstring(text, idx)
  if _HIGH_SURROGATE.search(value):
    # rapidjson: a high surrogate escape must be followed by a low one.
    escape = _SURROGATE_ESCAPE.search(text, idx, end)
    if escape:
      raise json.JSONDecodeError("The surrogate pair in string is invalid.",
                                 text, escape.start())
  return value, end


def _expect(text: str, pos: int, letters: str) -> int:
  """Where `letters` end at text[pos]; else rapidjson's error at the first
  letter that differs (its Consume() stops there)."""
  for i, letter in enumerate(letters):
    if text[pos + i:pos + i + 1] != letter:
      raise json.JSONDecodeError("Expecting value", text, pos + i)
  return pos + len(letters)


_LITERALS = {"t": ("true", True), "f": ("false", False), "n": ("null", None)}


def _nan_or_infinity(text: str, idx: int):
  """rapidjson's kParseNanAndInfFlag: NaN, Inf, Infinity, signed or not.

  As reader.h v1.1.0's ParseNumber: `-NaN` is NaN; after `Inf`, an `i`
  must begin `inity`.
  """
  minus = text[idx] == "-"
  pos = idx + minus
  char = text[pos:pos + 1]
  if char == "N":
    return math.nan, _expect(text, pos, "NaN")
  if char == "I":
    pos = _expect(text, pos, "Inf")
    if text[pos:pos + 1] == "i":
      pos = _expect(text, pos, "inity")
    return (-math.inf if minus else math.inf), pos
  raise json.JSONDecodeError("Expecting value", text, pos)


def _check_number_end(text: str, start: int, end: int) -> None:
  """rapidjson's errors for `1.` and `1e` (json's scanner stops before)."""
  char, token = text[end:end + 1], text[start:end]
  if char == "." and "." not in token and "e" not in token.lower():
    raise json.JSONDecodeError("Miss fraction part in number.", text,
                               end + 1)
  if char in ("e", "E") and "e" not in token.lower():
    end += 1 + (text[end + 1:end + 2] in ("+", "-"))
    raise json.JSONDecodeError("Miss exponent in number.", text, end)


def _byte_offset(text: str, idx: int) -> int:
  return len(text[:idx].encode("utf-8", ENCODING_ERRORS))


def parse(body, max_values: int = DEFAULT_MAX_VALUES) -> "Document":
  """The request's top-level JSON value, or TF Serving's parse error.

  Args:
    body: the request body (UTF-8 JSON), bytes or a bytearray, which is
      emptied once decoded.
    max_values: most values built as Python objects (dense numeric arrays
      count once).

  Returns:
    The parsed document.

  Raises:
    ServingError: INVALID_ARGUMENT with TF Serving's wording.
  """
  if not body:
    raise ServingError(_INVALID, "JSON Parse error: The document is empty")
  text = body.decode("utf-8", "surrogateescape")  # See ENCODING_ERRORS.
  if isinstance(body, bytearray):
    # The HTTP layer's buffer: its callers still hold it, and its bytes are
    # not needed once decoded (32 MiB less for the rest of the request).
    body.clear()
  del body
  parser = _Parser(max_values)
  start = _WHITESPACE.match(text).end()
  if start == len(text):
    raise ServingError(_INVALID, "JSON Parse error: The document is empty. "
                       f"at offset: {_byte_offset(text, start)}")
  root, _ = parser.parse(text, start)
  return Document(root, parser)


class Document:
  """A parsed request body: its top-level object and the parser's budget.

  Attributes:
    root: the top-level value; dense numeric arrays in it are
      `NumericArray`s.
  """

  def __init__(self, root, parser: _Parser):
    self.root = root
    self._parser = parser

  def general(self, value):
    """A value with a NumericArray as nested lists (counted in the budget)."""
    if isinstance(value, NumericArray):
      return value.to_python(self._parser)
    return value

