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

import collections
import json
import os
import re
import resource
import sys
import time
from typing import Optional

from tf_resnet import startup

startup.quiet_tensorflow_logs()

# pylint: disable=g-import-not-at-top,g-bad-import-order
from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from tf_resnet import cli
from tf_resnet.analysis import cost
from tf_resnet.data import sources
from tf_resnet.data import stats as stats_lib
from tf_resnet.model import resnet
from tf_resnet.model import zoo
from tf_resnet.training import config as config_lib
from tf_resnet.training import strategy as strategy_lib
from tf_resnet.training import task as task_lib
from tf_resnet.training import trainer as trainer_lib
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

_LEARNING_RATE = 0.1
_MOMENTUM = 0.9
_WEIGHT_DECAY = 1e-4
# The peak convolution: a 3x3 layer of ResNet's first stage at batch 64.
_PEAK_SHAPE = (64, 56, 56, 64)


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return "unknown"


def _peak_rss_mib() -> float:
  # ru_maxrss is in KiB on Linux.
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _OthersLoad:
  """Cores that other processes kept busy while it was open, from /proc/stat.

  The machines are shared: a figure measured while something else ran is
  not comparable with one measured alone, and this says which is which.
  None where /proc/stat cannot be read.
  """

  @staticmethod
  def _busy_seconds() -> Optional[float]:
    try:
      with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
      return None
    # user nice system idle iowait irq softirq steal: all but idle and
    # iowait is busy (steal too: the hypervisor ran someone else).
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")

  def __enter__(self):
    self.cores: Optional[float] = None
    self._busy = self._busy_seconds()
    self._own = sum(os.times()[:2])
    self._began = time.perf_counter()
    return self

  def __exit__(self, *exc):
    busy = self._busy_seconds()
    if busy is None or self._busy is None:
      return
    others = (busy - self._busy) - (sum(os.times()[:2]) - self._own)
    self.cores = round(max(others, 0.0) / (time.perf_counter() - self._began),
                       2)


def _synthetic_batch(batch: int, size: int, num_classes: int):
  images = tf.random.normal([batch, size, size, 3], seed=1)
  labels = tf.random.uniform([batch], 0, num_classes, tf.int32, seed=2)
  return images, labels


def _conv_peak(calls: int, dtype: tf.DType) -> float:
  """GFLOP/s of a large 3x3 convolution in `dtype`: the machine's practical peak."""
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


