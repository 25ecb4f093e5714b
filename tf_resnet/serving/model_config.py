"""The ModelServerConfig: read, built from flags, validated as TF Serving.

`read_config` parses a `--model_config_file` (text format, TF Serving's
wording for a bad file), `single_model_config` is `--model_name` with
`--model_base_path`, and `validate_config` refuses what TF Serving's
ServerCore refuses (server_core.cc), with its status codes and messages.
"""

import os
from typing import Optional

from google.protobuf import text_format
import grpc
from tensorflow_serving.config import model_server_config_pb2

from tf_resnet.serving import errors

ServingError = errors.ServingError
_INVALID = grpc.StatusCode.INVALID_ARGUMENT


def _is_relative(path: str) -> bool:
  """TF Serving's UriIsRelativePath: no scheme, and not an absolute path."""
  return "://" not in path and not os.path.isabs(path)


def validate_config(config: model_server_config_pb2.ModelServerConfig,
                    old: Optional[model_server_config_pb2.ModelServerConfig]
                    = None) -> None:
  """Refuses what TF Serving's ServerCore refuses, with its messages.

  Raises:
    ServingError: INVALID_ARGUMENT for a repeated name, a relative base path,
      a missing or changed platform; FAILED_PRECONDITION for a platform this
      server does not serve.
  """
  configs = config.model_config_list.config
  seen = set()
  for c in configs:
    if c.name in seen:
      raise ServingError(_INVALID, f"Illegal to list model {c.name} multiple "
                         "times in config list")
    seen.add(c.name)
  for c in configs:
    if _is_relative(c.base_path):
      raise ServingError(_INVALID, f"Expected model {c.name} to have an "
                         f"absolute path or URI; got base_path()="
                         f"{c.base_path}")
  old_platforms = ({c.name: c.model_platform
                    for c in old.model_config_list.config} if old else {})
  for c in configs:
    if not c.model_platform:
      raise ServingError(_INVALID, "Illegal setting neither "
                         "ModelServerConfig::model_type (deprecated) nor "
                         "ModelServerConfig::model_platform, model name is "
                         f"{c.name}")
    before = old_platforms.get(c.name)
    if before and before != c.model_platform:
      raise ServingError(_INVALID, "Illegal to change a model's platform. "
                         f"For model {c.name} platform was {before} and new "
                         f"platform requested is {c.model_platform}")
    if c.model_platform != "tensorflow":
      raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                         "PlatformConfigMap has no entry for platform "
                         f"{c.model_platform}")


def read_config(path: str) -> model_server_config_pb2.ModelServerConfig:
  """Reads a text-format ModelServerConfig.

  Raises:
    OSError: if the file cannot be read.
    text_format.ParseError: with TF Serving's wording for a bad file.
  """
  config = model_server_config_pb2.ModelServerConfig()
  with open(path) as f:
    text = f.read()
  try:
    text_format.Parse(text, config)
  except text_format.ParseError as e:
    raise text_format.ParseError(
        f"Error parsing text-format tensorflow.serving.ModelServerConfig "
        f"({path}): {e}") from None
  return config


def models_config(base_paths: dict[str, str]
                  ) -> model_server_config_pb2.ModelServerConfig:
  """The config serving each model name from its base path, in order."""
  config = model_server_config_pb2.ModelServerConfig()
  for name, base_path in base_paths.items():
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = os.path.abspath(base_path)
    model.model_platform = "tensorflow"
  return config


def single_model_config(name: str, base_path: str
                        ) -> model_server_config_pb2.ModelServerConfig:
  """The config of `--model_name` and `--model_base_path`."""
  return models_config({name: base_path})
