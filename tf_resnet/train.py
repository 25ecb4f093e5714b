r"""Trains a network of the paper, as the paper did, on every local device.

Defaults follow the paper for the data set's family. ImageNet (section 3.4):
batch 256, SGD with momentum 0.9, weight decay 1e-4, learning rate 0.1
divided by 10 when the validation error plateaus, up to 60e4 iterations,
scale augmentation [256, 480], 224x224 crops, flips, per-pixel mean, colour
augmentation. CIFAR-10 (section 4.2): batch 128, learning rate 0.1 divided by
10 at 32k and 48k iterations, 64k iterations, 4-pixel padding and 32x32
crops, flips; ResNet-110 and deeper warm up at 0.01 until the training error
is below 80%.

Examples:
  python -m tf_resnet.train --depth=34 --model_dir=/runs/resnet34
  python -m tf_resnet.train --flagfile=flags/resnet110_cifar10.flags \
      --dataset=folder:/data/cifar10 --model_dir=/runs/r110
  python -m tf_resnet.train --dataset=digits --depth=20 --train_steps=300 \
      --batch_size=64 --model_dir=/tmp/digits

Rerunning the same command resumes from the latest checkpoint in
--model_dir. SIGTERM or Ctrl-C saves a checkpoint and stops.
"""

import os
import sys
import tempfile

from tf_resnet import cli  # Sets TF's log level before TensorFlow loads.
from absl import app  # pylint: disable=g-bad-import-order
from absl import flags
from absl import logging

from tf_resnet.data import pipeline
from tf_resnet.data import sources
from tf_resnet.model import zoo
from tf_resnet.training import config as config_lib
from tf_resnet.training import loop
from tf_resnet.training import strategy as strategy_lib
from tf_resnet.training import task as task_lib

cli.define_data_flags()
cli.define_model_flags()
FLAGS = flags.FLAGS

flags.DEFINE_string("model_dir", None,
                    "Where checkpoints, statistics (stats.json), the config, "
                    "TensorBoard summaries and metrics.jsonl go. Default: "
                    "<tmp>/tf_resnet/<dataset>_<network>.")
flags.DEFINE_integer("batch_size", None,
                     "Global mini-batch over all replicas (paper: 256 on "
                     "ImageNet, 128 on CIFAR-10).")
flags.DEFINE_integer("train_steps", None,
                     "Iterations to train (paper: 60e4 on ImageNet at most, "
                     "64k on CIFAR-10).")
flags.DEFINE_float("learning_rate", 0.1, "Starting learning rate (paper: 0.1).")
flags.DEFINE_float("momentum", 0.9, "SGD momentum (paper: 0.9).")
flags.DEFINE_float("weight_decay", 1e-4,
                   "L2 weight decay on convolution and fully-connected "
                   "kernels; its gradient is weight_decay * w (paper: 1e-4).")
flags.DEFINE_enum("schedule", None, list(config_lib.SCHEDULES),
                  "plateau: divide the learning rate by 10 when the "
                  "validation error plateaus (paper's ImageNet schedule). "
                  "steps: divide at --lr_boundaries (paper's CIFAR-10 "
                  "schedule). Default: by family.")
flags.DEFINE_list("lr_boundaries", None,
                  "Iterations at which the `steps` schedule divides the rate "
                  "(default on CIFAR-10: 32000,48000).")
flags.DEFINE_float("lr_factor", 0.1, "What each reduction multiplies the "
                   "learning rate by (paper: divide by 10).")
flags.DEFINE_integer("plateau_patience", 3,
                     "Evaluations without improvement before the plateau "
                     "schedule reduces the learning rate.")
flags.DEFINE_float("plateau_threshold", 0.001,
                   "Smallest fall of the validation top-1 error that counts "
                   "as an improvement.")
flags.DEFINE_float("min_learning_rate", 1e-4,
                   "The plateau schedule never goes below this (paper: "
                   "0.1 -> 0.01 -> 0.001).")
flags.DEFINE_float("warmup_learning_rate", None,
                   "Train at this rate until the training error is below "
                   "--warmup_until_error (paper: 0.01 for CIFAR ResNet-110 "
                   "and 1202, the default there).")
flags.DEFINE_float("warmup_until_error", 0.8,
                   "Training error that ends the warm-up (paper: 80%).")