class _OurStep:
  """The library's Trainer, training on one batch held in memory."""

  def __init__(self, config: zoo.ModelConfig, batch: int, precision: str):
    strategy = strategy_lib.make_strategy("default")
    train_config = config_lib.paper_config(
        config, dataset="synthetic", model_dir="/nonexistent",
        batch_size=batch, kind="steps", boundaries=(),
        learning_rate=_LEARNING_RATE, momentum=_MOMENTUM,
        weight_decay=_WEIGHT_DECAY, warmup_learning_rate=None,
        precision=precision)
    images, labels = _synthetic_batch(batch, config.input_size,
                                      config.num_classes)
    replicas = strategy.num_replicas_in_sync
    if batch % replicas:
      raise ValueError(f"--batch_size={batch} must be divisible by the number "
                       f"of replicas ({replicas})")

    def dataset_fn(ctx):
      # Each replica's slice of the one batch, again and again: a pipeline
      # hands its elements to its replicas in turn.
      del ctx
      size = config.input_size
      return tf.data.Dataset.from_tensor_slices(
          (tf.reshape(images, [replicas, -1, size, size, 3]),
           tf.reshape(labels, [replicas, -1]))).cache().repeat()

    source = sources.SyntheticSource(config.family, config.num_classes)
    statistics = stats_lib.Statistics(
        mean_image=np.zeros([config.input_size, config.input_size, 3],
                            np.float32),
        eigenvalues=np.ones([3], np.float32),
        eigenvectors=np.eye(3, dtype=np.float32), num_images=0,
        pca_source="data")
    self.trainer = trainer_lib.Trainer(train_config, strategy, source,
                                       statistics, dataset_fn=dataset_fn)
    self.strategy = strategy
    self.model = self.trainer.model

  def run(self, num_steps: int) -> trainer_lib.TrainMetrics:
    """Runs `num_steps` steps in one call of the Trainer."""
    return self.trainer.train(num_steps)

  def time(self, steps: int, steps_per_call: int) -> tuple[float, float]:
    """Seconds for `steps` steps in calls of `steps_per_call`, and mean loss."""
    calls = [steps_per_call] * (steps // steps_per_call)
    if steps % steps_per_call:
      calls.append(steps % steps_per_call)
    seconds = loss = 0.0
    began = time.perf_counter()
    for num_steps in calls:
      metrics = self.run(num_steps)
      loss += metrics.loss * num_steps
    seconds = time.perf_counter() - began
    return seconds, loss / steps


class _ZeroPadShortcut(tf.keras.layers.Layer):
  """Option A in Keras: subsample, then append zero channels."""

  def __init__(self, stride: int, extra_channels: int, **kwargs):
    super().__init__(**kwargs)
    self.stride = stride
    self.extra_channels = extra_channels

  def call(self, inputs):
    outputs = inputs[:, ::self.stride, ::self.stride, :]
    return tf.pad(outputs, [[0, 0], [0, 0], [0, 0], [0, self.extra_channels]])


def keras_network(config: zoo.ModelConfig) -> tf.keras.Model:
  """The zoo's network as a Keras user would write it: a functional model.

  Same stages, widths, blocks and shortcut option as `zoo.build_model`, the
  same initialisation (untruncated He normal on the fan-in) and batch-norm
  decay and epsilon; BN after each convolution; Keras's own `same` padding
  (which pads stride-2 layers on the bottom-right only: the same shapes and
  multiply-adds as ours).

  Args:
    config: a ResNet of either family.

  Returns:
    An uncompiled `tf.keras.Model` from NHWC images to logits.
  """
  layers = tf.keras.layers
  # Keras's L2 has no 1/2: wd/2 gives the gradient wd * w that ours adds.
  decay = tf.keras.regularizers.L2(_WEIGHT_DECAY / 2)
  init = tf.keras.initializers.VarianceScaling(2.0, "fan_in",
                                               "untruncated_normal")

  def conv_bn(x, channels, kernel, stride):
    x = layers.Conv2D(channels, kernel, stride, padding="same",
                      use_bias=False, kernel_initializer=init,
                      kernel_regularizer=decay)(x)
    return layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)

  def shortcut(x, channels, stride):
    grows = stride > 1 or x.shape[-1] != channels
    if config.shortcut == "C" or (config.shortcut == "B" and grows):
      return conv_bn(x, channels, 1, stride)
    if grows:
      return _ZeroPadShortcut(stride, channels - x.shape[-1])(x)
    return x

  def block(x, width, stride):
    if bottleneck:
      y = layers.ReLU()(conv_bn(x, width, 1, stride))
      y = layers.ReLU()(conv_bn(y, width, 3, 1))
      y = conv_bn(y, 4 * width, 1, 1)
      channels = 4 * width
    else:
      y = layers.ReLU()(conv_bn(x, width, 3, stride))
      y = conv_bn(y, width, 3, 1)
      channels = width
    return layers.ReLU()(layers.Add()([y, shortcut(x, channels, stride)]))

  size = config.input_size
  inputs = layers.Input((size, size, 3))
  if config.family == "imagenet":
    kind, counts = resnet.imagenet_stages(config.depth)
    bottleneck, widths = kind == "bottleneck", resnet.IMAGENET_WIDTHS
    x = layers.ReLU()(conv_bn(inputs, widths[0], 7, 2))
    x = layers.MaxPool2D(3, 2, padding="same")(x)
  else:
    n = resnet.cifar_blocks_per_stage(config.depth)
    bottleneck, widths, counts = False, resnet.CIFAR_WIDTHS, (n,) * 3
    x = layers.ReLU()(conv_bn(inputs, widths[0], 3, 1))
  for stage, (width, count) in enumerate(zip(widths, counts)):
    for i in range(count):
      x = block(x, width, 2 if stage > 0 and i == 0 else 1)
  x = layers.GlobalAveragePooling2D()(x)
  outputs = layers.Dense(config.num_classes, kernel_initializer=init,
                         kernel_regularizer=decay)(x)
  return tf.keras.Model(inputs, outputs, name=f"keras_resnet{config.depth}")


