"""Reading the sources' weight files into flat {name: array} dictionaries.

* Keras: the legacy HDF5 weight files of `keras.applications` (Keras 2's
  `save_weights` format: a `layer_names` attribute, one group per layer with
  a `weight_names` attribute, datasets under `layer/layer/weight:0`). Only
  h5py is needed, which Keras itself depends on.
* torchvision: a `state_dict` saved by `torch.save` (`.pth`, read with
  `torch.load(weights_only=True)`, so torch is needed), or the same tensors
  as `.safetensors` (read with the `safetensors` package alone).

Names come back as the source spells them, without `:0` suffixes: Keras's
`conv2_block1_1_conv/kernel`, torchvision's `layer1.0.conv1.weight`.
"""

import os

import numpy as np


class ConversionError(ValueError):
  """Weights that cannot be converted; the message names the file and the problem."""


def _attribute_list(group, name: str) -> list[str]:
  """A string-list attribute, also when Keras split it into `name0`, `name1`, ...

  (HDF5 object headers hold at most 64 KiB, so Keras chunks long lists.)
  """
  if name in group.attrs:
    values = list(group.attrs[name])
  else:
    values, chunk = [], 0
    while f"{name}{chunk}" in group.attrs:
      values.extend(group.attrs[f"{name}{chunk}"])
      chunk += 1
  return [v.decode("utf8") if isinstance(v, bytes) else str(v)
          for v in values]


def _strip_suffix(name: str) -> str:
  return name[:-2] if name.endswith(":0") else name


def read_keras_h5(path: str) -> dict[str, np.ndarray]:
  """Reads a Keras legacy HDF5 weights file.

  Args:
    path: e.g. `resnet50_weights_tf_dim_ordering_tf_kernels.h5`.

  Returns:
    {"<layer>/<weight>": array}, e.g. `conv1_conv/kernel`, in file order.

  Raises:
    ConversionError: if the file is missing, truncated or not a Keras
      weights file.
  """
  import h5py  # pylint: disable=g-import-not-at-top

  _check_exists(path)
  weights = {}
  try:
    with h5py.File(path, "r") as f:
      # A whole saved model keeps its weights under `model_weights`.
      root = f["model_weights"] if "model_weights" in f else f
      layer_names = _attribute_list(root, "layer_names")
      if not layer_names:
        raise ConversionError(
            f"{path} is an HDF5 file but not Keras weights: it has no "
            "`layer_names` attribute")
      for layer in layer_names:
        group = root[layer]
        for weight in _attribute_list(group, "weight_names"):
          short = _strip_suffix(weight).split("/")[-1]
          weights[f"{layer}/{short}"] = np.asarray(group[weight])
  except ConversionError:
    raise
  except (OSError, KeyError, ValueError, RuntimeError) as e:
    raise ConversionError(f"cannot read {path} as a Keras HDF5 weights file "
                          f"(truncated or damaged?): {e}") from None
  return weights


def read_torch(path: str) -> dict[str, np.ndarray]:
  """Reads a PyTorch `state_dict` from `.pth`/`.pt` or `.safetensors`.

  Args:
    path: a file written by `torch.save(model.state_dict(), path)` or by
      `safetensors.torch.save_file`.

  Returns:
    {"layer1.0.conv1.weight": array, ...} as float32 (or int64 for BN's
    `num_batches_tracked`).

  Raises:
    ConversionError: if the file is missing, truncated or of another kind,
      or if reading `.pth` needs torch and it is not installed.
  """
  _check_exists(path)
  if path.endswith(".safetensors"):
    try:
      from safetensors import numpy as safetensors_numpy  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise ConversionError(
          f"reading {path} needs the `safetensors` package: pip install "
          "safetensors") from None
    try:
      return dict(safetensors_numpy.load_file(path))
    except Exception as e:  # pylint: disable=broad-except
      # safetensors raises its own SafetensorError (and others) for damage.
      raise ConversionError(f"cannot read {path} as safetensors (truncated "
                            f"or damaged?): {e}") from None
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConversionError(
        f"reading {path} needs PyTorch (pip install 'tf_resnet[torch]' or "
        "torch); a .safetensors copy needs only the safetensors package"
    ) from None
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    # torch raises RuntimeError, pickle errors, EOFError... for bad files.
    raise ConversionError(f"cannot read {path} as a PyTorch state_dict "
                          f"(truncated or damaged?): {e}") from None
  if not isinstance(state, dict):
    raise ConversionError(f"{path} holds a {type(state).__name__}, not a "
                          "state_dict (a dict of tensors)")
  if "state_dict" in state and isinstance(state["state_dict"], dict):
    state = state["state_dict"]  # Training checkpoints wrap it.
  arrays = {}
  for name, value in state.items():
    if not isinstance(value, torch.Tensor):
      raise ConversionError(f"{path}: entry {name!r} is a "
                            f"{type(value).__name__}, not a tensor")
    arrays[name] = value.detach().cpu().numpy()
  return arrays


def _check_exists(path: str) -> None:
  if not os.path.isfile(path):
    raise ConversionError(f"{path} does not exist")
