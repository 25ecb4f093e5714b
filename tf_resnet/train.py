r"""Trains a network of the paper, as the paper did, on every local device.

Defaults follow the paper for the data set's family (tf_resnet/families.py).
ImageNet (section 3.4): batch 256, SGD with momentum 0.9, weight decay 1e-4,
learning rate 0.1 divided by 10 when the validation error plateaus (down to
0.001), up to 60e4 iterations, scale augmentation [256, 480], 224x224 crops,
flips, per-pixel mean, colour augmentation; 50,000 training images held out
for the decisions. CIFAR-10 (section 4.2): batch 128, learning rate 0.1
divided by 10 at 32k and 48k iterations, 64k iterations, 4-pixel padding and
32x32 crops, flips, a 45k/5k train/validation split; ResNet-110 and deeper
warm up at 0.01 until the training error is below 80%.

Examples:
  python -m tf_resnet.train --depth=34 --model_dir=/runs/resnet34
  python -m tf_resnet.train --flagfile=flags/resnet110_cifar10.flags \
      --dataset=folder:/data/cifar10 --model_dir=/runs/r110
  python -m tf_resnet.train --dataset=digits --depth=20 --train_steps=300 \
      --batch_size=64 --model_dir=/tmp/digits
  python -m tf_resnet.train --init_from=/runs/keras_resnet50 --depth=50 \
      --dataset=folder:/data/flowers --trainable=head --learning_rate=0.01 \
      --model_dir=/runs/flowers
  python -m tf_resnet.train --flagfile=flags/resnet20_cifar10.flags \
      --mode=train --model_dir=/runs/r20 &
  python -m tf_resnet.train --mode=continuous_eval --model_dir=/runs/r20

Rerunning the same command resumes from the newest checkpoint in
--model_dir that reads. SIGTERM or Ctrl-C saves a checkpoint and stops.

With TF_CONFIG set (e.g. by Kubeflow's TFJob) the same command is one worker
of a MultiWorkerMirroredStrategy cluster (docs/cluster.md). Exit status: 0
done; 1 an error to fix (flags, data, TF_CONFIG, a non-finite loss); 143 or
130 (128 + SIGTERM or SIGINT) stopped by that signal, on any worker, after
every worker saved the same step; 138 another worker of the cluster failed or
vanished, or the evaluator or the trainers it waits for sent nothing for
--eval_timeout_secs. A restart policy restarts on 128 and above (TFJob's ExitCode), and
restarting every worker resumes from the last checkpoint.
"""

import os
import signal
import sys
import tempfile
from typing import Optional

from tf_resnet import startup

startup.prepare_tensorflow()

# pylint: disable=g-import-not-at-top,g-bad-import-order
from absl import app
from absl import flags
from absl import logging

from tf_resnet import cli
from tf_resnet import families
from tf_resnet import hardware
from tf_resnet.data import pipeline
from tf_resnet.data import sources
from tf_resnet.exporting import actions as export_actions
from tf_resnet.model import zoo
from tf_resnet.training import cluster
from tf_resnet.training import config as config_lib
from tf_resnet.training import continuous_eval
from tf_resnet.training import initialization
from tf_resnet.training import run_dir
from tf_resnet.training import strategy as strategy_lib
from tf_resnet.training import task as task_lib
from tf_resnet.training import train_lib
# pylint: enable=g-import-not-at-top,g-bad-import-order

_DATA = cli.define_data_flags()
_MODEL = cli.define_model_flags()
_MODEL_DIR = flags.DEFINE_string(
    "model_dir", None,
    "Where checkpoints, statistics (stats.json), the config, TensorBoard "
    "summaries and metrics.jsonl go. Default: "
    "<tmp>/tf_resnet/<dataset>_<network>.")
_BATCH_SIZE = flags.DEFINE_integer(
    "batch_size", None, "Global mini-batch over all replicas (paper: 256 on "
    "ImageNet, 128 on CIFAR-10).", lower_bound=1)
_TRAIN_STEPS = flags.DEFINE_integer(
    "train_steps", None, "Iterations to train (paper: 60e4 on ImageNet at "
    "most, 64k on CIFAR-10).", lower_bound=1)
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.1,
                                    "Starting learning rate (paper: 0.1).")
_MOMENTUM = flags.DEFINE_float("momentum", 0.9, "SGD momentum (paper: 0.9).")
_WEIGHT_DECAY = flags.DEFINE_float(
    "weight_decay", 1e-4, "L2 weight decay on convolution and "
    "fully-connected kernels; its gradient is weight_decay * w (paper: "
    "1e-4).")
