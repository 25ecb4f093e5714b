"""Which versions of a model exist on disk, and which its policy serves.

TF Serving's FileSystemStoragePathSource (version directories under a base
path) and the ModelConfig's version policy; `served_model.py` loads and
unloads what these name.
"""

import os
import re
from typing import Sequence

from tensorflow_serving.config import model_server_config_pb2

_VERSION_DIR = re.compile(r"\d+")  # TF Serving: SimpleAtoi, and >= 0.
_SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")


def aspired_versions(policy: model_server_config_pb2.ModelConfig,
                     available: Sequence[int]) -> list[int]:
  """The versions of `available` (ascending) that `policy` serves.

  The ModelConfig's model_version_policy as FileSystemStoragePathSource
  applies it: latest N (N unset or 0: 1), all, or the specific versions
  that exist.
  """
  which = policy.model_version_policy.WhichOneof("policy_choice")
  if which == "all":
    return list(available)
  if which == "specific":
    wanted = set(policy.model_version_policy.specific.versions)
    return [v for v in available if v in wanted]
  count = (policy.model_version_policy.latest.num_versions
           if which == "latest" else 0) or 1
  return list(available)[-count:]


def version_directories(base_path: str) -> dict[int, str]:
  """Version number -> directory of the SavedModels under `base_path`.

  Names are parsed as TF Serving parses them (`00000123` is 123); other
  names (an exporter's temporary directory) are ignored, and so is a
  directory without saved_model.pb(txt) yet. Of two names for one number
  the first in sorted order wins.
  """
  if not os.path.isdir(base_path):
    return {}
  found = {}
  for name in sorted(os.listdir(base_path)):
    path = os.path.join(base_path, name)
    if not _VERSION_DIR.fullmatch(name) or not any(
        os.path.isfile(os.path.join(path, f)) for f in _SAVED_MODEL_FILES):
      continue
    found.setdefault(int(name), path)
  return found

