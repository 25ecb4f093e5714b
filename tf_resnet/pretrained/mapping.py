"""The sources' names and conventions, mapped exactly onto this project's ResNets.

Each source's weights become `{our variable path: array}` (paths relative to
the network, e.g. `stage_2/block_0/conv_1/kernel`) plus the `ModelConfig`
and mean the network needs to compute what the source computes. Nothing is
approximated; what differs is folded into the weights:

* a convolution's bias b followed by batch normalization equals no bias and
  a moving mean of `mean - b` (the BN subtracts it anyway);
* BN's epsilon: the source's variance epsilon e_s becomes ours (1e-5) by
  storing `variance + e_s - 1e-5`;
* the input convention: Keras's models (the paper's Caffe models) take BGR
  images minus Caffe's per-channel mean, so the first kernel's input
  channels are reversed; torchvision's take `(x / 255 - mean) / std`, so
  the first kernel is divided by `255 * std` per input channel (the zero
  padding of the first convolution is zero in both conventions, so it
  commutes). The source's mean (on the 0-255 scale) becomes the run's mean
  image and the project's own preprocessing (subtract the mean) is exact;
* the max-pool grid: both pad by 1 (floor mode), recorded as
  `max_pool_padding="symmetric"`.

(Over 350 lines, deliberately: both sources' name tables share the builder,
the checks and the folds above, and are easiest to check side by side.)
"""

import dataclasses
import re
from typing import Optional

import numpy as np

from tf_resnet.model import resnet
from tf_resnet.model import zoo
from tf_resnet.pretrained import readers

SOURCES = ("keras", "torchvision")
OUR_EPSILON = 1e-5  # layers.BatchNorm's default (Caffe's).
KERAS_EPSILON = 1.001e-5  # keras.applications.resnet's BatchNormalization.
# Caffe's per-channel mean of ImageNet, as keras.applications' "caffe"
# preprocessing subtracts it (in BGR: 103.939, 116.779, 123.68).
KERAS_MEAN_RGB = (123.68, 116.779, 103.939)
TORCHVISION_MEAN = (0.485, 0.456, 0.406)  # On the [0, 1] scale.
TORCHVISION_STD = (0.229, 0.224, 0.225)

_BN_KINDS = ("scale", "offset", "moving_mean", "moving_variance")


@dataclasses.dataclass(frozen=True)
class Converted:
  """A source's weights in this project's terms.

  Attributes:
    model: the network that computes what the source computes.
    weights: {variable path relative to the network: array}; without the
      classifier when `new_head`.
    origins: {variable path: the source's name(s) it came from}, for errors.
    mean_rgb: the source's per-channel mean on the [0, 255] scale, RGB.
    new_head: the classifier is not the file's (a file without one, or
      another number of classes): it keeps its fresh initialisation.
    source_classes: the file's classifier outputs, None without one.
  """

  model: zoo.ModelConfig
  weights: dict[str, np.ndarray]
  origins: dict[str, str]
  mean_rgb: tuple[float, float, float]
  new_head: bool
  source_classes: Optional[int]


class _Builder:
  """Collects (our path -> array, origin) and checks that every name is used."""

  def __init__(self, path: str, names):
    self.path = path
    self.unused = dict.fromkeys(names)
    self.weights: dict[str, np.ndarray] = {}
    self.origins: dict[str, str] = {}

  def put(self, ours: str, value: np.ndarray, *origins: str) -> None:
    self.weights[ours] = np.asarray(value, np.float32)
    self.origins[ours] = " + ".join(origins)
    for name in origins:
      self.unused.pop(name, None)

  def ignore(self, name: str) -> None:
    self.unused.pop(name, None)

  def check_all_used(self) -> None:
    _check_known(self.path, list(self.unused))


def _check_known(path: str, unknown: list[str]) -> None:
  """Raises, naming them, if there are weights no variable takes."""
  if unknown:
    more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
    raise readers.ConversionError(
        f"{path}: unknown weights {', '.join(unknown[:8])}{more}: not part "
        "of a ResNet this converter knows (wrong --source?)")


def _depth_of(path: str, block: str, counts: tuple[int, ...]) -> int:
  for depth, (kind, blocks) in resnet.IMAGENET_STAGES.items():
    if (kind, blocks) == (block, counts):
      return depth
  raise readers.ConversionError(
      f"{path} holds {block} blocks per stage {counts}, which is none of the "
      f"ResNets of Table 1 ({_table()})")


