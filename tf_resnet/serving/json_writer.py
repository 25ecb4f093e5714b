"""Tensors written as JSON text the way TF Serving writes them, in bounded memory.

TF Serving's json_tensor.cc writes a float with `WriteDecimal`: absl's
`StrCat` (printf's `%g`: six significant digits), or `%.9g` (`%.17g` for a
double) when those six digits do not read back as the same value, then `.0`
after a number with neither `.` nor `e`: `0.2`, `9e+06`, `555557.5`, `1.0`,
`0.123456791`, `NaN`, `-Infinity`.

Building the answer as Python lists of floats and `json.dumps` cost about
130 bytes and 1 us per float (8.4M floats: 1.1 GB and 10 s). Here a tensor
becomes text with numpy, 64K values at a time: the six and nine digits are
found by scaling in float64 (values whose rounding float64 cannot decide
exactly, a few in a million, are formatted by Python's exact printf), and
the brackets and separators are laid out from the values' indices. The
answer is `RawJson` text that `dumps` splices into the response body.
"""

import decimal
import json
import math
import struct
from typing import Any, Iterator

import numpy as np

_CHUNK = 1 << 16
# Exact powers of ten in float64.
_POW10 = 10.0 ** np.arange(23)
# Whether a value's float64 scaling can decide its rounding: its distance to
# a rounding boundary, in units of the scaled value (at most 1e9, where a
# float64 ulp is 1.2e-7 and two roundings err by at most 2.4e-7).
_TIE_MARGIN = 1e-6
_MIDPOINT_MARGIN = 1e-15


class RawJson:
  """JSON text already written (a tensor's values), spliced in by `dumps`.

  Attributes:
    pieces: the text, in the chunks it was written in (never joined here:
      the HTTP layer writes them one after another).
  """

  __slots__ = ("pieces",)

  def __init__(self, text):
    self.pieces = [text] if isinstance(text, bytes) else list(text)

  @property
  def text(self) -> bytes:
    return b"".join(self.pieces)

  def __repr__(self) -> str:
    head = self.pieces[0][:60] if self.pieces else b""
    return f"RawJson({head!r}...)"


def pieces(value: Any) -> list[bytes]:
  """`value` as UTF-8 JSON pieces (see `dumps`), RawJson's without a copy."""
  out: list[bytes] = []
  _write(value, out)
  return out


def dumps(value: Any) -> bytes:
  """`value` as UTF-8 JSON, as `json.dumps(ensure_ascii=False)`, with RawJson.

  Args:
    value: dicts, lists, scalars and `RawJson` fragments.

  Returns:
    The JSON text; strings that are not valid UTF-8 (lone surrogates) have
    their bad characters replaced by `?`.
  """
  return b"".join(pieces(value))


def _write(value, pieces: list[bytes]) -> None:
  if isinstance(value, RawJson):
    pieces.extend(value.pieces)
  elif isinstance(value, dict):
    pieces.append(b"{")
    for i, (key, member) in enumerate(value.items()):
      pieces.append((", " if i else "").encode()
                    + _scalar(str(key)) + b": ")
      _write(member, pieces)
    pieces.append(b"}")
  elif isinstance(value, (list, tuple)):
    pieces.append(b"[")
    for i, item in enumerate(value):
      if i:
        pieces.append(b", ")
      _write(item, pieces)
    pieces.append(b"]")
  else:
    pieces.append(_scalar(value))


def _scalar(value) -> bytes:
  return json.dumps(value, ensure_ascii=False).encode("utf-8", "replace")


# Floats as TF Serving's WriteDecimal.


def _scale(values: np.ndarray, exponents: np.ndarray) -> np.ndarray:
  """values * 10**exponents in float64, with at most three roundings."""
  power = np.abs(exponents)
  first = np.minimum(power, 22)
  scale = _POW10[first]
  scaled = np.where(exponents >= 0, values * scale, values / scale)
  beyond = np.flatnonzero(power > 22)  # Below 1e-22 or above 1e22: rare.
  if beyond.size:
    rest = _scale(scaled[beyond], np.sign(exponents[beyond])
                  * (power[beyond] - 22))
    scaled[beyond] = rest
  return scaled


def _round_digits(magnitude: np.ndarray, exponent: np.ndarray,
                  digits: int):
  """Round-half-even `digits`-digit mantissas; and where that is uncertain."""
  scaled = _scale(magnitude, digits - 1 - exponent)
  mantissa = np.rint(scaled)
  uncertain = np.abs(scaled - np.floor(scaled) - 0.5) < _TIE_MARGIN
  carry = mantissa >= 10.0 ** digits
  mantissa = np.where(carry, 10.0 ** (digits - 1), mantissa)
  return mantissa.astype(np.int64), exponent + carry, uncertain


# The smallest normal float32, and a float64's 29 bits below a float32's
# mantissa, which are exactly 1000...0 at a midpoint between two float32s.
_FLOAT32_MIN_NORMAL = float(np.finfo(np.float32).tiny)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_BELOW_FLOAT32 = (1 << 29) - 1
_FLOAT32_MIDPOINT = 1 << 28


