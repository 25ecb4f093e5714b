"""Test-only weight files made on the spot: Keras and torchvision ResNets with random weights.

The tests never download: they build the sources' networks with random
weights, random batch-norm statistics and (Keras) random convolution biases,
and write them in the files' real formats, so that a conversion has to get
every tensor, every fold and every convention right to reproduce their
outputs.
"""

import re
from typing import Optional

import h5py
import numpy as np


def keras_resnet(depth: int, *, include_top: bool = True, seed: int = 0):
  """keras.applications.ResNet{depth} with random weights, logits out.

  Batch-norm scales are drawn small enough that activations stay of the
  same order through the residual stacks, so logits are finite and
  differences relative to them mean something.

  Args:
    depth: 50, 101 or 152.
    include_top: with the 1000-way classifier (or the `_notop` network).
    seed: for the random weights.

  Returns:
    The Keras model, taking images of any size (`preprocess_input` first).
  """
  import keras  # pylint: disable=g-import-not-at-top
  constructor = {50: keras.applications.ResNet50,
                 101: keras.applications.ResNet101,
                 152: keras.applications.ResNet152}[depth]
  # Keras builds the classifier only for a fixed input size; the same
  # layers (names and order: ..., avg_pool, predictions) over any size are
  # the headless network with its average pool and a Dense on top.
  model = constructor(weights=None, include_top=False,
                      input_shape=(None, None, 3), pooling="avg")
  if include_top:
    logits = keras.layers.Dense(1000, name="predictions")(model.output)
    model = keras.Model(model.input, logits, name=model.name)
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    values = []
    for weight in layer.weights:
      shape, name = tuple(weight.shape), weight.path.split("/")[-1]
      if name == "kernel":
        fan_in = int(np.prod(shape[:-1]))
        values.append(rng.normal(0, np.sqrt(2.0 / fan_in), shape))
      elif name in ("bias", "beta", "moving_mean"):
        values.append(rng.normal(0, 0.2, shape))
      elif name == "gamma":
        values.append(rng.uniform(0.2, 0.6, shape))
      elif name == "moving_variance":
        values.append(rng.uniform(0.5, 2.0, shape))
      else:
        raise ValueError(f"unexpected Keras weight {weight.path}")
    if values:
      layer.set_weights([v.astype(np.float32) for v in values])
  return model


def caffe_layer_name(name: str) -> str:
  """Keras 2.2.4's (Caffe's) name of a keras.applications ResNet-50 layer, e.g. res2a_branch2a."""
  fixed = {"conv1_conv": "conv1", "conv1_bn": "bn_conv1",
           "predictions": "fc1000"}
  if name in fixed:
    return fixed[name]
  match = re.match(r"^conv(\d)_block(\d+)_(\d)_(conv|bn)$", name)
  if not match:
    return name  # Layers without weights keep their names.
  stage, block, index, kind = match.groups()
  block = int(block) - 1
  letter = "abcdef"[block]  # Keras 2.2.4's ResNet50: res2a ... res4f.
  branch = "1" if index == "0" else "2" + "abc"[int(index) - 1]
  return f"{'res' if kind == 'conv' else 'bn'}{stage}{letter}_branch{branch}"


def save_keras_legacy_h5(model, path: str, *, caffe_names: bool = False,
                         truncate: Optional[int] = None) -> str:
  """Writes a Keras model's weights as Keras 2's `save_weights` did.

  The layout of `resnet50_weights_tf_dim_ordering_tf_kernels.h5`: root
  attributes `layer_names`, `backend`, `keras_version`; a group per layer
  (with or without weights) whose `weight_names` attribute lists
  `layer/weight:0` names, trainable weights first; datasets at
  `layer/layer/weight:0`. Strings are bytes, as h5py wrote them then.

  Args:
    model: the Keras model.
    path: the file to write.
    caffe_names: use Keras 2.2.4's Caffe-style layer names (`res2a_branch2a`).
    truncate: keep only this many bytes of the file (a damaged download).

  Returns:
    `path`.
  """
  rename = caffe_layer_name if caffe_names else (lambda n: n)
  with h5py.File(path, "w") as f:
    f.attrs["layer_names"] = [rename(l.name).encode() for l in model.layers]
    f.attrs["backend"] = b"tensorflow"
    f.attrs["keras_version"] = b"2.2.4"
    for layer in model.layers:
      name = rename(layer.name)
      group = f.create_group(name)
      weights = ([w for w in layer.weights if w.trainable]
                 + [w for w in layer.weights if not w.trainable])
      names = [f"{name}/{w.path.split('/')[-1]}:0" for w in weights]
      group.attrs["weight_names"] = [n.encode() for n in names]
      for weight_name, weight in zip(names, weights):
        group.create_dataset(weight_name, data=np.asarray(weight.numpy()))
  if truncate is not None:
    with open(path, "r+b") as f:
      f.truncate(truncate)
  return path


