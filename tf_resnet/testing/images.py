"""Encoded test images: random or solid pixels as PNG or JPEG bytes."""

import os

import numpy as np
import tensorflow as tf


def random_pixels(seed: int, size: int = 32, channels: int = 3) -> np.ndarray:
  """Uniform random uint8 pixels, [size, size, channels], fixed by `seed`."""
  rng = np.random.RandomState(seed)
  return rng.randint(0, 256, [size, size, channels]).astype(np.uint8)


def encode_png(pixels: np.ndarray) -> bytes:
  return tf.io.encode_png(np.asarray(pixels, np.uint8)).numpy()


def encode_jpeg(pixels: np.ndarray) -> bytes:
  return tf.io.encode_jpeg(np.asarray(pixels, np.uint8)).numpy()


def png(seed: int, size: int = 32, channels: int = 3) -> bytes:
  """A PNG of `random_pixels(seed, size, channels)`."""
  return encode_png(random_pixels(seed, size, channels))


def solid_png(value: int, size: int = 32, channels: int = 3) -> bytes:
  """A PNG whose every pixel value is `value`."""
  return encode_png(np.full([size, size, channels], value, np.uint8))


def solid_jpeg(value: int, size: int = 32, channels: int = 3) -> bytes:
  """A JPEG whose every pixel value is `value` (exact: a flat image)."""
  return encode_jpeg(np.full([size, size, channels], value, np.uint8))


def write_file(path: str, data: bytes) -> str:
  """Writes `data` to `path`, creating its directories; returns `path`."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)
  return path