def _reads_back(text: str, value: np.float32) -> bool:
  """Whether `text` parses to the float32 `value` (round half to even).

  `float(text)` is the decimal correctly rounded to float64; rounding that
  to float32 gives the decimal's own float32 rounding unless the float64 is
  exactly a midpoint between two float32s (rounding is monotonic and the
  midpoints of normal float32s are float64s), so only midpoints and
  subnormals take exact decimal arithmetic (`_reads_back_exact`).
  """
  number = float(text)
  if number == 0.0:
    return value == 0
  bits = struct.unpack("<Q", struct.pack("<d", number))[0]
  if (not _FLOAT32_MIN_NORMAL <= abs(number) <= _FLOAT32_MAX
      or bits & _BELOW_FLOAT32 == _FLOAT32_MIDPOINT):
    return _reads_back_exact(text, value)
  return np.float32(number) == value


def _reads_back_exact(text: str, value: np.float32) -> bool:
  """`_reads_back` in exact decimal arithmetic."""
  number = decimal.Decimal(text)
  with np.errstate(over="ignore"):
    below = np.nextafter(value, np.float32(-np.inf))
    above = np.nextafter(value, np.float32(np.inf))
  exact = decimal.Decimal(float(value))
  low = (exact + decimal.Decimal(float(below))) / 2
  high = (exact + decimal.Decimal(float(above))) / 2
  if low < number < high:
    return True
  if number in (low, high):
    return not int(value.view(np.uint32)) & 1
  return False


def decimal_text(value) -> str:
  """One float32 or float64 as TF Serving's WriteDecimal writes it (exact)."""
  value = value if isinstance(value, np.floating) else np.float64(value)
  number = float(value)
  if math.isnan(number):
    return "NaN"
  if math.isinf(number):
    return "-Infinity" if number < 0 else "Infinity"
  text = "%g" % number
  if value.dtype == np.float32:
    if not _reads_back(text, value):
      text = "%.9g" % number
  elif float(text) != number:  # Python's float() rounds exactly.
    text = "%.17g" % number
  if "." not in text and "e" not in text:
    text += ".0"
  return text


# Formats by code: 9 or 6 digits, with or without TF Serving's `.0`.
_FORMATS = ("%.9g", "%.9g.0", "%g", "%g.0")


def _whole(mantissa: np.ndarray, exponent: np.ndarray,
           digits: int) -> np.ndarray:
  """Whether %g writes the value positionally with no fraction digits."""
  return ((exponent >= 0) & (exponent < digits)
          & (mantissa % 10 ** np.clip(digits - 1 - exponent, 0, digits - 1)
             == 0))


class _Float32Plan:
  """How WriteDecimal writes each float32 of a 1-D array, decided at once.

  Attributes:
    wide: the values as float64.
    code: the printf format per value (`_FORMATS`).
    exact: where float64 arithmetic could not decide (or the value is not
      finite): `decimal_text` writes these.
    decimal: the decimal written (six or nine digits), as the nearest
      float64, signed.
    plain: where Python's repr() of `decimal` is the text: repr writes the
      shortest digits that read back, which are the chosen decimal's (at
      most nine digits), positionally where %g does (exponent below the
      digits) and with `.0` where TF Serving adds it.
  """

  def __init__(self, values: np.ndarray):
    wide = values.astype(np.float64)
    magnitude = np.abs(wide)
    finite = np.isfinite(wide)
    safe = np.where(finite & (magnitude > 0), magnitude, 1.0)
    exponent = np.floor(np.log10(safe)).astype(np.int64)
    first_digit = _scale(safe, -exponent)
    exponent += (first_digit >= 10).astype(np.int64)
    exponent -= (first_digit < 1).astype(np.int64)
    six, six_exponent, unsure6 = _round_digits(safe, exponent, 6)
    nine, nine_exponent, unsure9 = _round_digits(safe, exponent, 9)
    # Six digits read back iff they round to the value: the decimal rounded
    # to float32, unsure near the midpoint to the neighbour on its side.
    decimal_value = _scale(six.astype(np.float64), six_exponent - 5)
    float32_safe = safe.astype(np.float32)
    with np.errstate(over="ignore"):
      reads_back = decimal_value.astype(np.float32) == float32_safe
    neighbour = np.nextafter(float32_safe, np.where(
        decimal_value > safe, np.float32(np.inf), np.float32(0)))
    midpoint = (safe + neighbour.astype(np.float64)) / 2
    unsure = unsure6 | unsure9 | (
        np.abs(decimal_value - midpoint) <= _MIDPOINT_MARGIN * safe)
    self.wide = wide
    self.code = np.where(reads_back, 2 + _whole(six, six_exponent, 6),
                         _whole(nine, nine_exponent, 9).astype(np.int64))
    self.code[magnitude == 0] = 3  # 0.0 and -0.0.
    self.exact = unsure | ~finite
    digits = np.where(reads_back, 6, 9)
    mantissa = np.where(reads_back, six, nine).astype(np.float64)
    exponent = np.where(reads_back, six_exponent, nine_exponent)
    # One correctly rounded operation (|power| <= 22): the nearest float64.
    power = exponent - (digits - 1)
    scale = _POW10[np.minimum(np.abs(power), 22)]
    decimal = np.where(power >= 0, mantissa * scale, mantissa / scale)
    self.decimal = np.where(magnitude == 0, wide,
                            np.copysign(decimal, wide))
    self.plain = ~self.exact & (np.abs(power) <= 22) & (exponent < digits)

  def strings(self, values: np.ndarray) -> list[str]:
    texts = [_FORMATS[c] % x
             for c, x in zip(self.code.tolist(), self.wide.tolist())]
    for i in np.flatnonzero(self.exact).tolist():
      texts[i] = decimal_text(values[i])
    return texts