_SCHEDULE = flags.DEFINE_enum(
    "schedule", None, list(config_lib.SCHEDULES),
    "plateau: divide the learning rate by 10 when the validation error "
    "plateaus (paper's ImageNet schedule; needs a validation split, "
    "--holdout). steps: divide at --lr_boundaries (paper's CIFAR-10 "
    "schedule). Default: by family.")
_LR_BOUNDARIES = flags.DEFINE_list(
    "lr_boundaries", None, "Iterations at which the `steps` schedule divides "
    "the rate (default on CIFAR-10: 32000,48000).")
_LR_FACTOR = flags.DEFINE_float("lr_factor", 0.1, "What each reduction "
                                "multiplies the learning rate by (paper: "
                                "divide by 10).")
_PLATEAU_PATIENCE = flags.DEFINE_integer(
    "plateau_patience", None, "Evaluations without improvement before the "
    "plateau schedule reduces the learning rate (default "
    f"{families.IMAGENET.recipe.plateau_patience}).", lower_bound=1)
_PLATEAU_THRESHOLD = flags.DEFINE_float(
    "plateau_threshold", None, "Smallest fall of the validation top-1 error "
    "that counts as an improvement (default "
    f"{families.IMAGENET.recipe.plateau_threshold}).")
_MIN_LEARNING_RATE = flags.DEFINE_float(
    "min_learning_rate", None, "The plateau schedule never goes below this "
    "(default the paper's floor, 0.1 -> 0.01 -> "
    f"{families.IMAGENET.recipe.min_learning_rate}).")
_WARMUP_LEARNING_RATE = flags.DEFINE_float(
    "warmup_learning_rate", None, "Train at this rate until the training "
    "error is below --warmup_until_error (paper: 0.01 for CIFAR ResNet-110 "
    "and 1202, the default there).")
_WARMUP_UNTIL_ERROR = flags.DEFINE_float(
    "warmup_until_error", 0.8, "Training error that ends the warm-up "
    "(paper: 80%).")
_WARMUP_MAX_STEPS = flags.DEFINE_integer(
    "warmup_max_steps", 2000, "End the warm-up after this many steps "
    "regardless.")
_STRATEGY = flags.DEFINE_enum(
    "strategy", None, list(strategy_lib.STRATEGIES),
    "default: MirroredStrategy over all local GPUs (or the "
    "--num_cpu_devices logical CPUs), else one device. multi_worker: "
    "MultiWorkerMirroredStrategy from TF_CONFIG (docs/cluster.md). Default: "
    "multi_worker when TF_CONFIG is set, else default.")
_NUM_CPU_DEVICES = flags.DEFINE_integer(
    "num_cpu_devices", None, "Split the CPU into this many logical devices, "
    "so multi-replica training runs without GPUs.", lower_bound=1)
_STEPS_PER_LOOP = flags.DEFINE_integer(
    "steps_per_loop", 100, "Training steps per tf.function call; progress "
    "lines and summaries come this often.", lower_bound=1)
_CHECKPOINT_EVERY_STEPS = flags.DEFINE_integer(
    "checkpoint_every_steps", None, "Save a checkpoint every this many "
    "steps (default: every --checkpoint_every_secs).", lower_bound=1)
_CHECKPOINT_EVERY_SECS = flags.DEFINE_float(
    "checkpoint_every_secs", 600, "Save a checkpoint at least this often "
    "(default: ten minutes).")
_EVAL_EVERY_STEPS = flags.DEFINE_integer(
    "eval_every_steps", None, "Evaluate on the validation split (--holdout; "
    "without one the test split, only logged) every this many steps "
    "(default: 5000 on ImageNet, 2000 on CIFAR-10).", lower_bound=1)
_EVAL_EXAMPLES = flags.DEFINE_integer(
    "eval_examples", None, "Evaluate on at most this many examples.",
    lower_bound=1)
_MONITOR_TEST = flags.DEFINE_bool(
    "monitor_test", False, "With a validation split, also evaluate the test "
    "split at every evaluation, logged as `test` (learning curves like the "
    "paper's Fig. 6; never used for decisions).")
