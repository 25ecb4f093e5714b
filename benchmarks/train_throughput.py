r"""Training throughput: the library's Trainer, the conv peak and Keras `fit`.

Times the real `tf_resnet.training.trainer.Trainer`, built from the paper's
config (`training.config.paper_config`) as `tf_resnet.train` builds it: the
zoo's network under the strategy of `make_strategy("default")`, the
Caffe-form SGD with momentum 0.9 and weight decay 1e-4 on the kernels, the
`Task`'s per-replica step, and `Trainer.train(n)`, which runs n steps per
`tf.function` call. The only difference from training is the input: one
synthetic batch held in memory (each replica's slice on its device) instead of
the input pipeline, so it measures the step alone. The learning rate is a
constant 0.1. The first call (tracing and warm-up) is not timed.

It reports images/s, the network's multiply-adds per image (from
`cost.profile`), the training FLOP rate (a step counted as 3x the forward
multiply-adds, 2 FLOPs each), and that rate as a fraction of the machine's
convolution peak, measured in the same run on a large 3x3 convolution
(64 channels, 56x56, batch 64). Also the process's peak resident memory after
the timed steps, and how many cores other processes kept busy during each
timing (the machines are shared: a figure measured beside other work is not
comparable with one measured alone).

With --compare it also trains the same network (same depth, widths,
shortcuts, batch and image size) written as a Keras functional model with
`model.fit`, in the same process, and prints the ratio ours/Keras. Other
frameworks (the PyTorch peer) run beside this binary, not from it.

With --profile_dir it then traces one call of --steps_per_call steps with
TensorFlow's profiler and prints where the time went, by part of the
step (convolutions, batch norm, optimizer, shortcuts, ...) and by op type.

  python benchmarks/train_throughput.py --depth=20 --batch_size=128 --compare
  python benchmarks/train_throughput.py --depth=50 --batch_size=32 --steps=4 \
      --steps_per_call=2 --compare --format=json
"""

import json
import os
import time

from tf_resnet import startup

startup.prepare_tensorflow()

# pylint: disable=g-import-not-at-top,g-bad-import-order
from absl import app
from absl import flags
import tensorflow as tf

# The benchmark's own modules, beside this file (run it as
# `python benchmarks/train_throughput.py`, or with `bazel run`).
import in_memory
import keras_peer
import machine
import profiles
from tf_resnet import cli
from tf_resnet import hardware
from tf_resnet.analysis import cost
from tf_resnet.model import resnet
from tf_resnet.model import zoo
from tf_resnet.training import task as task_lib
# pylint: enable=g-import-not-at-top,g-bad-import-order

_DEPTH = flags.DEFINE_integer("depth", None,
                              "Weight layers: ImageNet 18, 34, 50, 101, 152; "
                              "CIFAR-10 6n+2.", lower_bound=1)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", None,
                                   "Global batch over all replicas.",
                                   lower_bound=1)
_DATASET = flags.DEFINE_enum("dataset", None, ["cifar10", "imagenet2012"],
                             "The network family and image size: cifar10 "
                             "(32x32, section 4.2 nets) or imagenet2012 "
                             "(224x224, Table 1 nets). Default: imagenet2012 "
                             "for Table 1's depths, else cifar10.")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed training steps.",
                              lower_bound=1)
_STEPS_PER_CALL = flags.DEFINE_integer(
    "steps_per_call", 10, "Training steps per tf.function call (the loop's "
    "--steps_per_loop).", lower_bound=1)
_WARMUP_STEPS = flags.DEFINE_integer(
    "warmup_steps", 2, "Untimed steps first, in one call (tracing, oneDNN "
    "primitives); the same number for Keras.", lower_bound=1)
_PEAK_CALLS = flags.DEFINE_integer("peak_calls", 30,
                                   "Timed calls of the peak convolution.",
                                   lower_bound=1)
_COMPARE = flags.DEFINE_bool("compare", False,
                             "Also time a Keras functional model of the same "
                             "network with model.fit.")
_PROFILE_DIR = flags.DEFINE_string(
    "profile_dir", None, "Trace one call of --steps_per_call steps with "
    "TensorFlow's profiler into this directory and print the time by part of "
    "the step and by op type.")
_PRECISION = flags.DEFINE_enum(
    "precision", "float32", list(task_lib.PRECISIONS),
    "The Trainer's precision (tf_resnet.train's --precision); the peak is "
    "measured in its compute dtype.")
_FORMAT = flags.DEFINE_enum("format", "table", ["table", "json"], "Output.")

flags.mark_flags_as_required(["depth", "batch_size"])

# The peak convolution: a 3x3 layer of ResNet's first stage at batch 64.
_PEAK_SHAPE = (64, 56, 56, 64)


def _conv_peak(calls: int, dtype: tf.DType) -> float:
  """GFLOP/s of a large 3x3 convolution in `dtype`: the practical peak."""
  n, h, w, c = _PEAK_SHAPE
  images = tf.cast(tf.random.normal(_PEAK_SHAPE, seed=3), dtype)
  kernel = tf.cast(tf.random.normal([3, 3, c, c], stddev=0.05, seed=4), dtype)
  conv = tf.function(lambda x, k: tf.nn.conv2d(x, k, 1, "SAME"))
  conv(images, kernel).numpy()  # Tracing and oneDNN's primitive.
  began = time.perf_counter()
  for _ in range(calls):
    outputs = conv(images, kernel)
  outputs.numpy()
  seconds = time.perf_counter() - began
  return 2.0 * n * h * w * c * 9 * c * calls / seconds / 1e9