def _float32_strings(values: np.ndarray) -> list[str]:
  """WriteDecimal's text of each float32 of a 1-D array."""
  return _Float32Plan(values).strings(values)


def _strings(values: np.ndarray) -> list[str]:
  """Each value of a 1-D array as TF Serving writes its type."""
  if values.dtype == np.float32:
    return _float32_strings(values)
  if values.dtype == np.float64:
    return [decimal_text(v) for v in values]
  if values.dtype == np.bool_:
    return ["true" if v else "false" for v in values.tolist()]
  return [str(v) for v in values.tolist()]


def _pieces(array: np.ndarray) -> Iterator[bytes]:
  """The JSON text of a non-empty array of rank >= 1, rows at a time."""
  width = array.shape[-1]
  rows = array.reshape(-1, width)
  # Row r opens the outer arrays whose first row it is, and closes those
  # whose last row it is.
  strides = np.cumprod(np.array(array.shape[-2::-1], np.int64))[::-1]
  per_chunk = max(1, _CHUNK // max(width, 1))
  for start in range(0, len(rows), per_chunk):
    index = np.arange(start, min(start + per_chunk, len(rows)),
                      dtype=np.int64)
    opens = np.zeros(index.size, np.int64)
    closes = np.zeros(index.size, np.int64)
    for stride in strides.tolist():
      remainder = index % stride
      opens += remainder == 0
      closes += remainder == stride - 1
    texts = _row_texts(rows[start:start + index.size])
    out = []
    for text, r, o, c in zip(texts, index.tolist(), opens.tolist(),
                             closes.tolist()):
      out.append("[" * o + text + "]" * c
                 + (", " if r != len(rows) - 1 else ""))
    yield "".join(out).encode()


def _row_texts(rows: np.ndarray) -> list[str]:
  """Each row of a 2-D array as a JSON array, `[a, b, ...]`."""
  width = rows.shape[1]
  if rows.dtype != np.float32:
    texts = _strings(rows.reshape(-1))
    return ["[" + ", ".join(texts[j * width:(j + 1) * width]) + "]"
            for j in range(len(rows))]
  flat = rows.reshape(-1)
  plan = _Float32Plan(flat)
  plain = plan.plain.reshape(rows.shape).all(axis=1)
  # Rows whose values are all plain: list.repr() writes them in C.
  texts = list(map(repr, plan.decimal.reshape(rows.shape).tolist()))
  for j in np.flatnonzero(~plain).tolist():
    row = flat[j * width:(j + 1) * width]
    texts[j] = "[" + ", ".join(_float32_strings(row)) + "]"
  return texts


# Up to this many values, an array is written value by value: the
# vectorised plan's few dozen numpy calls cost more than formatting a few
# values one at a time (a predict answer's 10 probabilities: ~0.9 ms against
# ~0.05 ms on the 2-core EPYC), and REST answers are mostly that small.
_SMALL = 64


def _nested(texts: list[str], shape: tuple[int, ...]) -> str:
  if len(shape) == 1:
    return "[" + ", ".join(texts) + "]"
  step = len(texts) // shape[0]
  return "[" + ", ".join(_nested(texts[i * step:(i + 1) * step], shape[1:])
                         for i in range(shape[0])) + "]"


def array_json(array: np.ndarray) -> RawJson:
  """A numeric or bool array (any rank) as TF Serving writes its tensor.

  Args:
    array: float32, float64, integer or bool values.

  Returns:
    The nested JSON arrays (the bare value for rank 0).
  """
  if array.ndim == 0:
    return RawJson(_strings(array.reshape(1))[0].encode())
  if array.size == 0:
    return RawJson(_scalar(np.zeros(array.shape).tolist()))
  if array.size <= _SMALL:
    flat = array.reshape(-1)
    texts = ([decimal_text(v) for v in flat] if flat.dtype == np.float32
             else _strings(flat))
    return RawJson(_nested(texts, array.shape).encode())
  return RawJson(_pieces(array))