def _table() -> str:
  return "; ".join(f"{d}: {k} {b}" for d, (k, b) in
                   sorted(resnet.IMAGENET_STAGES.items()))


def _check_depth(path: str, file_depth: int, depth: Optional[int]) -> int:
  if depth is not None and depth != file_depth:
    raise readers.ConversionError(
        f"{path} holds a ResNet-{file_depth}, not the --depth={depth} "
        "asked for")
  return file_depth


def _head(path: str, has_head: bool, source_classes: Optional[int],
          num_classes: Optional[int]) -> tuple[int, bool]:
  """(classes of the converted network, whether its head is new)."""
  if not has_head:
    if num_classes is None:
      raise readers.ConversionError(
          f"{path} has no classifier (a _notop file): give --num_classes "
          "for a new, freshly initialised head")
    return num_classes, True
  if num_classes is None or num_classes == source_classes:
    return source_classes, False
  return num_classes, True


# Keras 2.2.4 and earlier (fchollet's converted Caffe models) used Caffe's
# layer names; keras.applications' ResNet50/101/152 use conv{S}_block{B}_...
_OLD_KERAS = re.compile(r"^(res|bn)(\d)([a-z])(\d*)_branch(1|2[abc])$")


def _keras_layer_name(name: str) -> str:
  """A Keras layer's name in the current scheme (old Caffe names translated)."""
  fixed = {"conv1": "conv1_conv", "bn_conv1": "conv1_bn",
           "fc1000": "predictions"}
  if name in fixed:
    return fixed[name]
  match = _OLD_KERAS.match(name)
  if not match:
    return name
  kind, stage, letter, number, branch = match.groups()
  # res4a, res4b1 ... res4b22 (101/152) or res2a, res2b, res2c (50).
  block = int(number) if number else ord(letter) - ord("a")
  layer = "0" if branch == "1" else str("abc".index(branch[1]) + 1)
  return (f"conv{stage}_block{block + 1}_{layer}_"
          f"{'conv' if kind == 'res' else 'bn'}")


_KERAS_LAYER = re.compile(r"^conv(\d)_block(\d+)_(\d)_(conv|bn)$")


def _keras_module(layer: str) -> Optional[str]:
  """Our module path for a Keras layer, e.g. `stage_1/block_0/conv_0`."""
  if layer in ("conv1_conv", "conv1_bn"):
    return "stem/" + layer[6:]
  if layer == "predictions":
    return "head/fc"
  match = _KERAS_LAYER.match(layer)
  if not match:
    return None
  stage, block, index, kind = match.groups()
  where = f"stage_{int(stage) - 1}/block_{int(block) - 1}/"
  if index == "0":
    return where + f"shortcut/{kind}"
  return where + f"{kind}_{int(index) - 1}"


def _bn_of(conv_module: str) -> str:
  """The batch normalization that follows a convolution, in our names."""
  head, _, last = conv_module.rpartition("/")
  return f"{head}/{last.replace('conv', 'bn')}"