_MODE = flags.DEFINE_enum(
    "mode", None, list(continuous_eval.MODES),
    "train_and_eval: train, evaluating the validation split every "
    "--eval_every_steps and at the end. train: train only, with a "
    "checkpoint every --eval_every_steps unless --checkpoint_every_steps "
    "says otherwise, for an evaluator beside it (the plateau schedule waits "
    "there for its validation error). continuous_eval: that evaluator: "
    "evaluate every new checkpoint in --model_dir as its config.json says "
    "(eval mode, --monitor_test, exports), keep the best checkpoint and "
    "export, and exit after the last step's (docs/cluster.md). Default: "
    "from TF_CONFIG "
    "(the `evaluator` task: continuous_eval; the training tasks of a "
    "cluster with an evaluator: train), else train_and_eval.")
_EVAL_TIMEOUT_SECS = flags.DEFINE_float(
    "eval_timeout_secs", 3600, "continuous_eval: fail when no new "
    "checkpoint appears for this long (a rerun goes on where it stopped). "
    "train with the plateau schedule: fail when the evaluator's validation "
    "error of a checkpoint takes longer.", lower_bound=0)
_EVAL_MODE = flags.DEFINE_enum(
    "eval_mode", "center", list(pipeline.EVAL_MODES),
    "The test mode of the evaluations during training (validation, and "
    "--monitor_test): center, or on the ImageNet family 10crop or "
    "multiscale (as tf_resnet.evaluate --eval_mode).")
_KEEP_CHECKPOINTS = flags.DEFINE_integer(
    "keep_checkpoints", 3, "Recent checkpoints to keep.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seeds the weights, the input order "
                             "and the augmentation.")
_COLOR_AUGMENTATION = flags.DEFINE_bool(
    "color_augmentation", True, "ImageNet family: PCA colour noise "
    "(Krizhevsky et al.).")
_RESAMPLE_ON_DEVICE = flags.DEFINE_bool(
    "resample_on_device", False, "ImageNet family: the input pipeline "
    "decodes each crop's window and the training step resamples it (with "
    "the flip, mean and colour noise) on the accelerator, as NVIDIA DALI "
    "does; the same crops to float rounding, with less host CPU per "
    "image. For GPUs; on a CPU it moves the work, it does not save it "
    "(docs/performance.md, Input pipeline).")
_PRECISION = flags.DEFINE_enum(
    "precision", "float32", list(task_lib.PRECISIONS),
    "float32, or mixed precision with float32 variables: mixed_float16 "
    "(dynamic loss scaling) or mixed_bfloat16. Which is fastest depends on "
    "the hardware: on a CPU, TensorFlow runs bfloat16 on its fast (oneDNN) "
    "kernels only with AVX-512 or AMX, and warns here when it cannot; even "
    "then bfloat16 can be the slower one (docs/performance.md): "
    "measure with benchmarks/train_throughput.py --precision.")
_XLA = flags.DEFINE_bool(
    "xla", False, "Compile the training step with XLA (for GPUs; measure "
    "with benchmarks/train_throughput.py before using it on a CPU).")
_SYNC_BATCH_NORM = flags.DEFINE_bool(
    "sync_batch_norm", False, "Batch statistics over all replicas "
    "(synchronized BN) instead of each replica's own, as the paper's "
    "per-GPU BN did; makes N replicas compute what one device would.")
_EXPORT_DIR = flags.DEFINE_string(
    "export_dir", None, "Export a SavedModel (TF Serving signatures) as a "
    "new version under this base path when training ends.")
_EXPORT_BEST = flags.DEFINE_bool(
    "export_best", False, "Also export whenever the validation error "
    "improves (needs a validation split).")
_KEEP_EXPORTS = flags.DEFINE_integer("keep_exports", 3,
                                     "Exported versions to keep.",
                                     lower_bound=1)
_STATS_MAX_IMAGES = flags.DEFINE_integer(
    "stats_max_images", 10_000, "Training images read for the per-pixel "
    "mean and the RGB principal components.", lower_bound=1)
_INIT_FROM = flags.DEFINE_string(
    "init_from", None, "Fine-tune: start from this run directory's (or "
    "checkpoint's) weights wherever names and shapes match, and its mean "
    "image; the classifier is new unless the data set has the source's "
    "classes. Only when --model_dir has no checkpoint yet: a rerun resumes "
    "from its own. E.g. a run of tf_resnet.convert.")
_TRAINABLE = flags.DEFINE_enum(
    "trainable", "all", list(config_lib.TRAINABLE),
    "all: train every layer. head: train the classifier alone, the rest "
    "frozen with its batch normalization in inference mode.")