class _EpochTimer(tf.keras.callbacks.Callback):
  """Seconds of the last epoch (the logs are synced when it ends)."""

  def on_epoch_begin(self, epoch, logs=None):
    self.began = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    self.seconds = time.perf_counter() - self.began
    self.loss = float(logs["loss"])


def _keras_rate(config: zoo.ModelConfig, batch: int, steps: int,
                warmup_steps: int, expected_params: int) -> dict:
  """Images/s of `model.fit` on the same network, one batch repeated."""
  # Keras 3 draws its initial weights from its own seed generator.
  tf.keras.utils.set_random_seed(0)
  model = keras_network(config)
  params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
  if params != expected_params:
    raise RuntimeError(f"the Keras network has {params} parameters, ours "
                       f"{expected_params}: they are not the same network")
  model.compile(
      optimizer=tf.keras.optimizers.SGD(_LEARNING_RATE, momentum=_MOMENTUM),
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
  data = tf.data.Dataset.from_tensors(
      _synthetic_batch(batch, config.input_size, config.num_classes)).repeat()
  # The first fit traces and warms up; the second, which reuses the traced
  # train function, is timed from its epoch's start to its end.
  model.fit(data, steps_per_epoch=warmup_steps, epochs=1, verbose=0,
            shuffle=False)
  timer = _EpochTimer()
  with _OthersLoad() as others:
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False,
              callbacks=[timer])
  return {"images_per_sec": batch * steps / timer.seconds,
          "others_cores": others.cores,
          "seconds": timer.seconds, "mean_loss": timer.loss,
          "params": params, "jit_compile": bool(model.jit_compile),
          "framework": f"keras {tf.keras.__version__} fit"}


# A TensorFlow op's event on the profiler's host plane: "scope/name:Type"
# (oneDNN's kernels have types "_MklNative...": they say which kernel ran).
_OP_EVENT = re.compile(r"^([^\s:]+):([A-Za-z_]\w*)$")


def _part(scope: str, op_type: str) -> str:
  """Which part of the step an op belongs to."""
  if "/sgd/" in f"/{scope}/":
    return "optimizer update"
  if "Conv2DBackprop" in op_type:
    return "convolution backward"
  if "Conv2D" in op_type:
    return "convolution forward"
  if "FusedBatchNormGrad" in op_type:
    return "batch norm backward"
  if "FusedBatchNorm" in op_type:
    return "batch norm forward"
  if "/shortcut/" in scope:
    return "identity shortcuts (slice, pad, gradients)"
  if "/bn" in scope:
    return "batch norm moving averages"
  if "Relu" in op_type:
    return "ReLU and its gradient"
  return "other"