def torchvision_resnet(depth: int, num_classes: Optional[int] = 1000,
                       seed: int = 0):
  """A PyTorch ResNet with torchvision's exact structure and module names.

  torchvision itself does not import beside the torch these machines
  install, so the network is written here: `conv1`, `bn1`, `layer1.0.conv1`,
  `layer1.0.downsample.0/1`, `fc`; v1.5 bottlenecks (stride on the 3x3),
  `MaxPool2d(3, 2, padding=1)`, BN epsilon 1e-5. Random weights and BN
  statistics.

  Args:
    depth: 18, 34, 50, 101 or 152.
    num_classes: classifier outputs; None for no `fc` (a headless file).
    seed: for the random weights.

  Returns:
    The `torch.nn.Module` in eval mode, taking NCHW floats normalized as
    torchvision's transforms do.
  """
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top

  class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride, downsample):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(width)
      self.relu = nn.ReLU(inplace=True)
      self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(width)
      self.downsample = downsample

    def forward(self, x):
      out = self.relu(self.bn1(self.conv1(x)))
      out = self.bn2(self.conv2(out))
      shortcut = x if self.downsample is None else self.downsample(x)
      return self.relu(out + shortcut)

  class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride, downsample):
      super().__init__()
      self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
      self.bn1 = nn.BatchNorm2d(width)
      self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
      self.bn2 = nn.BatchNorm2d(width)
      self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
      self.bn3 = nn.BatchNorm2d(width * 4)
      self.relu = nn.ReLU(inplace=True)
      self.downsample = downsample

    def forward(self, x):
      out = self.relu(self.bn1(self.conv1(x)))
      out = self.relu(self.bn2(self.conv2(out)))
      out = self.bn3(self.conv3(out))
      shortcut = x if self.downsample is None else self.downsample(x)
      return self.relu(out + shortcut)

  blocks = {18: (Basic, (2, 2, 2, 2)), 34: (Basic, (3, 4, 6, 3)),
            50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3)),
            152: (Bottleneck, (3, 8, 36, 3))}
  block, counts = blocks[depth]

  class ResNet(nn.Module):

    def __init__(self):
      super().__init__()
      self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
      self.bn1 = nn.BatchNorm2d(64)
      self.relu = nn.ReLU(inplace=True)
      self.maxpool = nn.MaxPool2d(3, 2, 1)
      cin = 64
      for i, (width, count) in enumerate(zip((64, 128, 256, 512), counts)):
        layers = []
        for j in range(count):
          stride = 2 if i > 0 and j == 0 else 1
          downsample = None
          if stride != 1 or cin != width * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(cin, width * block.expansion, 1, stride,
                          bias=False),
                nn.BatchNorm2d(width * block.expansion))
          layers.append(block(cin, width, stride, downsample))
          cin = width * block.expansion
        setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
      self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
      self.fc = nn.Linear(cin, num_classes) if num_classes else None

    def forward(self, x):
      x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
      for i in range(1, 5):
        x = getattr(self, f"layer{i}")(x)
      x = torch.flatten(self.avgpool(x), 1)
      return self.fc(x) if self.fc is not None else x

  torch.manual_seed(seed)
  model = ResNet()
  with torch.no_grad():
    for module in model.modules():
      # He-initialised weights (torch's defaults are smaller), so that the
      # logits depend on the image, not only on the biases.
      if isinstance(module, (nn.Conv2d, nn.Linear)):
        fan_in = module.weight[0].numel()
        module.weight.normal_(0, (2.0 / fan_in) ** 0.5)
      if isinstance(module, nn.BatchNorm2d):
        module.weight.uniform_(0.5, 1.0)
        module.bias.normal_(0, 0.05)
        module.running_mean.normal_(0, 0.05)
        module.running_var.uniform_(0.5, 2.0)
      elif isinstance(module, nn.Linear):
        module.bias.normal_(0, 0.01)
  return model.eval()


def torchvision_preprocess(images: np.ndarray):
  """uint8 NHWC images as torchvision's ToTensor + Normalize give them (NCHW)."""
  import torch  # pylint: disable=g-import-not-at-top
  x = images.astype(np.float32) / 255.0
  x = (x - np.asarray([0.485, 0.456, 0.406], np.float32)) / np.asarray(
      [0.229, 0.224, 0.225], np.float32)
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def random_images(height: int, width: int, count: int = 2,
                  seed: int = 0) -> np.ndarray:
  """uint8 [count, height, width, 3] random images (decoded pixels).

  Coarse random blocks of colour plus pixel noise: unlike pure noise, which
  global average pooling turns into nearly the same features for every
  image, different images get clearly different logits.
  """
  rng = np.random.default_rng(seed)
  coarse = rng.uniform(0, 255, (count, height // 16 + 1, width // 16 + 1, 3))
  pixels = coarse.repeat(16, axis=1).repeat(16, axis=2)[:, :height, :width]
  pixels = pixels + rng.normal(0, 20, pixels.shape)
  return np.clip(pixels, 0, 255).round().astype(np.uint8)
