"""Fine-tuning: a new run starts from another run's weights by name and shape."""

import io
import os
import tempfile

import numpy as np
import tensorflow as tf

from tf_resnet.data import pipeline
from tf_resnet.data import stats as stats_lib
from tf_resnet.model import zoo
from tf_resnet.testing import images
from tf_resnet.training import config as config_lib
from tf_resnet.training import initialization
from tf_resnet.training import run_dir
from tf_resnet.training import strategy as strategy_lib
from tf_resnet.training import train_lib

_DEVICES = strategy_lib.split_cpu(2)
_RESNET8 = zoo.ModelConfig(family="cifar", depth=8, num_classes=10)


def _config(model_dir: str, steps: int, dataset: str = "digits",
            model: zoo.ModelConfig = _RESNET8, **kwargs):
  return config_lib.TrainConfig(
      model=model,
      data=config_lib.DataConfig(dataset=dataset, stats_max_images=200),
      input=pipeline.InputConfig(global_batch_size=8, seed=3),
      schedule=config_lib.ScheduleConfig(kind="steps"),
      model_dir=model_dir, train_steps=steps, steps_per_loop=steps,
      eval_examples=16, **kwargs)


def _values(model: tf.Module) -> dict[str, np.ndarray]:
  return {v.name.split(":")[0].split("/", 1)[1]: v.numpy()
          for v in model.variables}


def _folder(root: str, classes: int) -> str:
  """A tiny CIFAR-family folder data set of `classes` classes."""
  for c in range(classes):
    for i in range(4):
      for split in ("train", "test"):
        images.write_file(f"{root}/{split}/class_{c}/{i}.png",
                          images.png(100 * c + i + (50 if split == "test"
                                                    else 0)))
  return root


class InitializationTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.source_dir = os.path.join(tempfile.mkdtemp(), "source")
    cls.source = train_lib.train(_config(cls.source_dir, 3),
                                 progress_stream=io.StringIO())
    cls.source_values = _values(cls.source.model)

  def test_head_only_keeps_the_backbone_and_its_batch_norm_exactly(self):
    data = _folder(os.path.join(self.get_temp_dir(), "data3"), 3)
    model_dir = os.path.join(self.get_temp_dir(), "head_only")
    config = _config(model_dir, 2, dataset=f"folder:{data}",
                     model=zoo.ModelConfig(family="cifar", depth=8,
                                           num_classes=3),
                     init_from=self.source_dir, trainable="head",
                     head_learning_rate=1.0)
    out = io.StringIO()
    result = train_lib.train(config, progress_stream=out)
    text = out.getvalue()
    self.assertIn(f"Initialized from {self.source_dir}/ckpt-3: restored", text)
    self.assertIn("new: head/fc/kernel (shape [64, 3], the source's [64, 10])",
                  text)
    trained = _values(result.model)
    for name, value in trained.items():
      if name.startswith("head/"):
        self.assertNotEqual(value.shape, self.source_values[name].shape)
      else:  # Frozen, BN moving statistics included.
        self.assertAllEqual(value, self.source_values[name], msg=name)
    # The source's preprocessing.
    source_stats = stats_lib.Statistics.load(
        os.path.join(self.source_dir, run_dir.STATS_FILE))
    own_stats = stats_lib.Statistics.load(
        os.path.join(model_dir, run_dir.STATS_FILE))
    self.assertAllEqual(own_stats.mean_image, source_stats.mean_image)
    with open(os.path.join(model_dir, run_dir.LABELS_FILE)) as f:
      self.assertEqual(f.read().split(), ["class_0", "class_1", "class_2"])

    # A rerun continues from the run's own checkpoint.
    out = io.StringIO()
    again = train_lib.train(config_lib.TrainConfig(**{
        **config.__dict__, "train_steps": 4}), progress_stream=out)
    self.assertEqual(again.step, 4)
    self.assertIn(f"Resumed from {model_dir}/ckpt-2 at step 2", out.getvalue())
    self.assertNotIn("Initialized from", out.getvalue())

  def test_head_learning_rate_applies_to_the_classifier_alone(self):
    # A zero rate for the classifier: it keeps the source's values, the
    # rest (all trainable) moves.
    model_dir = os.path.join(self.get_temp_dir(), "frozen_head")
    result = train_lib.train(
        _config(model_dir, 2, init_from=self.source_dir,
                head_learning_rate=0.0),
        progress_stream=io.StringIO())
    trained = _values(result.model)
    for name in ("head/fc/kernel", "head/fc/bias"):
      self.assertAllEqual(trained[name], self.source_values[name])
    moved = [name for name in trained if not name.startswith("head/")
             and not np.array_equal(trained[name], self.source_values[name])]
    self.assertContainsSubset(["stem/conv/kernel", "stem/bn/moving_mean"],
                              moved)

  def test_the_head_is_taken_only_for_the_same_classes(self):
    for labels, head_restored in ((None, True), ([f"c{i}" for i in range(10)],
                                                  False)):
      source = run_dir.load(self.source_dir)
      classes = labels or source.labels
      model = zoo.build_model(_RESNET8)
      report = initialization.initialize(model, _RESNET8, classes,
                                         self.source_dir)
      values = _values(model)
      self.assertEqual("head/fc/kernel" in report.restored, head_restored)
      for name, value in values.items():
        if name.startswith("head/") and not head_restored:
          self.assertNotAllClose(value, self.source_values[name])
        else:
          self.assertAllEqual(value, self.source_values[name], msg=name)
      if not head_restored:
        self.assertIn(("head/fc/kernel", "the data set's 10 classes are not "
                       "the source's"), report.new)

  def test_two_replicas_get_the_source_everywhere(self):
    strategy = strategy_lib.mirrored(tuple(_DEVICES))
    with strategy.scope():
      model = zoo.build_model(_RESNET8)
      report = initialization.initialize(
          model, _RESNET8, run_dir.load(self.source_dir).labels,
          f"{self.source_dir}/ckpt-3")
    self.assertEmpty(report.new)
    for variable in model.variables:
      name = variable.name.split(":")[0].split("/", 1)[1]
      for copy in strategy.experimental_local_results(variable):
        self.assertAllEqual(copy, self.source_values[name], msg=name)

  def test_clear_errors(self):
    imagenet = zoo.ModelConfig(family="imagenet", depth=18, num_classes=5)
    with self.assertRaisesRegex(
        initialization.InitError,
        "is a cifar-family run \\(ResNet-8 \\(A\\)\\); this network is "
        "imagenet-family"):
      initialization.initialize(zoo.build_model(imagenet), imagenet,
                                [str(i) for i in range(5)], self.source_dir)
    with self.assertRaisesRegex(
        initialization.InitError, "--depth=20 contradicts --init_from=.*, a "
        "ResNet-8 \\(A\\)"):
      initialization.model_config(self.source_dir, family="cifar",
                                  num_classes=3, depth=20)
    config = initialization.model_config(self.source_dir, family="cifar",
                                         num_classes=3)
    self.assertEqual((config.depth, config.num_classes), (8, 3))
    with self.assertRaisesRegex(initialization.InitError,
                                "config.json does not exist"):
      initialization.resolve(self.get_temp_dir())


if __name__ == "__main__":
  tf.test.main()
