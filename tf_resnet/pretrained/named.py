"""Weights by name (`keras:resnet50`, `torchvision:resnet50`), through the sources' own caches and loaders.

* `keras:resnet50|resnet101|resnet152[_notop]`: the files
  `keras.applications.ResNet50(weights="imagenet")` loads, fetched with
  `keras.utils.get_file` into Keras's cache (`~/.keras/models`, or
  `$KERAS_HOME/models`), with Keras's own URL and MD5 hash.
* `torchvision:resnet18|34|50|101|152` (ImageNet1K_V1, the classic
  weights) and `torchvision:resnet50_v2|101_v2|152_v2` (IMAGENET1K_V2):
  the `.pth` files torchvision loads, fetched with
  `torch.hub.download_url_to_file` into torch's hub cache
  (`~/.cache/torch/hub/checkpoints`, or `$TORCH_HOME/hub/checkpoints`),
  checked against the SHA-256 prefix in their names.

A file already in the cache is used as it is (nothing is downloaded); one
that is not is downloaded only when allowed, and an offline failure says
which file to put where.
"""

import dataclasses
import hashlib
import os
from typing import Optional

from absl import logging

from tf_resnet.pretrained import readers

_TORCH_BASE = "https://download.pytorch.org/models/"
# torchvision.models.resnet's ResNet*_Weights URLs (torchvision 0.28).
TORCHVISION_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
    "resnet101": "resnet101-63fe2227.pth",
    "resnet152": "resnet152-394f9c45.pth",
    "resnet50_v2": "resnet50-11ad3fa6.pth",
    "resnet101_v2": "resnet101-cd907fc2.pth",
    "resnet152_v2": "resnet152-f82ba261.pth",
}
KERAS_MODELS = ("resnet50", "resnet101", "resnet152")


@dataclasses.dataclass(frozen=True)
class NamedFile:
  """Where a named file lives and comes from.

  Attributes:
    source: `keras` or `torchvision`.
    file_name: the file's name in the cache.
    url: where the source publishes it.
    cache_dir: the directory the source's loader keeps it in.
    file_hash: Keras's MD5, or the SHA-256 prefix torchvision's names carry.
  """

  source: str
  file_name: str
  url: str
  cache_dir: str
  file_hash: str

  @property
  def path(self) -> str:
    return os.path.join(self.cache_dir, self.file_name)


def _keras_cache(cache_dir: Optional[str]) -> str:
  if cache_dir:
    return os.path.join(cache_dir, "models")
  home = os.environ.get("KERAS_HOME") or os.path.join(
      os.path.expanduser("~"), ".keras")
  return os.path.join(home, "models")


def _torch_cache(cache_dir: Optional[str]) -> str:
  if cache_dir:
    return os.path.join(cache_dir, "hub", "checkpoints")
  # torch.hub.get_dir()'s rule, without importing torch.
  home = os.environ.get("TORCH_HOME") or os.path.join(
      os.environ.get("XDG_CACHE_HOME")
      or os.path.join(os.path.expanduser("~"), ".cache"), "torch")
  return os.path.join(home, "hub", "checkpoints")


def lookup(spec: str, cache_dir: Optional[str] = None) -> NamedFile:
  """The file a name like `keras:resnet50` or `torchvision:resnet50_v2` means.

  Args:
    spec: `SOURCE:MODEL`.
    cache_dir: instead of the source's default home (`~/.keras`,
      `~/.cache/torch`): the Keras or torch home to use.

  Returns:
    The file's name, URL, cache directory and hash.

  Raises:
    readers.ConversionError: for an unknown name, listing the known ones.
  """
  source, _, model = spec.partition(":")
  if source == "keras":
    notop = model.endswith("_notop")
    base = model[:-len("_notop")] if notop else model
    if base in KERAS_MODELS:
      # Keras's own table, so the names and hashes are the ones it uses.
      from keras.src.applications import resnet as keras_resnet  # pylint: disable=g-import-not-at-top
      name = (f"{base}_weights_tf_dim_ordering_tf_kernels"
              f"{'_notop' if notop else ''}.h5")
      return NamedFile("keras", name, keras_resnet.BASE_WEIGHTS_PATH + name,
                       _keras_cache(cache_dir),
                       keras_resnet.WEIGHTS_HASHES[base][int(notop)])
  elif source == "torchvision" and model in TORCHVISION_FILES:
    name = TORCHVISION_FILES[model]
    return NamedFile("torchvision", name, _TORCH_BASE + name,
                     _torch_cache(cache_dir), name.split("-")[1][:-4])
  known = ([f"keras:{m}{t}" for m in KERAS_MODELS for t in ("", "_notop")]
           + [f"torchvision:{m}" for m in TORCHVISION_FILES])
  raise readers.ConversionError(
      f"unknown weights {spec!r}; known: {', '.join(known)}, or a file path")


def _matches(named: NamedFile) -> bool:
  digest = (hashlib.md5() if named.source == "keras" else hashlib.sha256())
  with open(named.path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest().startswith(named.file_hash)


def fetch(named: NamedFile, download: bool = True) -> str:
  """The local path of a named file: from the cache, or downloaded into it.

  Args:
    named: the file (`lookup`).
    download: whether to download a file the cache does not hold.

  Returns:
    The file's path in the cache.

  Raises:
    readers.ConversionError: if the file is not cached and cannot be
      downloaded; the message names the file and where to put it.
  """
  if os.path.isfile(named.path):
    if not _matches(named):
      logging.warning("%s is not the file %s publishes (its hash differs "
                      "from %s); converting it anyway", named.path,
                      named.source, named.file_hash)
    return named.path
  where = (f"put {named.file_name} (from {named.url}) in {named.cache_dir}/ "
           "or give its path as --weights")
  if not download:
    raise readers.ConversionError(
        f"{named.file_name} is not in {named.cache_dir} and downloading is "
        f"off: {where}")
  os.makedirs(named.cache_dir, exist_ok=True)
  try:
    if named.source == "keras":
      import keras  # pylint: disable=g-import-not-at-top
      keras.utils.get_file(named.file_name, named.url, cache_subdir="models",
                           cache_dir=os.path.dirname(named.cache_dir),
                           file_hash=named.file_hash)
    else:
      try:
        import torch.hub  # pylint: disable=g-import-not-at-top
      except ImportError:
        raise readers.ConversionError(
            f"downloading {named.file_name} needs PyTorch (pip install "
            f"torch); without it, {where}") from None
      torch.hub.download_url_to_file(named.url, named.path,
                                     hash_prefix=named.file_hash,
                                     progress=False)
  except readers.ConversionError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # Both loaders raise whatever urllib raised (offline: URLError, or
    # Keras's Exception("URL fetch failure ...")), or a hash mismatch.
    raise readers.ConversionError(
        f"cannot download {named.file_name} from {named.url} ({e}); "
        f"offline, {where}") from None
  return named.path
