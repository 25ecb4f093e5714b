"""The paper's CIFAR-10 figures, redrawn from run logs with matplotlib.

`learning_curves` is Fig. 6's layout: training error dashed, test error bold,
against iterations; plain networks in the left panel, ResNets in the next
one, one colour per depth in both so that plain-56 and ResNet-56 match.
`layer_responses` is Fig. 7's: the standard deviation of every 3x3 layer's
response in forward order (top) and sorted by magnitude (bottom).

Figures are built on `matplotlib.figure.Figure` (no pyplot, no global state,
no display needed) and returned, so that callers choose where to save them
and tests can read back what was drawn.
"""

import math
from typing import Mapping, Optional, Sequence

from matplotlib.figure import Figure

from tf_resnet.analysis import responses as responses_lib
from tf_resnet.reporting import logs

TRAIN_STYLE = dict(linestyle="--", linewidth=1.0)
TEST_STYLE = dict(linestyle="-", linewidth=2.5)
PANELS = (("plain", "plain networks"), ("resnet", "ResNets"))
_COLORS = ("tab:orange", "tab:blue", "tab:red", "tab:green", "tab:purple",
           "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")


def _depth_colors(depths) -> dict[int, str]:
  return {d: _COLORS[i % len(_COLORS)] for i, d in enumerate(sorted(depths))}


def _error_ceiling(runs: Sequence[logs.RunLog]) -> float:
  """A y range, in %, that shows where the curves end (as the paper's does)."""
  finals = [100 * c.last for r in runs for c in (r.train_error, r.test_error)
            if c]
  if not finals:
    return 100.0
  return float(min(100, 10 * math.ceil(1.6 * max(finals) / 10)))


def learning_curves(runs: Sequence[logs.RunLog],
                    y_max: Optional[float] = None) -> Figure:
  """Fig. 6: training (dashed) and test (bold) error against iterations.

  Args:
    runs: the runs; plain nets go in the left panel, ResNets in the right.
      Runs of other architectures are left out.
    y_max: top of the error axis in %; default a ceiling that shows the
      final errors.

  Returns:
    The figure: one axes per architecture present, titled after it.

  Raises:
    ValueError: if no run is a plain or residual network.
  """
  panels = [(arch, title, [r for r in runs if r.architecture == arch])
            for arch, title in PANELS]
  panels = [p for p in panels if p[2]]
  if not panels:
    raise ValueError("no plain or residual network among the runs")
  colors = _depth_colors({r.depth for _, _, rs in panels for r in rs})
  top = y_max or _error_ceiling([r for _, _, rs in panels for r in rs])
  figure = Figure(figsize=(5.2 * len(panels), 4.2), layout="constrained")
  axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
  for ax, (_, title, panel_runs) in zip(axes, panels):
    boundaries = set()
    for run in sorted(panel_runs, key=lambda r: r.depth):
      color = colors[run.depth]
      # One legend entry per net (its bold line), as in the paper.
      ax.plot(run.train_error.steps,
              [100 * v for v in run.train_error.values], color=color,
              label="_nolegend_" if run.test_error else run.name,
              **TRAIN_STYLE)
      if run.test_error:
        ax.plot(run.test_error.steps,
                [100 * v for v in run.test_error.values], color=color,
                label=run.name, **TEST_STYLE)
      if run.config["schedule"].get("kind") == "steps":
        boundaries.update(run.config["schedule"].get("boundaries") or ())
    for b in sorted(boundaries):
      ax.axvline(b, color="0.75", linewidth=0.8, linestyle=":", zorder=0)
    ax.set_title(title)
    ax.set_xlabel("iterations")
    ax.set_ylim(0, top)
    ax.set_xlim(0, max(r.planned_steps for r in panel_runs))
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.legend(fontsize="small", loc="upper right")
  axes[0].set_ylabel("error (%)")
  figure.suptitle("CIFAR-10: training error (dashed) and test error (bold); "
                  "dotted: learning rate / 10", fontsize="medium")
  return figure


def layer_responses(
    responses: Mapping[str, Sequence[responses_lib.LayerResponse]]) -> Figure:
  """Fig. 7: standard deviations of the 3x3 layers' responses.

  Args:
    responses: network name (e.g. `plain-20`) to its layers' responses, in
      forward order; drawn in the mapping's order.

  Returns:
    The figure: layers in their original order (top), sorted by std (bottom).

  Raises:
    ValueError: if there is nothing to draw.
  """
  if not responses or not any(responses.values()):
    raise ValueError("no layer responses to draw")
  figure = Figure(figsize=(7.0, 6.4), layout="constrained")
  top, bottom = figure.subplots(2, 1)
  for i, (name, layers) in enumerate(responses.items()):
    color = _COLORS[i % len(_COLORS)]
    stds = [r.std for r in layers]
    top.plot([r.index for r in layers], stds, color=color, linewidth=1.2,
             label=name)
    bottom.plot(range(1, len(stds) + 1), sorted(stds, reverse=True),
                color=color, linewidth=1.2, label=name)
  top.set_xlabel("layer index (original)")
  bottom.set_xlabel("layer index (sorted by magnitude)")
  for ax in (top, bottom):
    ax.set_ylabel("std")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.grid(True, linewidth=0.3, alpha=0.5)
    ax.legend(fontsize="small", loc="upper right")
  figure.suptitle("CIFAR-10: standard deviations of the 3x3 layers' "
                  "responses (after BN, before ReLU/addition)",
                  fontsize="medium")
  return figure
