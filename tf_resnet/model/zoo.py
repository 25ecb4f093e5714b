"""The model zoo: a frozen, validated description of a network, and the network it builds.

Binaries turn their flags into a `ModelConfig`; the config checks itself on
construction (so a bad depth fails before anything is built) and builds the
`tf.Module`.
"""

import dataclasses
from typing import Optional, Union

from tf_resnet import families
from tf_resnet.model import resnet
from tf_resnet.model import vgg

ARCHITECTURES = ("resnet", "plain", "vgg19")
MAX_POOL_PADDINGS = ("ceil", "symmetric")

Network = Union[resnet.ResNet, vgg.VGG]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Which network to build.

  Attributes:
    family: `imagenet` (224x224 inputs, Table 1) or `cifar` (32x32 inputs,
      section 4.2).
    architecture: `resnet`, `plain` (the same stack without shortcuts) or
      `vgg19` (ImageNet only).
    depth: weight layers; None for the family's default (34 on ImageNet, 20
      on CIFAR, 19 for VGG). ImageNet: 18, 34, 50, 101, 152. CIFAR: 6n+2.
    shortcut: `A`, `B` or `C` for a ResNet; None for the paper's choice
      (B on ImageNet, A on CIFAR). Plain nets and VGG have none.
    num_classes: classifier outputs; None for the family's (1000 or 10).
    stride_on_3x3: bottleneck stride on the 3x3 ("v1.5"; not the paper's).
    zero_init_last_bn: zero-initialise each residual branch's last BN scale
      (not the paper's).
    sync_batch_norm: batch statistics over all replicas instead of each
      replica's own (not the paper's; makes N replicas equal one device).
    max_pool_padding: the ImageNet stem's 3x3/2 max-pool grid. `ceil`:
      Caffe's ceil-mode pooling, the paper's (default). `symmetric`: padding
      1 on every side, floor mode, as Keras's and torchvision's ResNets;
      models converted from them record it (`tf_resnet.convert`).
  """

  family: str = "imagenet"
  architecture: str = "resnet"
  depth: Optional[int] = None
  shortcut: Optional[str] = None
  num_classes: Optional[int] = None
  stride_on_3x3: bool = False
  zero_init_last_bn: bool = False
  sync_batch_norm: bool = False
  # Last, with a default: config.json files written before it still load.
  max_pool_padding: str = "ceil"

  def __post_init__(self):
    family = families.get(self.family)
    if self.architecture not in ARCHITECTURES:
      raise ValueError(f"`architecture` must be one of {ARCHITECTURES}, "
                       f"not {self.architecture!r}")
    if self.architecture not in family.architectures:
      raise ValueError("VGG-19 is the paper's ImageNet reference and needs "
                       "224x224 inputs: use it with the ImageNet family")
    if self.depth is None:
      object.__setattr__(self, "depth",
                         family.default_depth[self.architecture])
    if self.architecture == "vgg19":
      if self.depth != 19:
        raise ValueError(f"VGG has depth 19 (configuration E), not "
                         f"{self.depth}")
    else:
      _LAYOUTS[family.layout][0](self.depth)  # Raises for a bad depth.
    if self.architecture == "resnet":
      if self.shortcut is None:
        object.__setattr__(self, "shortcut", family.default_shortcut)
      elif self.shortcut not in resnet.SHORTCUTS:
        raise ValueError(f"`shortcut` must be one of {resnet.SHORTCUTS}, "
                         f"not {self.shortcut!r}")
    elif self.shortcut is not None:
      raise ValueError(f"{self.architecture} networks have no shortcuts; "
                       f"`shortcut` must be unset, not {self.shortcut!r}")
    if self.num_classes is None:
      object.__setattr__(self, "num_classes", family.num_classes)
    elif self.num_classes < 1:
      raise ValueError(
          f"`num_classes` must be positive, not {self.num_classes}")
    if self.architecture != "resnet" and self.zero_init_last_bn:
      raise ValueError("`zero_init_last_bn` applies to residual networks only")
    if self.stride_on_3x3 and not (self.architecture != "vgg19"
                                   and family.bottleneck_min_depth is not None
                                   and self.depth
                                   >= family.bottleneck_min_depth):
      raise ValueError("`stride_on_3x3` applies to bottleneck networks "
                       "(ImageNet depth 50, 101, 152) only")
    if self.max_pool_padding not in MAX_POOL_PADDINGS:
      raise ValueError(f"`max_pool_padding` must be one of "
                       f"{MAX_POOL_PADDINGS}, not {self.max_pool_padding!r}")
    if (self.max_pool_padding != "ceil"
        and (not family.stem_max_pool or self.architecture == "vgg19")):
      raise ValueError("`max_pool_padding` applies to the ImageNet ResNet and "
                       "plain stems only (CIFAR networks have no max pool; "
                       "VGG's 2x2 pools need none)")

  @property
  def input_size(self) -> int:
    """Height and width of the training crops."""
    return families.get(self.family).input_size

  @property
  def display_name(self) -> str:
    """The paper's name for the network, e.g. `ResNet-34 (B)` or `plain-20`."""
    if self.architecture == "vgg19":
      return "VGG-19"
    if self.architecture == "plain":
      return f"plain-{self.depth}"
    return f"ResNet-{self.depth} ({self.shortcut})"


def build_model(config: ModelConfig) -> Network:
  """Builds the network a config describes, with freshly initialised weights."""
  if config.architecture == "vgg19":
    return vgg.vgg19(num_classes=config.num_classes,
                     sync_batch_norm=config.sync_batch_norm)
  options = dict(num_classes=config.num_classes,
                 zero_init_last_bn=config.zero_init_last_bn,
                 sync_batch_norm=config.sync_batch_norm)
  shortcut = config.shortcut if config.architecture == "resnet" else None
  build = _LAYOUTS[families.get(config.family).layout][1]
  return build(config, shortcut, options)


def _table1(config: ModelConfig, shortcut, options) -> resnet.ResNet:
  return resnet.imagenet_resnet(config.depth, shortcut=shortcut,
                                stride_on_3x3=config.stride_on_3x3,
                                max_pool_padding=config.max_pool_padding,
                                **options)


def _six_n_plus_2(config: ModelConfig, shortcut, options) -> resnet.ResNet:
  return resnet.cifar_resnet(config.depth, shortcut=shortcut, **options)


# A family's layout (`families.Family.layout`): its depth check and builder.
_LAYOUTS = {
    "table1": (resnet.imagenet_stages, _table1),
    "6n+2": (resnet.cifar_blocks_per_stage, _six_n_plus_2),
}
