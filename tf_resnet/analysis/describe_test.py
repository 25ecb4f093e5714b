"""Tests of the Table-1-style summary."""

import json

import tensorflow as tf

from tf_resnet.analysis import describe
from tf_resnet.model import zoo


class SummarizeTest(tf.test.TestCase):

  def test_resnet34_rows_follow_table_1(self):
    summary = describe.summarize(zoo.ModelConfig(depth=34))
    self.assertEqual([r.paper_name for r in summary.rows],
                     ["conv1", "conv2_x", "conv3_x", "conv4_x", "conv5_x",
                      "fc"])
    self.assertEqual([r.output_shape[:2] for r in summary.rows],
                     [(56, 56), (56, 56), (28, 28), (14, 14), (7, 7), (1, 1)])
    self.assertEqual(summary.rows[1].layers, ("[3x3, 64; 3x3, 64] x 3",))
    self.assertEqual(summary.rows[3].layers, ("[3x3, 256; 3x3, 256] x 6",))
    self.assertEqual(summary.rows[0].layers,
                     ("7x7, 64, stride 2", "3x3 max pool, stride 2"))
    self.assertEqual(sum(r.multiply_adds for r in summary.rows),
                     summary.multiply_adds)
    self.assertEqual(summary.paper, {"multiply_adds": 3.6e9})

  def test_bottleneck_rows(self):
    summary = describe.summarize(zoo.ModelConfig(depth=50))
    self.assertEqual(summary.rows[4].layers,
                     ("[1x1, 512; 3x3, 512; 1x1, 2048] x 3",))
    self.assertEqual(summary.rows[4].output_shape, (7, 7, 2048))

  def test_larger_input_has_no_paper_figure(self):
    summary = describe.summarize(zoo.ModelConfig(family="cifar", depth=20),
                                 input_size=64)
    self.assertEqual(summary.rows[-2].output_shape, (16, 16, 64))
    self.assertEqual(summary.paper, {})
    small = describe.summarize(zoo.ModelConfig(family="cifar", depth=20))
    # Every layer is convolutional: four times the pixels, four times the
    # cost, except the classifier, which runs once.
    self.assertEqual(summary.multiply_adds - 640,
                     4 * (small.multiply_adds - 640))

  def test_table_and_json(self):
    summary = describe.summarize(zoo.ModelConfig(family="cifar", depth=56))
    table = describe.format_table(summary)
    self.assertIn("ResNet-56 (A)", table)
    self.assertIn("[3x3, 32; 3x3, 32] x 9", table)
    self.assertIn("853,018", table)
    self.assertIn("paper: 850.00K (ok)", table)
    record = json.loads(json.dumps(summary.to_json()))
    self.assertEqual(record["params"], 853_018)
    self.assertEqual(record["paper_params"], 0.85e6)
    self.assertIsNone(record["paper_multiply_adds"])

  def test_zoo_lists_every_paper_network(self):
    names = [c.display_name for c in describe.paper_configs()]
    for name in ("VGG-19", "plain-18", "plain-34", "ResNet-34 (A)",
                 "ResNet-34 (C)", "ResNet-152 (B)", "plain-56",
                 "ResNet-1202 (A)"):
      self.assertIn(name, names)
    summaries = [describe.summarize(zoo.ModelConfig(family="cifar", depth=d))
                 for d in (20, 32)]
    text = describe.format_zoo(summaries)
    self.assertIn("ResNet-20 (A)", text)
    self.assertIn("270.00K (ok)", text)


if __name__ == "__main__":
  tf.test.main()
