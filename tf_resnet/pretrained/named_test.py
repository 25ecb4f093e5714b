"""Weights by name: the sources' caches are used, downloads go through their loaders, offline says what to do.

Nothing is downloaded: "downloads" read file:// URLs of files made here.
"""

import dataclasses
import hashlib
import os
import tempfile

from absl.testing import absltest
import tensorflow as tf

from tf_resnet.pretrained import conversion
from tf_resnet.pretrained import named
from tf_resnet.pretrained import readers


def _write(path: str, data: bytes) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)
  return path


class LookupTest(tf.test.TestCase):

  def test_keras_names_use_keras_table(self):
    from keras.src.applications import resnet as keras_resnet  # pylint: disable=g-import-not-at-top
    found = named.lookup("keras:resnet101_notop", cache_dir="/keras_home")
    self.assertEqual(found.file_name,
                     "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5")
    self.assertEqual(found.url, keras_resnet.BASE_WEIGHTS_PATH
                     + found.file_name)
    self.assertEqual(found.file_hash, keras_resnet.WEIGHTS_HASHES[
        "resnet101"][1])
    self.assertEqual(found.path, "/keras_home/models/" + found.file_name)

  def test_default_caches_are_the_sources(self):
    home = os.path.expanduser("~")
    with absltest.mock.patch.dict(os.environ, clear=True):
      os.environ["HOME"] = home
      self.assertEqual(named.lookup("keras:resnet50").cache_dir,
                       os.path.join(home, ".keras", "models"))
      self.assertEqual(named.lookup("torchvision:resnet50").cache_dir,
                       os.path.join(home, ".cache", "torch", "hub",
                                    "checkpoints"))
      os.environ["TORCH_HOME"] = "/th"
      os.environ["KERAS_HOME"] = "/kh"
      self.assertEqual(named.lookup("torchvision:resnet18").path,
                       "/th/hub/checkpoints/resnet18-f37072fd.pth")
      self.assertEqual(named.lookup("keras:resnet152").cache_dir,
                       "/kh/models")

  def test_torchvision_names(self):
    found = named.lookup("torchvision:resnet50", cache_dir="/t")
    self.assertEqual(found.url,
                     "https://download.pytorch.org/models/"
                     "resnet50-0676ba61.pth")
    self.assertEqual(found.file_hash, "0676ba61")
    self.assertEqual(named.lookup("torchvision:resnet50_v2").file_name,
                     "resnet50-11ad3fa6.pth")

  def test_unknown_name_lists_the_known_ones(self):
    with self.assertRaisesRegex(
        readers.ConversionError,
        "unknown weights 'keras:resnet18'; known: keras:resnet50, "
        "keras:resnet50_notop, .*torchvision:resnet152_v2, or a file path"):
      named.lookup("keras:resnet18")


class FetchTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.home = tempfile.mkdtemp()
    self.origin = _write(os.path.join(tempfile.mkdtemp(), "published.bin"),
                         b"weights" * 1000)

  def _named(self, source: str, **changes) -> named.NamedFile:
    found = named.lookup(f"{source}:resnet50", cache_dir=self.home)
    return dataclasses.replace(found, **changes)

  def test_cached_file_is_used_without_downloading(self):
    wanted = self._named("keras", url="file:///nonexistent")
    _write(wanted.path, b"not keras's file")
    with self.assertLogs(level="WARNING") as logs:
      self.assertEqual(named.fetch(wanted, download=False), wanted.path)
    self.assertIn("is not the file keras publishes", logs.output[0])

  def test_offline_names_the_file_and_where_to_put_it(self):
    for source in ("keras", "torchvision"):
      wanted = self._named(source)
      with self.assertRaisesRegex(
          readers.ConversionError,
          f"{wanted.file_name} is not in {wanted.cache_dir} and downloading "
          f"is off: put {wanted.file_name} \\(from {wanted.url}\\) in "
          f"{wanted.cache_dir}/ or give its path as --weights"):
        named.fetch(wanted, download=False)

  def test_keras_download_goes_through_get_file(self):
    with open(self.origin, "rb") as f:
      md5 = hashlib.md5(f.read()).hexdigest()
    wanted = self._named("keras", url="file://" + self.origin,
                         file_hash=md5)
    self.assertEqual(named.fetch(wanted), wanted.path)
    with open(wanted.path, "rb") as f:
      self.assertEqual(f.read(), b"weights" * 1000)

  def test_torch_download_checks_the_hash_prefix(self):
    with open(self.origin, "rb") as f:
      sha = hashlib.sha256(f.read()).hexdigest()
    good = self._named("torchvision", url="file://" + self.origin,
                       file_hash=sha[:8])
    self.assertEqual(named.fetch(good), good.path)
    os.remove(good.path)
    bad = dataclasses.replace(good, file_hash="00000000")
    with self.assertRaisesRegex(
        readers.ConversionError,
        f"cannot download {bad.file_name} from file://.*; offline, put "):
      named.fetch(bad)
    self.assertFalse(os.path.exists(bad.path))

  def test_failed_download_says_where_to_put_the_file(self):
    wanted = self._named("keras", url="file:///nonexistent/resnet50.h5")
    with self.assertRaisesRegex(
        readers.ConversionError,
        f"cannot download {wanted.file_name} from file:///nonexistent/"
        f"resnet50.h5 .*; offline, put {wanted.file_name} .* in "
        f"{wanted.cache_dir}/"):
      named.fetch(wanted)

  def test_name_of_the_other_source_is_refused(self):
    config = conversion.ConvertConfig(source="torchvision",
                                      weights="keras:resnet50",
                                      model_dir=self.home)
    with self.assertRaisesRegex(
        readers.ConversionError,
        "--weights=keras:resnet50 is a keras file but --source=torchvision"):
      conversion.resolve_weights(config)


if __name__ == "__main__":
  tf.test.main()
