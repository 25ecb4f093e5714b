"""Writes a `ServingModule` as `base_path/<version>/`, atomically.

TensorFlow Serving (and this project's server) watch `base_path` for numeric
subdirectories. The export is written under a temporary, non-numeric name in
the same directory and renamed into place, so a watcher never sees half a
model; the classify signatures get TF Serving's classify method name, and
`assets.extra/tf_serving_warmup_requests` records real requests for every
signature, which TF Serving replays before the version takes traffic.
"""

import os
import shutil
from typing import Optional

import tensorflow as tf
from tensorflow.python.saved_model import method_name_updater  # pylint: disable=g-direct-tensorflow-import

from tf_resnet.exporting import serving_module

CLASSIFY_METHOD = "tensorflow/serving/classify"
# Where TF Serving reads a version's warm-up requests (a TFRecord file of
# PredictionLog; servables/tensorflow/saved_model_warmup_util.cc).
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def write_warmup(module: serving_module.ServingModule, version_dir: str,
                 model_name: str) -> str:
  """Writes the module's warm-up requests into a version directory."""
  path = os.path.join(version_dir, WARMUP_FILE)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path) as f:
    for log in serving_module.warmup_requests(module, model_name):
      f.write(log.SerializeToString())
  return path


def versions(base_path: str) -> list[int]:
  """The numeric versions under `base_path`, sorted."""
  if not os.path.isdir(base_path):
    return []
  return sorted(int(d) for d in os.listdir(base_path)
                if d.isdigit() and os.path.isdir(os.path.join(base_path, d)))


def write(module: serving_module.ServingModule, base_path: str,
          version: Optional[int] = None, overwrite: bool = False) -> str:
  """Exports `module` as a new version under `base_path`.

  Args:
    module: what to export.
    base_path: the model's base path (created if missing).
    version: the version number; default one above the highest there.
    overwrite: replace an existing version instead of refusing.

  Returns:
    The version's directory.

  Raises:
    FileExistsError: if the version exists and `overwrite` is False.
    ValueError: for a version below 1.
  """
  existing = versions(base_path)
  pick_next = version is None
  version = version if version is not None else (existing[-1] + 1
                                                 if existing else 1)
  if version < 1:
    raise ValueError(f"`version` must be a positive integer, not {version}")
  final = os.path.join(base_path, str(version))
  if os.path.exists(final) and not overwrite:
    raise FileExistsError(f"{final} exists; choose another --version or "
                          "pass --overwrite")
  os.makedirs(base_path, exist_ok=True)
  tmp = os.path.join(base_path, f".tmp-{version}-{os.getpid()}")
  shutil.rmtree(tmp, ignore_errors=True)
  try:
    tf.saved_model.save(module, tmp, signatures=module.signatures())
    updater = method_name_updater.MethodNameUpdater(tmp)
    for key in module.classify_signatures:
      updater.replace_method_name(signature_key=key,
                                  method_name=CLASSIFY_METHOD, tags="serve")
    updater.save()
    write_warmup(module, tmp, os.path.basename(os.path.normpath(base_path)))
    if overwrite and os.path.exists(final):
      old = os.path.join(base_path, f".old-{version}-{os.getpid()}")
      os.rename(final, old)
      os.rename(tmp, final)
      shutil.rmtree(old)
    else:
      final = _place(tmp, base_path, version, pick_next)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return final


def _place(tmp: str, base_path: str, version: int, pick_next: bool) -> str:
  """Renames `tmp` to `base_path/version`, never over another writer's.

  Two processes can export into one base path at once (the trainer's last
  export and an evaluator's best, tf_resnet.training.continuous_eval): when
  the number was ours to pick and another writer took it meanwhile, the
  version becomes the next free one.

  Raises:
    FileExistsError: if the version appeared meanwhile and was not ours to
      pick.
  """
  while True:
    final = os.path.join(base_path, str(version))
    try:
      os.rename(tmp, final)  # Refused over a (non-empty) version directory.
      return final
    except OSError:
      if not os.path.isdir(final):
        raise
      if not pick_next:
        raise FileExistsError(f"{final} appeared while it was written; "
                              "choose another --version") from None
      version = max(versions(base_path)[-1], version) + 1


def prune(base_path: str, keep: int) -> list[int]:
  """Removes all but the `keep` highest versions; returns the removed ones."""
  removed = versions(base_path)[:-keep] if keep > 0 else []
  for v in removed:
    shutil.rmtree(os.path.join(base_path, str(v)))
  return removed