_HEAD_LEARNING_RATE = flags.DEFINE_float(
    "head_learning_rate", None, "The classifier's starting learning rate "
    "(the schedule scales it like --learning_rate); default "
    "--learning_rate.")
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
    "allow_config_change", False, "Resume a run even though this command "
    "changes its data or schedule (data set, holdout, batch, seed, "
    "augmentation, learning rates, momentum, weight decay). Every change is "
    "logged either way.")

# Another worker failed or vanished, or another task of the run (the
# trainers, the evaluator) sent nothing for --eval_timeout_secs: retryable
# (128 + SIGUSR1, the code Kubeflow's training-operator reserved for
# user-defined retryable errors before it treated every code >= 128 as
# retryable). Exit 1 is permanent under TFJob's ExitCode policy, and would
# fail the whole job for an evaluator that outwaited a restarting cluster.
EXIT_WORKER_LOST = 138

cli.validate_network(
    lambda values: cli.family_hint(values["dataset"], values["family"],
                                   values["model"], values["depth"]),
    ["dataset", "family"])


def _stored_model() -> Optional[zoo.ModelConfig]:
  """The network of the run already in --model_dir, if any.

  A rerun of a fine-tuning run is an ordinary run: its network is the one it
  started with, whatever became of the --init_from source since.
  """
  path = os.path.join(_MODEL_DIR.value or "", run_dir.CONFIG_FILE)
  if not (_MODEL_DIR.value and os.path.exists(path)):
    return None
  with open(path) as f:
    return config_lib.model_config_from_json(f.read())


def _fine_tuned_family() -> Optional[str]:
  """The family of the network being fine-tuned: its images' size."""
  if not _INIT_FROM.value:
    return None
  stored = _stored_model()
  if stored:
    return stored.family
  return initialization.resolve(_INIT_FROM.value)[0].model.family


def _strategy_name(task: Optional[cluster.Task]) -> str:
  """--strategy, or what TF_CONFIG implies: the same command line runs
  alone and as a task of a cluster (e.g. under Kubeflow's TFJob)."""
  if _STRATEGY.value:
    return _STRATEGY.value
  return "multi_worker" if task is not None else "default"


def build_config(source: sources.Source, strategy: str,
                 mode: str = config_lib.MODES[0]) -> config_lib.TrainConfig:
  """The run the flags describe: the paper's for the data's family, and what was set."""
  stored = _stored_model()
  if _INIT_FROM.value and stored:
    model = stored
  elif _INIT_FROM.value:
    model = initialization.model_config(
        _INIT_FROM.value, family=source.family,
        num_classes=source.num_classes,
        architecture=_MODEL.model.value if _MODEL.model.present else None,
        depth=_MODEL.depth.value, shortcut=_MODEL.shortcut.value,
        sync_batch_norm=_SYNC_BATCH_NORM.value)
  else:
    model = _MODEL.config(source.family, num_classes=source.num_classes,
                          sync_batch_norm=_SYNC_BATCH_NORM.value)
  model_dir = _MODEL_DIR.value or os.path.join(
      tempfile.gettempdir(), "tf_resnet",
      f"{source.name.replace(':', '_').replace('/', '_')}_"
      f"{model.display_name.replace(' ', '').replace('(', '_').rstrip(')')}")
  boundaries = _LR_BOUNDARIES.value
  return config_lib.paper_config(
      model, dataset=_DATA.dataset.value, model_dir=model_dir,
      data_dir=_DATA.data_dir.value, holdout=_DATA.holdout.value,
      on_bad_file=_DATA.on_bad_file.value,
      stats_max_images=_STATS_MAX_IMAGES.value,
      batch_size=_BATCH_SIZE.value, seed=_SEED.value,
      color_augmentation=_COLOR_AUGMENTATION.value,
      resample_on_device=_RESAMPLE_ON_DEVICE.value,
      kind=_SCHEDULE.value, learning_rate=_LEARNING_RATE.value,
      boundaries=(None if boundaries is None
                  else tuple(int(b) for b in boundaries)),
      factor=_LR_FACTOR.value, patience=_PLATEAU_PATIENCE.value,
      threshold=_PLATEAU_THRESHOLD.value,
      min_learning_rate=_MIN_LEARNING_RATE.value,
      warmup_learning_rate=_WARMUP_LEARNING_RATE.value,
      warmup_until_error=_WARMUP_UNTIL_ERROR.value,
      warmup_max_steps=_WARMUP_MAX_STEPS.value,
      train_steps=_TRAIN_STEPS.value, momentum=_MOMENTUM.value,
      weight_decay=_WEIGHT_DECAY.value, steps_per_loop=_STEPS_PER_LOOP.value,
      checkpoint_every_steps=_CHECKPOINT_EVERY_STEPS.value,
      checkpoint_every_secs=_CHECKPOINT_EVERY_SECS.value,
      eval_every_steps=_EVAL_EVERY_STEPS.value,
      eval_examples=_EVAL_EXAMPLES.value, monitor_test=_MONITOR_TEST.value,
      keep_checkpoints=_KEEP_CHECKPOINTS.value, precision=_PRECISION.value,
      xla=_XLA.value, strategy=strategy,
      num_cpu_devices=_NUM_CPU_DEVICES.value, export_dir=_EXPORT_DIR.value,
      export_best=_EXPORT_BEST.value, keep_exports=_KEEP_EXPORTS.value,
      init_from=_INIT_FROM.value, trainable=_TRAINABLE.value,
      head_learning_rate=_HEAD_LEARNING_RATE.value, mode=mode,
      eval_mode=_EVAL_MODE.value)