def from_keras(weights: dict[str, np.ndarray], path: str, *,
               depth: Optional[int] = None,
               num_classes: Optional[int] = None) -> Converted:
  """Maps a keras.applications ResNet50/101/152 onto this project's network.

  Args:
    weights: `readers.read_keras_h5`'s dictionary.
    path: the file, for messages.
    depth: the depth asked for; None takes the file's.
    num_classes: classes of the converted network; None keeps the file's
      classifier (required for a `_notop` file).

  Returns:
    The converted weights.

  Raises:
    readers.ConversionError: for a file of another depth or kind, unknown
      weights, or a `_notop` file without `num_classes`.
  """
  builder = _Builder(path, weights)
  modules: dict[str, dict[str, tuple[np.ndarray, str]]] = {}
  unknown = []
  for name, value in weights.items():
    layer, _, kind = name.rpartition("/")
    module = _keras_module(_keras_layer_name(layer))
    if module is not None:
      modules.setdefault(module, {})[kind] = (value, name)
    else:
      unknown.append(name)
  _check_known(path, unknown)
  block, counts = _blocks_per_stage(path, modules)
  file_depth = _check_depth(path, _depth_of(path, block, counts), depth)
  head = modules.get("head/fc", {})
  source_classes = head["kernel"][0].shape[-1] if "kernel" in head else None
  classes, new_head = _head(path, bool(head), source_classes, num_classes)

  conv_bias = {}
  for module, values in modules.items():
    if module == "head/fc":
      if not new_head:
        for kind in ("kernel", "bias"):
          if kind in values:
            builder.put(f"head/fc/{kind}", values[kind][0], values[kind][1])
      else:
        for _, origin in values.values():
          builder.ignore(origin)
    elif "bn" in module.rpartition("/")[2]:
      continue  # With its convolution, below.
    else:
      kernel, origin = values.get("kernel", (None, None))
      if kernel is not None:
        if module == "stem/conv":
          kernel = kernel[:, :, ::-1, :]  # BGR inputs to RGB.
        builder.put(f"{module}/kernel", kernel, origin)
      if "bias" in values:
        conv_bias[_bn_of(module)] = values["bias"]
  renamed = {"gamma": "scale", "beta": "offset", "moving_mean": "moving_mean",
             "moving_variance": "moving_variance"}
  for module, values in modules.items():
    if "bn" not in module.rpartition("/")[2]:
      continue
    for kind, (value, origin) in values.items():
      if kind not in renamed:
        continue  # Left unused: reported as unknown.
      ours, origins = renamed[kind], [origin]
      if ours == "moving_mean" and module in conv_bias:
        bias, bias_origin = conv_bias.pop(module)
        value = value - bias
        origins.append(bias_origin)
      if ours == "moving_variance":
        value = _fold_epsilon(path, origin, value, KERAS_EPSILON)
      builder.put(f"{module}/{ours}", value, *origins)
  # A bias whose convolution has no BN after it is reported as unknown.
  builder.unused.update((o, None) for _, o in conv_bias.values())
  builder.check_all_used()
  model = zoo.ModelConfig(family="imagenet", architecture="resnet",
                          depth=file_depth, shortcut="B",
                          num_classes=classes, stride_on_3x3=False,
                          max_pool_padding="symmetric")
  return Converted(model, builder.weights, builder.origins, KERAS_MEAN_RGB,
                   new_head, source_classes)


_TORCH_NAME = re.compile(
    r"^layer(\d)\.(\d+)\.(conv\d|bn\d|downsample\.0|downsample\.1)\."
    r"(weight|bias|running_mean|running_var|num_batches_tracked)$")
_TORCH_STEM = re.compile(
    r"^(conv1|bn1|fc)\."
    r"(weight|bias|running_mean|running_var|num_batches_tracked)$")


def _torch_module(name: str) -> Optional[tuple[str, str]]:
  """(our module path, torch parameter kind) for a torchvision name."""
  match = _TORCH_STEM.match(name)
  if match:
    module, kind = match.groups()
    return {"conv1": "stem/conv", "bn1": "stem/bn", "fc": "head/fc"}[
        module], kind
  match = _TORCH_NAME.match(name)
  if not match:
    return None
  stage, block, layer, kind = match.groups()
  where = f"stage_{stage}/block_{block}/"
  if layer.startswith("downsample"):
    return where + ("shortcut/conv" if layer.endswith("0") else
                    "shortcut/bn"), kind
  return where + f"{layer[:-1]}_{int(layer[-1]) - 1}", kind


