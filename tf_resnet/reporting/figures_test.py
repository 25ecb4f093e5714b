"""Tests that the figures draw what the logs and measurements hold, in the paper's layout."""

import os
import tempfile

from absl.testing import absltest
import matplotlib.image

from tf_resnet.analysis import responses
from tf_resnet.reporting import figures
from tf_resnet.reporting import logs
from tf_resnet.reporting import testing


def _run(root, architecture, depth, final_error):
  return logs.read_run(testing.write_run(
      os.path.join(root, f"{architecture}{depth}"), architecture=architecture,
      depth=depth,
      train=[(100, 0.7, 10.0, 1.0), (200, 0.4, 10.0, 2.0),
             (300, final_error - 0.02, 10.0, 3.0)],
      evals=[(100, 0.72, 1.5), (300, final_error + 0.01, 3.5)],
      tests=[(100, 0.71, 1.6), (300, final_error, 3.6)]))


class LearningCurvesTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.root = tempfile.mkdtemp()
    self.runs = [_run(self.root, "plain", 20, 0.20),
                 _run(self.root, "plain", 56, 0.30),
                 _run(self.root, "resnet", 20, 0.18),
                 _run(self.root, "resnet", 56, 0.15)]

  def test_plain_left_resnets_right_train_dashed_test_bold(self):
    figure = figures.learning_curves(self.runs)
    left, right = figure.axes
    self.assertEqual(left.get_title(), "plain networks")
    self.assertEqual(right.get_title(), "ResNets")
    for ax, arch in ((left, "plain"), (right, "resnet")):
      runs = [r for r in self.runs if r.architecture == arch]
      lines = ax.get_lines()
      dashed = [l for l in lines if l.get_linestyle() == "--"]
      bold = [l for l in lines if l.get_linestyle() == "-"
              and l.get_linewidth() == figures.TEST_STYLE["linewidth"]]
      self.assertLen(dashed, 2)
      self.assertLen(bold, 2)
      for line, run in zip(dashed, runs):
        self.assertEqual(tuple(line.get_xdata()), run.train_error.steps)
        self.assertEqual(tuple(line.get_ydata()),
                         tuple(100 * v for v in run.train_error.values))
      for line, run in zip(bold, runs):
        self.assertEqual(line.get_label(), run.name)
        self.assertEqual(tuple(line.get_ydata()),
                         tuple(100 * v for v in run.test_error.values))
      # The learning-rate drops of the schedule, dotted.
      self.assertEqual(
          sorted(l.get_xdata()[0] for l in lines if l.get_linestyle() == ":"),
          [150, 225])
    # The same depth has the same colour in both panels.
    colors = {ax.get_title(): {l.get_label(): l.get_color()
                               for l in ax.get_lines()} for ax in figure.axes}
    self.assertEqual(colors["plain networks"]["plain-56"],
                     colors["ResNets"]["ResNet-56"])
    self.assertNotEqual(colors["ResNets"]["ResNet-20"],
                        colors["ResNets"]["ResNet-56"])
    # The axis reaches above every final error (here 30% * 1.6 -> 50%).
    self.assertEqual(left.get_ylim(), (0.0, 50.0))

  def test_saves_a_png(self):
    path = os.path.join(self.root, "curves.png")
    figures.learning_curves(self.runs).savefig(path, dpi=50)
    image = matplotlib.image.imread(path)
    self.assertEqual(image.shape[2], 4)
    self.assertGreater(image.shape[1], image.shape[0])  # Two panels side by side.
    self.assertGreater(image[..., :3].std(), 0.05)  # Not blank.

  def test_only_one_architecture_gives_one_panel(self):
    figure = figures.learning_curves(self.runs[2:])
    self.assertLen(figure.axes, 1)
    self.assertEqual(figure.axes[0].get_title(), "ResNets")

  def test_nothing_to_draw_is_an_error(self):
    vgg = logs.read_run(testing.write_run(
        os.path.join(self.root, "vgg"), architecture="vgg19", depth=19,
        train=[(100, 0.5, 10.0, 1.0)]))
    with self.assertRaisesRegex(ValueError, "no plain or residual"):
      figures.learning_curves([vgg])


class LayerResponsesFigureTest(absltest.TestCase):

  def test_original_order_on_top_sorted_below(self):
    stds = {"plain-20": [0.9, 2.0, 1.1], "ResNet-20": [0.5, 0.3, 0.8]}
    measured = {name: [responses.LayerResponse(i + 1, f"l{i}", s, 10)
                       for i, s in enumerate(values)]
                for name, values in stds.items()}
    figure = figures.layer_responses(measured)
    top, bottom = figure.axes
    self.assertEqual(top.get_xlabel(), "layer index (original)")
    for line, (name, values) in zip(top.get_lines(), stds.items()):
      self.assertEqual(line.get_label(), name)
      self.assertEqual(list(line.get_ydata()), values)
    for line, values in zip(bottom.get_lines(), stds.values()):
      self.assertEqual(list(line.get_ydata()), sorted(values, reverse=True))
    with self.assertRaisesRegex(ValueError, "no layer responses"):
      figures.layer_responses({})


if __name__ == "__main__":
  absltest.main()