flags.DEFINE_integer("warmup_max_steps", 2000,
                     "End the warm-up after this many steps regardless.")
flags.DEFINE_enum("strategy", "default", list(strategy_lib.STRATEGIES),
                  "default: MirroredStrategy over all local GPUs (or the "
                  "--num_cpu_devices logical CPUs), else one device. "
                  "multi_worker: MultiWorkerMirroredStrategy from TF_CONFIG.")
flags.DEFINE_integer("num_cpu_devices", None,
                     "Split the CPU into this many logical devices, so "
                     "multi-replica training runs without GPUs.")
flags.DEFINE_integer("steps_per_loop", 100,
                     "Training steps per tf.function call; progress lines "
                     "and summaries come this often.")
flags.DEFINE_integer("checkpoint_every_steps", None,
                     "Save a checkpoint every this many steps (default: "
                     "every --checkpoint_every_secs).")
flags.DEFINE_float("checkpoint_every_secs", 600,
                   "Save a checkpoint at least this often (default: ten "
                   "minutes).")
flags.DEFINE_integer("eval_every_steps", None,
                     "Evaluate on the validation split (--holdout, else the "
                     "test split) every this many steps (default: 5000 on "
                     "ImageNet, 2000 on CIFAR-10).")
flags.DEFINE_integer("eval_examples", None,
                     "Evaluate on at most this many examples.")
flags.DEFINE_bool("monitor_test", False,
                  "With --holdout, also evaluate the test split at every "
                  "evaluation, logged as `test` (learning curves like the "
                  "paper's Fig. 6; never used for decisions).")
flags.DEFINE_integer("keep_checkpoints", 3, "Recent checkpoints to keep.")
flags.DEFINE_integer("seed", 0, "Seeds the input order and augmentation.")
flags.DEFINE_bool("color_augmentation", True,
                  "ImageNet family: Krizhevsky et al.'s PCA colour noise.")
flags.DEFINE_enum("precision", "float32", list(task_lib.PRECISIONS),
                  "float32, or mixed precision (float32 variables; float16 "
                  "with dynamic loss scaling, or bfloat16). For GPUs: on the "
                  "CPUs measured, bfloat16 was 1.8x slower.")
flags.DEFINE_bool("xla", False, "Compile the training step with XLA (on "
                  "the 2-core CPUs measured it was 2.4x slower; for GPUs).")
flags.DEFINE_bool("sync_batch_norm", False,
                  "Batch statistics over all replicas (synchronized BN) "
                  "instead of each replica's own, as the paper's per-GPU "
                  "BN did; makes N replicas compute what one device would.")
flags.DEFINE_string("export_dir", None,
                    "Export a SavedModel (TF Serving signatures) as a new "
                    "version under this base path when training ends.")
flags.DEFINE_bool("export_best", False,
                  "Also export whenever the validation error improves.")
flags.DEFINE_integer("keep_exports", 3, "Exported versions to keep.")
flags.DEFINE_integer("stats_max_images", 10_000,
                     "Training images read for the per-pixel mean and the "
                     "RGB principal components.")

# The paper's defaults for each family.
_DEFAULTS = {
    "imagenet": dict(batch_size=256, train_steps=600_000, schedule="plateau",
                     eval_every_steps=5000, lr_boundaries=()),
    "cifar": dict(batch_size=128, train_steps=64_000, schedule="steps",
                  eval_every_steps=2000, lr_boundaries=(32_000, 48_000)),
}


@flags.multi_flags_validator(["dataset", "model", "depth", "shortcut",
                              "family"], message="invalid network")
def _check_network(values) -> bool:
  """Rejects an impossible network before any data is read."""
  family = cli.family_hint(values["dataset"], values["family"],
                           values["model"], values["depth"])
  family = sources.FIXED_FAMILIES.get(values["dataset"], family)
  try:
    zoo.ModelConfig(family=family or "imagenet", architecture=values["model"],
                    depth=values["depth"], shortcut=values["shortcut"])
  except ValueError as e:
    if family is None:  # A folder: the family is not known yet.
      return True
    raise flags.ValidationError(str(e)) from None
  return True


def _value(name: str, family: str):
  value = getattr(FLAGS, name)
  return _DEFAULTS[family][name] if value is None else value


