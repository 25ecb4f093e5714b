"""Tensors as JSON text, against TF Serving's json_tensor_test.cc and printf."""

import json

import numpy as np
import tensorflow as tf

from tf_resnet.serving import json_writer


class DecimalTest(tf.test.TestCase):

  def test_tf_servings_six_digit_cases(self):
    # json_tensor_test.cc, FromJsonSingleFloatTensorSixDigitPrecision and
    # FromJsonSingleFloatTensorNonFinite.
    values = np.array([[9000000, 999999, 0.5], [.0003, .00003, 555557.5]],
                      np.float32)
    self.assertEqual(json_writer.array_json(values).text,
                     b"[[9e+06, 999999.0, 0.5], [0.0003, 3e-05, 555557.5]]")
    values = np.array([[np.nan, np.inf], [3, -np.inf]], np.float32)
    self.assertEqual(json_writer.array_json(values).text,
                     b"[[NaN, Infinity], [3.0, -Infinity]]")

  def test_six_digits_or_nine_and_a_trailing_point_zero(self):
    cases = ((0.2, "0.2"), (1.0, "1.0"), (0.0, "0.0"), (-0.0, "-0.0"),
             (16777217, "16777216.0"),  # The float32 it is; %.9g.
             (0.123456789, "0.123456791"), (1e-7, "1e-07"), (1e16, "1e+16"),
             (123456.7, "123456.703"), (3.4028235e38, "3.40282347e+38"),
             (1e-45, "1.4013e-45"), (-2.5, "-2.5"), (1234565, "1234565.0"))
    for value, text in cases:
      self.assertEqual(json_writer.decimal_text(np.float32(value)), text)
      self.assertEqual(json_writer.array_json(np.float32(value)).text,
                       text.encode())
    # Doubles: %.17g when six digits do not read back.
    self.assertEqual(json_writer.decimal_text(0.1), "0.1")
    self.assertEqual(json_writer.decimal_text(1 / 3), "0.33333333333333331")

  def test_vectorised_floats_match_printf_one_by_one(self):
    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.normal(0, 1, 20000).astype(np.float32),
        (rng.normal(0, 1, 20000)
         * 10.0 ** rng.integers(-40, 38, 20000)).astype(np.float32),
        # Every kind of bit pattern: denormals, NaNs, infinities.
        rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(
            np.uint32).view(np.float32),
        np.arange(-3000, 3000, dtype=np.float32) / 8])
    with np.errstate(all="ignore"):
      got = json_writer.array_json(values).text.decode()[1:-1].split(", ")
    # decimal_text decides exactly, with Decimal arithmetic.
    expected = [json_writer.decimal_text(v) for v in values]
    self.assertEqual(got, expected)


  def test_reading_back_through_float64_agrees_with_exact_decimals(self):
    # pylint: disable=protected-access
    rng = np.random.default_rng(1)
    values = np.concatenate([
        rng.normal(0, 1, 5000).astype(np.float32),
        rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(
            np.uint32).view(np.float32)])
    values = values[np.isfinite(values)]
    with np.errstate(all="ignore"):
      above = np.nextafter(values, np.float32(np.inf))
    texts = []
    for value, neighbour in zip(values, above):
      texts += [(t, value) for t in ("%g" % value, "%.9g" % value)]
      # Midpoints between neighbours, where rounding twice can go wrong.
      midpoint = (float(value) + float(neighbour)) / 2
      texts += [(repr(midpoint), value), (repr(midpoint), neighbour)]
    for text, value in texts:
      self.assertEqual(json_writer._reads_back(text, value),
                       json_writer._reads_back_exact(text, value),
                       (text, value))


class ArrayTest(tf.test.TestCase):

  def test_small_arrays_match_the_vectorised_writer(self):
    # pylint: disable=protected-access
    rng = np.random.default_rng(2)
    values = np.concatenate([
        (rng.normal(0, 1, 3000) * 10.0 ** rng.integers(-40, 38, 3000)
         ).astype(np.float32),
        rng.integers(0, 2**32, 3000, dtype=np.uint64).astype(
            np.uint32).view(np.float32)])
    for start in range(0, values.size - 60, 60):
      block = values[start:start + 60]
      for shape in ([60], [3, 20], [3, 4, 5]):
        array = block.reshape(shape)
        self.assertLessEqual(array.size, json_writer._SMALL)
        with np.errstate(all="ignore"):
          self.assertEqual(
              json_writer.array_json(array).text,
              json_writer.RawJson(json_writer._pieces(array)).text)

  def test_shapes_and_types(self):
    for shape in ([3], [2, 3], [2, 1, 3], [1, 1, 1, 2], [70000], [2, 40000]):
      values = np.arange(np.prod(shape), dtype=np.int64).reshape(shape)
      self.assertEqual(json.loads(json_writer.array_json(values).text),
                       values.tolist())
    self.assertEqual(json_writer.array_json(np.zeros([2, 0])).text,
                     b"[[], []]")
    self.assertEqual(json_writer.array_json(np.array(
        [True, False])).text, b"[true, false]")
    self.assertEqual(json_writer.array_json(np.array(
        [2**64 - 1], np.uint64)).text, b"[18446744073709551615]")
    self.assertEqual(json_writer.array_json(np.int32(-7)).text, b"-7")

  def test_dumps_splices_raw_json(self):
    body = {"predictions": json_writer.RawJson(b"[1.0, NaN]"), "s": "\u00e9",
            "l": [json_writer.RawJson(b"2.0"), None]}
    self.assertEqual(json_writer.dumps(body),
                     '{"predictions": [1.0, NaN], "s": "\u00e9", '
                     '"l": [2.0, null]}'.encode())


if __name__ == "__main__":
  tf.test.main()
