"""The paper's two network families, and the runs it trained them with, in one registry.

Everything the paper fixes per family lives here, once: the input size and
classes, the default depth and shortcut option, the test scales, and the
training recipe (batch, iterations, learning-rate schedule, evaluation
cadence, validation split, warm-up). The model zoo, the data pipeline, the
exporter and the training binary read it from here, so a library user
(`training.config.paper_config`) gets the same defaults as the command line
(Model Garden's `exp_factory` and flax's `configs/default.py` in spirit).

No TensorFlow here: binaries import it before TensorFlow loads.
"""

import dataclasses
from typing import Mapping, Optional


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How the paper trained a family.

  Attributes:
    batch_size: the global mini-batch.
    train_steps: iterations.
    schedule: `plateau` (divide the rate when the validation error stops
      improving) or `steps` (divide at `lr_boundaries`).
    lr_boundaries: the `steps` schedule's iterations.
    eval_every_steps: validation cadence.
    holdout: training examples of the paper's data set held out as the
      validation split that makes every decision (schedule, best model).
    plateau_patience: evaluations without improvement before the rate falls.
    plateau_threshold: the smallest fall of the validation top-1 error that
      counts as an improvement.
    min_learning_rate: the plateau schedule's floor.
    warmup_learning_rate: the rate of the warm-up (section 4.2: 0.01).
    warmup_min_depth: residual nets this deep or deeper warm up; None: none.
  """

  batch_size: int
  train_steps: int
  schedule: str
  lr_boundaries: tuple[int, ...]
  eval_every_steps: int
  holdout: int
  plateau_patience: int = 3
  plateau_threshold: float = 0.001
  min_learning_rate: float = 0.0
  warmup_learning_rate: Optional[float] = None
  warmup_min_depth: Optional[int] = None

  def warmup_for(self, architecture: str, depth: int) -> Optional[float]:
    """The warm-up rate the paper used for this network, or None."""
    if (self.warmup_min_depth is not None and architecture == "resnet"
        and depth >= self.warmup_min_depth):
      return self.warmup_learning_rate
    return None


@dataclasses.dataclass(frozen=True)
class Family:
  """A network family of the paper and its data set.

  Attributes:
    name: `imagenet` or `cifar`.
    dataset: the paper's data set for it (a `tf_resnet.data` spec).
    description: a line for help texts.
    input_size: training crops are input_size x input_size.
    num_classes: the paper's data set's classes.
    architectures: what the family can build.
    default_depth: by architecture.
    default_shortcut: the paper's shortcut option for its residual nets.
    test_scales: shorter sides of multi-scale testing; () when the family is
      tested on its single native view.
    recipe: how the paper trained it.
    layout: how its networks are laid out: `table1` (Table 1: a 7x7/2
      stem, a 3x3/2 max pool, four stages) or `6n+2` (section 4.2: a 3x3
      stem, three stages of 2n 3x3 layers).
    bottleneck_min_depth: residual and plain nets this deep or deeper use
      bottleneck blocks (Table 1: 50); None: never.
    stem_max_pool: whether the stem ends in a max pool.
    train_augmentation: `scale` (section 3.4: shorter side in [256, 480],
      224x224 crop, flip, colour) or `pad_crop` (section 4.2: 4 pixels of
      padding, 32x32 crop, flip).
    single_view: the one-view test input: `center_crop` (the centre crop of
      the image resized to shorter side 256) or `original` (the image
      itself, at input_size).
    eval_modes: the test modes the paper used for the family.
    published_cost: what the paper printed for its networks' cost:
      `multiply_adds` (Table 1's FLOPs) or `params` (Table 6).
  """

  name: str
  dataset: str
  description: str
  input_size: int
  num_classes: int
  architectures: tuple[str, ...]
  default_depth: Mapping[str, int]
  default_shortcut: str
  test_scales: tuple[int, ...]
  recipe: Recipe
  layout: str
  bottleneck_min_depth: Optional[int]
  stem_max_pool: bool
  train_augmentation: str
  single_view: str
  eval_modes: tuple[str, ...]
  published_cost: str

  @property
  def multiscale_testing(self) -> bool:
    """Whether the family is tested on whole images at several scales."""
    return bool(self.test_scales)


IMAGENET = Family(
    name="imagenet",
    dataset="imagenet2012",
    description=("ImageNet (Table 1: 7x7/2 stem, four stages, 224x224 crops, "
                 "1000 classes)"),
    input_size=224,
    num_classes=1000,
    architectures=("resnet", "plain", "vgg19"),
    default_depth={"resnet": 34, "plain": 34, "vgg19": 19},
    default_shortcut="B",
    test_scales=(224, 256, 384, 480, 640),  # Section 3.4.
    recipe=Recipe(
        batch_size=256,
        train_steps=600_000,  # "up to 60 x 10^4 iterations".
        schedule="plateau",
        lr_boundaries=(),
        eval_every_steps=5000,
        # The paper reports on the validation set, so decisions need their
        # own split: 50,000 training images (3.9%, the size of the official
        # validation set, ~50 per class: top-1 error to about +-0.2%).
        holdout=50_000,
        plateau_patience=3,
        plateau_threshold=0.001,
        # "starts from 0.1 and is divided by 10 when the error plateaus":
        # the released models went 0.1 -> 0.01 -> 0.001.
        min_learning_rate=0.001,
    ),
    layout="table1",
    bottleneck_min_depth=50,
    stem_max_pool=True,
    train_augmentation="scale",
    single_view="center_crop",
    eval_modes=("center", "10crop", "multiscale"),  # Section 3.4.
    published_cost="multiply_adds",
)

CIFAR = Family(
    name="cifar",
    dataset="cifar10",
    description=("CIFAR-10 (section 4.2: 6n+2 layers, 32x32 images, 10 "
                 "classes)"),
    input_size=32,
    num_classes=10,
    architectures=("resnet", "plain"),
    default_depth={"resnet": 20, "plain": 20},
    default_shortcut="A",
    test_scales=(),  # "only evaluate the single view of the original".
    recipe=Recipe(
        batch_size=128,
        train_steps=64_000,
        schedule="steps",
        lr_boundaries=(32_000, 48_000),
        eval_every_steps=2000,
        holdout=5000,  # "a 45k/5k train/val split".
        warmup_learning_rate=0.01,  # ResNet-110 (and 1202): 0.01 until the
        warmup_min_depth=110,       # training error is below 80%.
    ),
    layout="6n+2",
    bottleneck_min_depth=None,
    stem_max_pool=False,
    train_augmentation="pad_crop",
    single_view="original",
    eval_modes=("center",),
    published_cost="params",
)

FAMILIES: Mapping[str, Family] = {f.name: f for f in (IMAGENET, CIFAR)}
NAMES = tuple(FAMILIES)

# Data sets whose family the data fixes: the paper's, and the embedded
# handwritten digits, which are small images like CIFAR's.
DATASET_FAMILIES: Mapping[str, str] = {
    IMAGENET.dataset: IMAGENET.name, CIFAR.dataset: CIFAR.name,
    "digits": CIFAR.name}


def get(name: str) -> Family:
  """The family called `name`.

  Raises:
    ValueError: for an unknown name, listing the known ones.
  """
  try:
    return FAMILIES[name]
  except KeyError:
    raise ValueError(f"`family` must be one of {NAMES}, not {name!r}") from None


def paper_holdout(dataset: str) -> int:
  """The validation split the paper's recipe holds out of `dataset` (0: none).

  Only the paper's own data sets have one; another data set's size is not
  known here, so its holdout is the user's choice.
  """
  for family in FAMILIES.values():
    if family.dataset == dataset:
      return family.recipe.holdout
  return 0