def profile_summary(logdir: str) -> tuple[dict[str, float], dict[str, float]]:
  """Milliseconds by op type and by part of the step in a profiler trace.

  Reads the newest XSpace (`*.xplane.pb`, the profiler's output) under
  `logdir` with TensorFlow's own protos, and sums the durations of the op
  events on the host plane. Ops on TensorFlow's two inter-op threads can
  overlap, so the sum can exceed the wall time.

  Returns:
    Milliseconds by op type and by part (see `_part`), largest first.
  """
  # pylint: disable-next=g-import-not-at-top
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  paths = tf.io.gfile.glob(os.path.join(logdir, "plugins", "profile", "*",
                                        "*.xplane.pb"))
  by_type, by_part = collections.Counter(), collections.Counter()
  if not paths:
    return {}, {}
  space = xplane_pb2.XSpace()
  with tf.io.gfile.GFile(max(paths), "rb") as f:
    space.ParseFromString(f.read())
  for plane in space.planes:
    if not plane.name.startswith("/host:CPU"):
      continue
    for line in plane.lines:
      for event in line.events:
        match = _OP_EVENT.match(plane.event_metadata[event.metadata_id].name)
        if match:
          ms = event.duration_ps / 1e9
          by_type[match.group(2)] += ms
          by_part[_part(match.group(1), match.group(2))] += ms
  return ({k: round(v, 1) for k, v in by_type.most_common()},
          {k: round(v, 1) for k, v in by_part.most_common()})


def main(argv):
  cli.start(argv)
  load = os.getloadavg()[0]
  rss_at_start = _peak_rss_mib()
  family = cli.family_hint(_DATASET.value or "synthetic", None, "resnet",
                           _DEPTH.value)
  try:
    config = zoo.ModelConfig(family=family, depth=_DEPTH.value)
    ours = _OurStep(config, _BATCH_SIZE.value, _PRECISION.value)
  except ValueError as e:
    cli.fail(str(e))
  batch, steps = _BATCH_SIZE.value, _STEPS.value
  size = config.input_size
  profile = cost.profile(ours.model, (size, size, 3))
  ours.run(_WARMUP_STEPS.value)
  with _OthersLoad() as others:
    seconds, loss = ours.time(steps, _STEPS_PER_CALL.value)
  rss = _peak_rss_mib()
  with _OthersLoad() as others_at_peak:
    peak = _conv_peak(_PEAK_CALLS.value,
                      ours.trainer.task.compute_dtype)
  rate = batch * steps / seconds
  train_gflops = 3 * 2 * profile.multiply_adds * rate / 1e9
  record = {
      "date": time.strftime("%Y-%m-%d %H:%M"), "cores": os.cpu_count(),
      "cpu": _cpu_model(), "load_1min": round(load, 2),
      "tensorflow": tf.__version__, "network": config.display_name,
      "family": config.family, "depth": config.depth, "batch_size": batch,
      "image_size": size, "replicas": ours.strategy.num_replicas_in_sync,
      "precision": _PRECISION.value,
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
    keras = _keras_rate(config, batch, steps, _WARMUP_STEPS.value,
                        profile.params)
    record.update({
        "keras": keras["framework"],
        "keras_images_per_sec": round(keras["images_per_sec"], 2),
        "keras_mean_loss": round(keras["mean_loss"], 4),
        "keras_others_cores": keras["others_cores"],
        "keras_jit_compile": keras["jit_compile"],
        "ours_over_keras": round(rate / keras["images_per_sec"], 2),
        "peak_rss_mib_after_keras": round(_peak_rss_mib()),
    })
  if _PROFILE_DIR.value:
    tf.profiler.experimental.start(_PROFILE_DIR.value)
    began = time.perf_counter()
    ours.run(_STEPS_PER_CALL.value)
    traced = time.perf_counter() - began
    tf.profiler.experimental.stop()
    by_type, by_part = profile_summary(_PROFILE_DIR.value)
    record["profile"] = {"steps": _STEPS_PER_CALL.value,
                         "wall_ms": round(1000 * traced, 1),
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
          f"wall, {total:.0f} ms in ops (summed over threads)")
    for name, ms in traced["op_ms_by_part"].items():
      print(f"  {name:<44} {ms:>8.1f} ms {ms / total:>6.1%}")
  print(json.dumps(record))


if __name__ == "__main__":
  app.run(main)
