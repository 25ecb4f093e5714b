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
  """JSON text already written (a tensor's values), spliced in by `dumps`."""

  __slots__ = ("text",)

  def __init__(self, text: bytes):
    self.text = text

  def __repr__(self) -> str:
    return f"RawJson({self.text[:60]!r}{'...' if len(self.text) > 60 else ''})"


def dumps(value: Any) -> bytes:
  """`value` as UTF-8 JSON, as `json.dumps(ensure_ascii=False)`, with RawJson.

  Args:
    value: dicts, lists, scalars and `RawJson` fragments.

  Returns:
    The JSON text; strings that are not valid UTF-8 (lone surrogates) have
    their bad characters replaced by `?`.
  """
  pieces: list[bytes] = []
  _write(value, pieces)
  return b"".join(pieces)


def _write(value, pieces: list[bytes]) -> None:
  if isinstance(value, RawJson):
    pieces.append(value.text)
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
  scaled = values
  for _ in range(3):  # |exponents| <= 66: float32's range and 9 digits.
    step = np.minimum(power, 22)
    scaled = np.where(exponents >= 0, scaled * _POW10[step],
                      scaled / _POW10[step])
    power = power - step
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


def _reads_back(text: str, value: np.float32) -> bool:
  """Whether `text` parses to the float32 `value` (round half to even)."""
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
  if np.isnan(number):
    return "NaN"
  if np.isinf(number):
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


def _float32_strings(values: np.ndarray) -> list[str]:
  """WriteDecimal's text of each float32 of a 1-D array.

  Which of `%g` and `%.9g` applies, and whether `.0` follows, is decided
  for all values at once in float64; Python's printf then writes each.
  """
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
  code = np.where(reads_back, 2 + _whole(six, six_exponent, 6),
                  _whole(nine, nine_exponent, 9).astype(np.int64))
  code[magnitude == 0] = 3  # 0.0 and -0.0.
  texts = [_FORMATS[c] % x for c, x in zip(code.tolist(), wide.tolist())]
  for i in np.flatnonzero(unsure | ~finite).tolist():
    texts[i] = decimal_text(values[i])
  return texts


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
    texts = _strings(rows[start:start + index.size].reshape(-1))
    out = []
    for j, (r, o, c) in enumerate(zip(index.tolist(), opens.tolist(),
                                      closes.tolist())):
      out.append("[" * (o + 1) + ", ".join(texts[j * width:(j + 1) * width])
                 + "]" * (c + 1) + (", " if r != len(rows) - 1 else ""))
    yield "".join(out).encode()


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
  return RawJson(b"".join(_pieces(array)))