def _evaluate_continuously() -> None:
  """--mode=continuous_eval: the evaluator of the run in --model_dir."""
  if not _MODEL_DIR.value:
    cli.fail("--mode=continuous_eval needs --model_dir: the directory of "
             "the training run to evaluate")
  try:
    continuous_eval.evaluate_continuously(
        _MODEL_DIR.value, timeout_secs=_EVAL_TIMEOUT_SECS.value,
        make_actions=lambda e: export_actions.for_experiment(e, sys.stdout))
  except train_lib.WorkerLost as e:  # No new checkpoint: retryable.
    cli.fail(str(e), status=EXIT_WORKER_LOST)
  except (sources.DataError, train_lib.TrainingError, ValueError) as e:
    cli.fail(str(e))


def main(argv):
  cli.start(argv)
  try:
    task = cluster.from_environment()
    mode = continuous_eval.resolve_mode(_MODE.value, task)
  except cluster.ClusterError as e:
    cli.fail(str(e))
  if mode == continuous_eval.CONTINUOUS_EVAL:
    # Outside the training cluster's all-reduce: no strategy to build.
    _evaluate_continuously()
    return
  strategy_name = _strategy_name(task)
  # First, before any TensorFlow op runs (reading the data runs some): the
  # logical CPU split, and MultiWorkerMirroredStrategy's collective ops, can
  # only be configured before TensorFlow's context starts.
  if strategy_name == "multi_worker" and task is not None:
    print(task.waiting_line(), flush=True)
  strategy = strategy_lib.make_strategy(strategy_name, _NUM_CPU_DEVICES.value)
  if strategy_name == "multi_worker":
    # Its coordination service installed a SIGTERM handler that only records
    # the signal (for preemption notices this loop does not use). Until the
    # training loop takes SIGTERM over to save and exit, the default again:
    # nothing is trained yet, and the process ends as it would without it.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
  try:
    source = _DATA.parse(_MODEL, default_family=_fine_tuned_family())
    config = build_config(source, strategy_name, mode)
    slow = hardware.slow_compute_warning(
        task_lib.compute_dtype(config.precision),
        f"--precision={config.precision}")
    if slow:
      logging.warning(slow)
    print(f"Training {config.model.display_name} on {source.describe()}\n"
          f"model_dir: {config.model_dir}", flush=True)
    result = train_lib.train(
        config, source=source,
        make_actions=lambda e: export_actions.for_experiment(e, sys.stdout),
        allow_config_change=_ALLOW_CONFIG_CHANGE.value, strategy=strategy,
        evaluator_timeout_secs=_EVAL_TIMEOUT_SECS.value)
  except train_lib.WorkerLost as e:
    cli.fail(str(e), status=EXIT_WORKER_LOST)
  except (sources.DataError, train_lib.TrainingError, ValueError) as e:
    cli.fail(str(e))
  if result.interrupted_by is not None:
    sys.exit(128 + result.interrupted_by)
  if result.last_eval is not None:
    e = result.last_eval
    print(f"Done at step {result.step}: top-1 error {e.top1_error:.4f}, "
          f"top-5 error {e.top5_error:.4f} on {e.examples} examples; "
          f"checkpoint {result.checkpoint}")
  else:
    print(f"Done at step {result.step}; checkpoint {result.checkpoint}")


def run():
  """Console-script entry point."""
  app.run(main)


if __name__ == "__main__":
  run()