def from_torchvision(weights: dict[str, np.ndarray], path: str, *,
                     depth: Optional[int] = None,
                     num_classes: Optional[int] = None) -> Converted:
  """Maps a torchvision ResNet-18/34/50/101/152 `state_dict` onto this project's network.

  torchvision's bottlenecks stride on the 3x3 ("v1.5"), so the network is
  built with `stride_on_3x3=True`.

  Args:
    weights: `readers.read_torch`'s dictionary.
    path: the file, for messages.
    depth: the depth asked for; None takes the file's.
    num_classes: classes of the converted network; None keeps the file's
      classifier.

  Returns:
    The converted weights.

  Raises:
    readers.ConversionError: for a file of another depth or kind, unknown
      weights, or a file without `fc` and no `num_classes`.
  """
  builder = _Builder(path, weights)
  modules: dict[str, dict[str, tuple[np.ndarray, str]]] = {}
  unknown = []
  for name, value in weights.items():
    found = _torch_module(name)
    if found is not None:
      modules.setdefault(found[0], {})[found[1]] = (value, name)
    else:
      unknown.append(name)
  _check_known(path, unknown)
  block, counts = _blocks_per_stage(path, modules)
  file_depth = _check_depth(path, _depth_of(path, block, counts), depth)
  head = modules.get("head/fc", {})
  source_classes = head["weight"][0].shape[0] if "weight" in head else None
  classes, new_head = _head(path, bool(head), source_classes, num_classes)
  scale = 255.0 * np.asarray(TORCHVISION_STD, np.float32)
  bn_kinds = {"weight": "scale", "bias": "offset",
              "running_mean": "moving_mean",
              "running_var": "moving_variance"}
  for module, values in modules.items():
    kind_of_module = module.rpartition("/")[2]
    for kind, (value, origin) in values.items():
      if kind == "num_batches_tracked":
        builder.ignore(origin)  # Training bookkeeping, not a weight.
      elif module == "head/fc":
        if not new_head:
          builder.put(f"head/fc/{'kernel' if kind == 'weight' else 'bias'}",
                      value.T if kind == "weight" else value, origin)
        else:
          builder.ignore(origin)
      elif kind_of_module.startswith("bn"):
        if kind in bn_kinds:
          builder.put(f"{module}/{bn_kinds[kind]}", value, origin)
      elif kind == "weight":  # [out, in, h, w] -> [h, w, in, out].
        kernel = np.transpose(value, (2, 3, 1, 0))
        if module == "stem/conv":
          kernel = kernel / scale[None, None, :, None]
        builder.put(f"{module}/kernel", kernel, origin)
  builder.check_all_used()
  model = zoo.ModelConfig(family="imagenet", architecture="resnet",
                          depth=file_depth, shortcut="B",
                          num_classes=classes,
                          stride_on_3x3=block == "bottleneck",
                          max_pool_padding="symmetric")
  mean = tuple(float(255.0 * m) for m in TORCHVISION_MEAN)
  return Converted(model, builder.weights, builder.origins, mean, new_head,
                   source_classes)


def _blocks_per_stage(path: str, modules) -> tuple[str, tuple[int, ...]]:
  """The block type and blocks per stage that the module paths describe."""
  blocks: dict[int, set[int]] = {}
  bottleneck = False
  for module in modules:
    match = re.match(r"^stage_(\d)/block_(\d+)/(conv|bn)_(\d)", module)
    if match:
      stage, block, _, index = match.groups()
      blocks.setdefault(int(stage), set()).add(int(block))
      bottleneck |= index == "2"
  if sorted(blocks) != [1, 2, 3, 4]:
    raise readers.ConversionError(
        f"{path} does not hold an ImageNet ResNet's four stages (found "
        f"stages {sorted(blocks) or 'none'})")
  counts = []
  for stage in (1, 2, 3, 4):
    if blocks[stage] != set(range(len(blocks[stage]))):
      raise readers.ConversionError(
          f"{path}: stage {stage} has blocks {sorted(blocks[stage])}, not "
          f"0, 1, 2, ... (a truncated or edited file?)")
    counts.append(len(blocks[stage]))
  return ("bottleneck" if bottleneck else "basic"), tuple(counts)


def _fold_epsilon(path: str, origin: str, variance: np.ndarray,
                  epsilon: float) -> np.ndarray:
  folded = variance.astype(np.float64) + (epsilon - OUR_EPSILON)
  if (folded < 0).any():
    raise readers.ConversionError(
        f"{path}: {origin} has variances below {OUR_EPSILON - epsilon}, "
        "which this network's epsilon cannot represent")
  return folded.astype(np.float32)


def convert(source: str, weights: dict[str, np.ndarray], path: str, *,
            depth: Optional[int] = None,
            num_classes: Optional[int] = None) -> Converted:
  """Maps a source's weights onto this project's network.

  Args:
    source: `keras` or `torchvision`.
    weights: the file's {name: array}.
    path: the file, for messages.
    depth: the depth asked for; None takes the file's.
    num_classes: None keeps the file's classifier.

  Returns:
    The converted weights.

  Raises:
    ValueError: for an unknown source.
    readers.ConversionError: see `from_keras` and `from_torchvision`.
  """
  if source == "keras":
    return from_keras(weights, path, depth=depth, num_classes=num_classes)
  if source == "torchvision":
    return from_torchvision(weights, path, depth=depth,
                            num_classes=num_classes)
  raise ValueError(f"`source` must be one of {SOURCES}, not {source!r}")

