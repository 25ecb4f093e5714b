"""TrainConfig: reading a run's config.json back, old files included; modes."""

import json

from absl.testing import absltest

from tf_resnet.model import zoo
from tf_resnet.training import config as config_lib

# runs/cifar64k/resnet20/config.json as tf_resnet.train wrote it on
# 2026-12-06, before `mode` and `eval_mode` existed (model_dir replaced).
_WRITTEN_BEFORE_MODES = """{"checkpoint_every_secs": 300.0,
"checkpoint_every_steps": null, "data": {"data_dir": null, "dataset":
"folder:/tmp/cifar10", "holdout": 5000, "on_bad_file": "skip",
"stats_max_images": 10000}, "eval_every_steps": 1000, "eval_examples": null,
"export_best": false, "export_dir": null, "head_learning_rate": null,
"init_from": null, "input": {"color_augmentation": true, "global_batch_size":
128, "on_bad_image": "skip", "scale_range": [256, 480], "seed": 0,
"stream_block_size": 8192, "test_flip": false, "test_scales": [224, 256, 384,
480, 640]}, "keep_checkpoints": 3, "keep_exports": 3, "model":
{"architecture": "resnet", "depth": 20, "family": "cifar",
"max_pool_padding": "ceil", "num_classes": 10, "shortcut": "A",
"stride_on_3x3": false, "sync_batch_norm": false, "zero_init_last_bn":
false}, "model_dir": "/runs/r20", "momentum": 0.9, "monitor_test": true,
"num_cpu_devices": null, "precision": "float32", "schedule": {"boundaries":
[32000, 48000], "factor": 0.1, "kind": "steps", "learning_rate": 0.1,
"min_learning_rate": 0.0, "patience": 3, "threshold": 0.001,
"warmup_learning_rate": null, "warmup_max_steps": 2000,
"warmup_until_error": 0.8}, "steps_per_loop": 100, "strategy": "default",
"train_steps": 64000, "trainable": "all", "weight_decay": 0.0001, "xla":
false}"""

_CIFAR_20 = zoo.ModelConfig(family="cifar", depth=20, num_classes=10)
_IMAGENET_18 = zoo.ModelConfig(family="imagenet", depth=18, num_classes=10)


def _resnet20_command(**overrides) -> config_lib.TrainConfig:
  """The config of that run's command line (runs/cifar64k/resnet20.command)."""
  return config_lib.paper_config(
      _CIFAR_20, dataset="folder:/tmp/cifar10", model_dir="/runs/r20",
      holdout=5000, monitor_test=True, train_steps=64000,
      boundaries=(32000, 48000), eval_every_steps=1000,
      checkpoint_every_secs=300, precision="float32", seed=0, **overrides)


class ConfigJsonTest(absltest.TestCase):

  def test_a_config_from_before_the_modes_resumes_unchanged(self):
    command = _resnet20_command()
    stored = json.loads(_WRITTEN_BEFORE_MODES)
    self.assertEqual(config_lib.config_changes(stored, command), [])
    # Read back, the missing fields are what that version did.
    self.assertEqual(config_lib.train_config_from_json(_WRITTEN_BEFORE_MODES),
                     command)

  def test_every_field_reads_back(self):
    config = config_lib.paper_config(
        _IMAGENET_18, dataset="synthetic", model_dir="/runs/x",
        kind="steps", boundaries=(30, 60), mode="train", eval_mode="10crop",
        export_dir="/exports/x", export_best=True, holdout=20)
    self.assertEqual(config_lib.train_config_from_json(config.to_json()),
                     config)

  def test_not_a_config(self):
    with self.assertRaisesRegex(ValueError, "not a tf_resnet.train config"):
      config_lib.train_config_from_json('{"model": {}}')

  def test_unknown_modes_are_refused(self):
    with self.assertRaisesRegex(ValueError, "`mode` must be one of"):
      _resnet20_command(mode="continuous_eval")
    with self.assertRaisesRegex(ValueError, "`eval_mode` must be one of"):
      _resnet20_command(eval_mode="5crop")

  def test_cifar_is_tested_on_its_one_view(self):
    with self.assertRaisesRegex(ValueError, "must be 'center', not '10crop'"):
      _resnet20_command(eval_mode="10crop")

  def test_the_eval_mode_is_decisive_for_the_plateau_schedule_only(self):
    def changes(config, **new):
      stored = json.loads(config.to_json())
      return config_lib.config_changes(
          stored, config_lib.train_config_from_json(
              json.dumps({**stored, **new})))

    plateau = config_lib.paper_config(_IMAGENET_18, dataset="synthetic",
                                      model_dir="/runs/x")
    steps = config_lib.paper_config(_IMAGENET_18, dataset="synthetic",
                                    model_dir="/runs/x", kind="steps",
                                    boundaries=(100,))
    self.assertEqual(changes(plateau, eval_mode="10crop"),
                     [("eval_mode", "center", "10crop", True)])
    self.assertEqual(changes(steps, eval_mode="10crop"),
                     [("eval_mode", "center", "10crop", False)])
    self.assertEqual(changes(steps, mode="train"),
                     [("mode", "train_and_eval", "train", False)])


if __name__ == "__main__":
  absltest.main()