def main(argv):
  cli.start(argv)
  load = os.getloadavg()[0]
  rss_at_start = machine.peak_rss_mib()
  family = cli.family_hint(_DATASET.value or "synthetic", None, "resnet",
                           _DEPTH.value)
  try:
    config = zoo.ModelConfig(family=family, depth=_DEPTH.value)
    ours = in_memory.InMemoryTrainer(config, _BATCH_SIZE.value,
                                     _PRECISION.value)
  except ValueError as e:
    cli.fail(str(e))
  batch, steps = _BATCH_SIZE.value, _STEPS.value
  size = config.input_size
  profile = cost.profile(ours.model, (size, size, 3))
  ours.run(_WARMUP_STEPS.value)
  with machine.OthersLoad() as others:
    seconds, loss = ours.time(steps, _STEPS_PER_CALL.value)
  rss = machine.peak_rss_mib()
  with machine.OthersLoad() as others_at_peak:
    peak = _conv_peak(_PEAK_CALLS.value,
                      ours.trainer.task.compute_dtype)
  rate = batch * steps / seconds
  train_gflops = 3 * 2 * profile.multiply_adds * rate / 1e9
  record = {
      "date": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count(),
      "cpu": machine.cpu_model(), "load_1min": round(load, 2),
      "tensorflow": tf.__version__, "network": config.display_name,
      "family": config.family, "depth": config.depth, "batch_size": batch,
      "image_size": size, "replicas": ours.strategy.num_replicas_in_sync,
      "precision": _PRECISION.value,
      "onednn_takes_compute_dtype": hardware.onednn_supports(
          ours.trainer.task.compute_dtype),
      "steps": steps, "steps_per_call": _STEPS_PER_CALL.value,
      "images_per_sec": round(rate, 2),
      "others_cores": others.cores,
      "ms_per_step": round(1000 * seconds / steps, 1),
      "mean_loss": round(loss, 4), "params": profile.params,
      "multiply_adds_per_image": profile.multiply_adds,
      "train_gflops_per_sec": round(train_gflops, 1),
      "peak_conv_gflops_per_sec": round(peak, 1),
      "peak_fraction": round(train_gflops / peak, 3),
      "peak_others_cores": others_at_peak.cores,
      "peak_rss_mib_at_start": round(rss_at_start),
      "peak_rss_mib": round(rss),
  }
  if _COMPARE.value:
    keras = keras_peer.keras_rate(config, batch, steps, _WARMUP_STEPS.value,
                        profile.params)
    record.update({
        "keras": keras["framework"],
        "keras_images_per_sec": round(keras["images_per_sec"], 2),
        "keras_mean_loss": round(keras["mean_loss"], 4),
        "keras_others_cores": keras["others_cores"],
        "keras_jit_compile": keras["jit_compile"],
        "ours_over_keras": round(rate / keras["images_per_sec"], 2),
        "peak_rss_mib_after_keras": round(machine.peak_rss_mib()),
    })
  if _PROFILE_DIR.value:
    tf.profiler.experimental.start(_PROFILE_DIR.value)
    began = time.perf_counter()
    ours.run(_STEPS_PER_CALL.value)
    traced = time.perf_counter() - began
    tf.profiler.experimental.stop()
    by_type, by_part = profiles.profile_summary(_PROFILE_DIR.value)
    record["profile"] = {"steps": _STEPS_PER_CALL.value,
                         "wall_ms": round(1000 * traced, 1),
                         "conv_share_in_onednn":
                             profiles.onednn_share(by_type),
                         "op_ms_by_part": by_part,
                         "op_ms_by_type": dict(list(by_type.items())[:15])}
  if _FORMAT.value == "json":
    print(json.dumps(record))
    return
  cores = record["cores"]
  print(f"{config.display_name}, {config.family} {size}x{size}, batch {batch}, "
        f"{steps} steps ({_STEPS_PER_CALL.value} per call); {cores} cores "
        f"({record['cpu']}), load {record['load_1min']}")
  print(f"{'what':<40} {'images/s':>10} {'per core':>10}")
  print(f"{'tf_resnet Trainer (' + _PRECISION.value + ')':<40} {rate:>10.1f} "
        f"{rate / cores:>10.1f}")
  if _COMPARE.value:
    keras_rate = record["keras_images_per_sec"]
    print(f"{'Keras functional model.fit':<40} {keras_rate:>10.1f} "
          f"{keras_rate / cores:>10.1f}")
    print(f"ours / Keras: {record['ours_over_keras']}x")
  print(f"{profile.multiply_adds / 1e6:.1f}M multiply-adds per image; "
        f"training {train_gflops:.1f} GFLOP/s = {record['peak_fraction']:.1%} "
        f"of the 3x3 convolution peak ({peak:.1f} GFLOP/s)")
  slow = hardware.slow_compute_warning(ours.trainer.task.compute_dtype,
                                      f"--precision={_PRECISION.value}")
  if slow:
    print(f"note: {slow}")
  print(f"peak RSS {record['peak_rss_mib']} MiB (after importing "
        f"TensorFlow: {record['peak_rss_mib_at_start']} MiB)")
  print(f"cores kept busy by other processes while timing: ours "
        f"{record['others_cores']}, peak {record['peak_others_cores']}"
        + (f", Keras {record['keras_others_cores']}" if _COMPARE.value
           else ""))
  if "profile" in record:
    traced = record["profile"]
    total = sum(traced["op_ms_by_part"].values())
    print(f"profile of {traced['steps']} steps: {traced['wall_ms']:.0f} ms "
          f"wall, {total:.0f} ms in ops (summed over threads); "
          f"{traced['conv_share_in_onednn']:.0%} of the convolution time in "
          "oneDNN's kernels")
    for name, ms in traced["op_ms_by_part"].items():
      print(f"  {name:<44} {ms:>8.1f} ms {ms / total:>6.1%}")
  print(json.dumps(record))


if __name__ == "__main__":
  app.run(main)