def build_config(source: sources.Source) -> config_lib.TrainConfig:
  """The run the flags describe, with the paper's defaults for the data's family."""
  family = source.family
  model = zoo.ModelConfig(family=family, architecture=FLAGS.model,
                          depth=FLAGS.depth, shortcut=FLAGS.shortcut,
                          num_classes=source.num_classes,
                          sync_batch_norm=FLAGS.sync_batch_norm)
  warmup = FLAGS.warmup_learning_rate
  if (warmup is None and family == "cifar" and model.architecture == "resnet"
      and model.depth >= 110):
    warmup = 0.01
  boundaries = tuple(int(b) for b in _value("lr_boundaries", family))
  model_dir = FLAGS.model_dir or os.path.join(
      tempfile.gettempdir(), "tf_resnet",
      f"{source.name.replace(':', '_').replace('/', '_')}_"
      f"{model.display_name.replace(' ', '').replace('(', '_').rstrip(')')}")
  return config_lib.TrainConfig(
      model=model,
      data=config_lib.DataConfig(dataset=FLAGS.dataset,
                                 data_dir=FLAGS.data_dir,
                                 holdout=FLAGS.holdout,
                                 on_bad_file=FLAGS.on_bad_file,
                                 stats_max_images=FLAGS.stats_max_images),
      input=pipeline.InputConfig(
          global_batch_size=_value("batch_size", family), seed=FLAGS.seed,
          color_augmentation=FLAGS.color_augmentation,
          on_bad_image=FLAGS.on_bad_file),
      schedule=config_lib.ScheduleConfig(
          kind=_value("schedule", family), learning_rate=FLAGS.learning_rate,
          boundaries=boundaries, factor=FLAGS.lr_factor,
          patience=FLAGS.plateau_patience, threshold=FLAGS.plateau_threshold,
          min_learning_rate=FLAGS.min_learning_rate,
          warmup_learning_rate=warmup,
          warmup_until_error=FLAGS.warmup_until_error,
          warmup_max_steps=FLAGS.warmup_max_steps),
      model_dir=model_dir,
      train_steps=_value("train_steps", family),
      momentum=FLAGS.momentum,
      weight_decay=FLAGS.weight_decay,
      steps_per_loop=FLAGS.steps_per_loop,
      checkpoint_every_steps=FLAGS.checkpoint_every_steps,
      checkpoint_every_secs=FLAGS.checkpoint_every_secs,
      eval_every_steps=_value("eval_every_steps", family),
      eval_examples=FLAGS.eval_examples,
      monitor_test=FLAGS.monitor_test,
      keep_checkpoints=FLAGS.keep_checkpoints,
      precision=FLAGS.precision,
      xla=FLAGS.xla,
      strategy=FLAGS.strategy,
      num_cpu_devices=FLAGS.num_cpu_devices,
      export_dir=FLAGS.export_dir,
      export_best=FLAGS.export_best,
      keep_exports=FLAGS.keep_exports)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  # Progress has its own lines; TensorFlow's INFO chatter only with -v 0.
  if not FLAGS["verbosity"].present:
    logging.set_verbosity(logging.WARNING)
  if FLAGS.num_cpu_devices:
    # Before any TensorFlow op runs (reading the data runs some).
    strategy_lib.split_cpu(FLAGS.num_cpu_devices)
  try:
    source = sources.parse(
        FLAGS.dataset, data_dir=FLAGS.data_dir,
        family=cli.family_hint(FLAGS.dataset, FLAGS.family, FLAGS.model,
                               FLAGS.depth),
        holdout=FLAGS.holdout, on_bad_file=FLAGS.on_bad_file)
    config = build_config(source)
    print(f"Training {config.model.display_name} on {source.describe()}\n"
          f"model_dir: {config.model_dir}", flush=True)
    result = loop.train(config, source=source)
  except (sources.DataError, loop.TrainingError, ValueError) as e:
    cli.fail(str(e))
  if result.interrupted_by is not None:
    sys.exit(128 + result.interrupted_by)
  if result.last_eval is not None:
    e = result.last_eval
    print(f"Done at step {result.step}: top-1 error {e.top1_error:.4f}, "
          f"top-5 error {e.top5_error:.4f} on {e.examples} examples; "
          f"checkpoint {result.checkpoint}")


def run():
  """Console-script entry point."""
  app.run(main)


if __name__ == "__main__":
  run()
