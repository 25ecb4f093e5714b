"""Choosing the `tf.distribute` strategy, and logical CPU devices for machines without GPUs."""

import functools
from typing import Optional

import tensorflow as tf

STRATEGIES = ("default", "one_device", "mirrored", "multi_worker")


def split_cpu(num_devices: int) -> list[str]:
  """Splits the physical CPU into `num_devices` logical devices.

  Lets multi-replica code (MirroredStrategy) run, and be tested, on a machine
  without GPUs. Must run before TensorFlow initializes its devices, that is
  before the first op; asking again for the same split is harmless.

  Args:
    num_devices: how many logical CPU devices to make (>= 1).

  Returns:
    The logical CPU device names, e.g. `["/cpu:0", "/cpu:1"]`.

  Raises:
    ValueError: for `num_devices` < 1.
    RuntimeError: if TensorFlow's devices were already initialized with a
      different split.
  """
  if num_devices < 1:
    raise ValueError(f"`num_devices` must be at least 1, not {num_devices}")
  cpu = tf.config.list_physical_devices("CPU")[0]
  current = tf.config.get_logical_device_configuration(cpu)
  if current is None or len(current) != num_devices:
    if num_devices > 1 or current is not None:
      try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
      except RuntimeError as e:
        have = len(tf.config.list_logical_devices("CPU"))
        raise RuntimeError(
            f"cannot split the CPU into {num_devices} devices: TensorFlow "
            f"already initialized {have}; split before running any op") from e
  return [f"/cpu:{i}" for i in range(num_devices)]


@functools.lru_cache(maxsize=None)
def mirrored(devices: tuple[str, ...]) -> tf.distribute.MirroredStrategy:
  """The MirroredStrategy over `devices`, one per process.

  Two MirroredStrategy objects in one process can hand out the same
  collective instance keys, and their all-reduces then abort with a shape
  mismatch; every caller therefore shares one strategy per device set.
  """
  return tf.distribute.MirroredStrategy(list(devices))


def make_strategy(name: str = "default",
                  num_cpu_devices: Optional[int] = None
                  ) -> tf.distribute.Strategy:
  """Builds a strategy by name.

  Args:
    name: `default` (MirroredStrategy over all local GPUs when there are any,
      else over the logical CPUs when `num_cpu_devices` > 1, else the default
      strategy), `one_device`, `mirrored` (all local GPUs, or the logical
      CPUs) or `multi_worker` (MultiWorkerMirroredStrategy from `TF_CONFIG`).
    num_cpu_devices: split the CPU into this many logical devices first (for
      machines without GPUs).

  Returns:
    The strategy.

  Raises:
    ValueError: for an unknown name.
  """
  if name not in STRATEGIES:
    raise ValueError(f"`strategy` must be one of {STRATEGIES}, not {name!r}")
  cpus = split_cpu(num_cpu_devices) if num_cpu_devices else None
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
  if name == "one_device":
    return tf.distribute.OneDeviceStrategy(gpus[0] if gpus else "/cpu:0")
  devices = gpus or cpus
  if name == "mirrored" or (devices and len(devices) > 1):
    return mirrored(tuple(devices or ["/cpu:0"]))
  return tf.distribute.get_strategy()


def num_workers(strategy: tf.distribute.Strategy) -> int:
  """How many worker processes take part (1 unless multi-worker)."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return 1
  spec = resolver.cluster_spec().as_dict()
  return sum(len(spec.get(job, ())) for job in ("chief", "worker"))


@functools.lru_cache(maxsize=None)
def _replica_sum(strategy: tf.distribute.Strategy):
  """A tf.function summing a scalar over every replica of `strategy` (run
  eagerly, MultiWorkerMirroredStrategy warns of its overhead at each call)."""

  @tf.function
  def replica_sum(value):
    per_replica = strategy.run(tf.identity, args=(value,))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica,
                           axis=None)

  return replica_sum


def _sum_over_replicas(strategy: tf.distribute.Strategy, value: int) -> int:
  return int(_replica_sum(strategy)(tf.constant(int(value), tf.int64)))


def any_worker(strategy: tf.distribute.Strategy, flag: bool) -> bool:
  """Whether `flag` is set on any worker, so that every worker decides alike.

  A collective: every worker must call it at the same point. Without
  several workers it returns `flag`.
  """
  if num_workers(strategy) < 2:
    return bool(flag)
  return _sum_over_replicas(strategy, bool(flag)) > 0


def same_on_every_worker(strategy: tf.distribute.Strategy, value: int) -> bool:
  """Whether every worker holds the integer `value` (a collective, as above)."""
  if num_workers(strategy) < 2:
    return True
  return (_sum_over_replicas(strategy, value)
          == value * strategy.num_replicas_in_sync)
