"""The paper's published sizes and costs, the independent truth our counts are checked against.

He et al. (2015), "Deep Residual Learning for Image Recognition": Table 1 and
Fig. 3 give multiply-adds ("FLOPs") for a 224x224 image; Table 6 gives the
CIFAR-10 networks' parameters and test errors. The paper prints two
significant figures and truncates as often as it rounds (ResNet-34 counts
3.66e9 and is printed 3.6), so comparisons allow a 2% relative difference.
"""

from typing import Optional

from tf_resnet import families

# (architecture, depth) -> multiply-adds for one 224x224 image.
IMAGENET_MULTIPLY_ADDS = {
    ("resnet", 18): 1.8e9,   # Table 1
    ("resnet", 34): 3.6e9,   # Table 1
    ("resnet", 50): 3.8e9,   # Table 1
    ("resnet", 101): 7.6e9,  # Table 1
    ("resnet", 152): 11.3e9,  # Table 1
    ("plain", 18): 1.8e9,    # Table 1 (the 18-layer column)
    ("plain", 34): 3.6e9,    # Fig. 3
    ("vgg19", 19): 19.6e9,   # Fig. 3
}

# depth -> trainable parameters of the CIFAR-10 ResNet (option A), Table 6.
CIFAR_PARAMS = {
    20: 0.27e6,
    32: 0.46e6,
    44: 0.66e6,
    56: 0.85e6,
    110: 1.7e6,
    1202: 19.4e6,
}

# A family's `published_cost` -> (architecture, depth) -> the printed figure.
PUBLISHED_COSTS = {
    "multiply_adds": IMAGENET_MULTIPLY_ADDS,
    "params": {("resnet", depth): params
               for depth, params in CIFAR_PARAMS.items()},
}

# depth -> CIFAR-10 test error (%) of the ResNet (option A), Table 6: the
# single 32x32 view, trained 64k iterations on the 45k/5k split's 45k images.
# (For ResNet-110 Table 6 prints the best of 5 runs, "6.61+-0.16" on average.)
CIFAR_TEST_ERROR = {
    20: 8.75,
    32: 7.51,
    44: 7.17,
    56: 6.97,
    110: 6.43,
    1202: 7.93,
}

# depth -> CIFAR-10 test error (%) of the plain nets at the end of training.
# The paper gives these only as curves (Figs. 1 and 6); these are readings of
# the plot, good to about a point, not published numbers.
CIFAR_PLAIN_TEST_ERROR_READ_OFF_FIG6 = {
    20: (8.0, 10.0),
    56: (13.0, 15.0),
}

RELATIVE_TOLERANCE = 0.02


def reference(family: str, architecture: str, depth: int,
              shortcut: Optional[str] = None) -> dict[str, float]:
  """The paper's figures for a network: `params` and/or `multiply_adds`, if published.

  Table 1's costs are those of the networks the paper uses (shortcut options
  A and B differ by under 1%); option C's projections on every block add
  about 5% and have no published figure.
  """
  figures = {}
  if shortcut == "C":
    return figures
  cost = families.get(family).published_cost
  value = PUBLISHED_COSTS[cost].get((architecture, depth))
  if value is not None:
    figures[cost] = value
  return figures


def agrees(ours: float, papers: float) -> bool:
  """Whether a count agrees with the paper's printed figure."""
  return abs(ours - papers) <= RELATIVE_TOLERANCE * papers
