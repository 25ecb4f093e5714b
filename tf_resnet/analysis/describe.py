"""A network's architecture in the layout of the paper's Table 1, with its sizes and costs.

Everything shown is read off the built modules: output sizes and
multiply-adds from a profiled call (`cost.profile`), layer descriptions from
the modules' own `describe()`. The paper's published figures are shown beside
ours, never instead of them.
"""

import dataclasses
from typing import Any, Optional, Sequence

from tf_resnet.analysis import cost
from tf_resnet.analysis import paper
from tf_resnet.model import zoo


@dataclasses.dataclass(frozen=True)
class Row:
  """One row of the table: a stem, stage or head.

  Attributes:
    name: the module's name (`stem`, `stage_1`, ..., `head`).
    paper_name: the paper's name for it (`conv1`, `conv2_x`, ..., `fc`).
    output_shape: (height, width, channels) of its output for the profiled
      input size.
    layers: its layers in Table 1's notation, one string per line.
    multiply_adds: multiply-adds of its convolutions and linear layers.
  """

  name: str
  paper_name: str
  output_shape: tuple[int, ...]
  layers: tuple[str, ...]
  multiply_adds: int


@dataclasses.dataclass(frozen=True)
class Summary:
  """A network's table, totals and the paper's figures for it."""

  config: zoo.ModelConfig
  input_size: int
  rows: tuple[Row, ...]
  params: int
  multiply_adds: int
  paper: dict[str, float]

  def to_json(self) -> dict[str, Any]:
    """A JSON-serialisable form: totals, the paper's figures and the rows."""
    return {
        "model": self.config.display_name,
        "family": self.config.family,
        "architecture": self.config.architecture,
        "depth": self.config.depth,
        "shortcut": self.config.shortcut,
        "num_classes": self.config.num_classes,
        "input_size": self.input_size,
        "params": self.params,
        "multiply_adds": self.multiply_adds,
        "paper_params": self.paper.get("params"),
        "paper_multiply_adds": self.paper.get("multiply_adds"),
        "rows": [dataclasses.asdict(r) for r in self.rows],
    }


def summarize(config: zoo.ModelConfig,
              input_size: Optional[int] = None) -> Summary:
  """Builds the network of `config` and summarizes it.

  Args:
    config: the network.
    input_size: square input size to profile at; default the family's
      training crop (224 or 32), at which the paper's figures hold.

  Returns:
    The network's `Summary`.
  """
  size = input_size or config.input_size
  network = zoo.build_model(config)
  prof = cost.profile(network, (size, size, 3))
  stages = {r.path: r for r in prof.find("stage")}
  rows = []
  if hasattr(network, "stem"):
    stem_out = prof.find("max_pool") or prof.find("stem_conv")
    rows.append(Row("stem", "conv1", stem_out[-1].output_shape,
                    tuple(network.stem.describe()),
                    prof.multiply_adds_under("stem")))
  first_stage = 2 if hasattr(network, "stem") else 1
  for i, stage in enumerate(network.stages):
    name = f"stage_{i + 1}"
    rows.append(Row(name, f"conv{i + first_stage}_x",
                    stages[name].output_shape, (stage.describe(),),
                    prof.multiply_adds_under(name)))
  rows.append(Row("head", "fc", (1, 1, config.num_classes),
                  (network.head.describe(),),
                  prof.multiply_adds_under("head")))
  return Summary(config=config, input_size=size, rows=tuple(rows),
                 params=prof.params, multiply_adds=prof.multiply_adds,
                 paper=(paper.reference(config.family, config.architecture,
                                        config.depth, config.shortcut)
                        if size == config.input_size else {}))


def paper_configs() -> list[zoo.ModelConfig]:
  """Every network the paper trains or reports, in its order."""
  configs = [zoo.ModelConfig("imagenet", "vgg19")]
  configs += [zoo.ModelConfig("imagenet", "plain", d) for d in (18, 34)]
  configs += [zoo.ModelConfig("imagenet", "resnet", 18)]
  configs += [zoo.ModelConfig("imagenet", "resnet", 34, s) for s in "ABC"]
  configs += [zoo.ModelConfig("imagenet", "resnet", d) for d in (50, 101, 152)]
  configs += [zoo.ModelConfig("cifar", "plain", d) for d in (20, 32, 44, 56)]
  configs += [zoo.ModelConfig("cifar", "resnet", d)
              for d in (20, 32, 44, 56, 110, 1202)]
  return configs


def human(count: float) -> str:
  """A count in the paper's style: 0.27M, 3.66G."""
  for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
    if count >= scale:
      return f"{count / scale:.2f}{unit}"
  return str(int(count))


def _paper_cell(ours: float, papers: Optional[float]) -> str:
  if papers is None:
    return "-"
  mark = "ok" if paper.agrees(ours, papers) else "DIFFERS"
  return f"{human(papers)} ({mark})"


def format_table(summary: Summary) -> str:
  """The summary as a text table in the layout of the paper's Table 1."""
  c = summary.config
  title = (f"{c.display_name}, {c.family} family, {summary.input_size}x"
           f"{summary.input_size} input, {c.num_classes} classes")
  header = ("layer", "paper", "output size", "layers", "multiply-adds")
  lines = []
  for row in summary.rows:
    h, w, ch = row.output_shape
    for j, text in enumerate(row.layers):
      first = j == 0
      lines.append((row.name if first else "", row.paper_name if first else "",
                    f"{h}x{w}x{ch}" if first else "", text,
                    human(row.multiply_adds) if first else ""))
  widths = [max(len(x[i]) for x in [header] + lines) for i in range(5)]
  fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {:>%d}" % widths[-1]
  out = [title, "", fmt.format(*header), fmt.format(*("-" * w for w in widths))]
  out += [fmt.format(*line).rstrip() for line in lines]
  out += ["",
          f"parameters:     {summary.params:,} ({human(summary.params)})"
          f"   paper: {_paper_cell(summary.params, summary.paper.get('params'))}",
          f"multiply-adds:  {summary.multiply_adds:,} "
          f"({human(summary.multiply_adds)})   paper: "
          f"{_paper_cell(summary.multiply_adds, summary.paper.get('multiply_adds'))}"]
  return "\n".join(out)


def format_zoo(summaries: Sequence[Summary]) -> str:
  """One line per network: our parameters and multiply-adds beside the paper's."""
  header = ("network", "family", "input", "params", "paper",
            "multiply-adds", "paper")
  lines = [(s.config.display_name, s.config.family,
            f"{s.input_size}x{s.input_size}", human(s.params),
            _paper_cell(s.params, s.paper.get("params")),
            human(s.multiply_adds),
            _paper_cell(s.multiply_adds, s.paper.get("multiply_adds")))
           for s in summaries]
  widths = [max(len(x[i]) for x in [header] + lines) for i in range(7)]
  fmt = "  ".join(f"{{:<{w}}}" for w in widths)
  out = [fmt.format(*header), fmt.format(*("-" * w for w in widths))]
  out += [fmt.format(*line).rstrip() for line in lines]
  out.append("")
  out.append(f"'ok': within {paper.RELATIVE_TOLERANCE:.0%} of the paper's "
             "printed figure (two significant digits). Paper: He et al. "
             "(2015), Table 1, Fig. 3 and Table 6.")
  return "\n".join(out)
