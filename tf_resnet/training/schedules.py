"""The paper's learning-rate schedules, as checkpointable `tf.Module`s.

* CIFAR-10 (section 4.2): 0.1, divided by 10 at 32k and 48k iterations:
  `PiecewiseConstant(0.1, (32000, 48000))`.
* ResNet-110 and -1202 on CIFAR-10: 0.01 until the training error is below
  80%, then back to the schedule: `Warmup(PiecewiseConstant(...))`.
* ImageNet (section 3.4): 0.1, "divided by 10 when the error plateaus":
  `ReduceOnPlateau(0.1, patience=..., threshold=...)`.

A schedule is called with the step (`schedule(step)`, also inside a
`tf.function` and in replica context) and returns a float32 scalar. The
schedules driven by observed errors (`Warmup`, `ReduceOnPlateau`) keep their
state in variables, so a checkpoint that includes them resumes the schedule
where it was; their `observe_*` methods run eagerly on the host, between
steps. Built under a `tf.distribute` strategy's scope, their variables are
mirrored and an `observe_*` call updates every copy.
"""

import math
import numbers
from typing import Callable, Optional, Sequence, Union

import tensorflow as tf

Step = Union[int, tf.Tensor, tf.Variable]
Schedule = Callable[[Step], tf.Tensor]


def _check_positive_number(name: str, value: float) -> None:
  if not value > 0.0 or math.isinf(value):
    raise ValueError(f"`{name}` must be a positive number, not {value!r}")


def _check_factor(factor: float) -> None:
  if not 0.0 < factor < 1.0:
    raise ValueError(f"`factor` must be in (0, 1), not {factor!r}")


def _check_eager(method: str) -> None:
  if not tf.executing_eagerly():
    raise RuntimeError(f"`{method}` runs eagerly on the host, between steps, "
                       "not inside a tf.function")


class PiecewiseConstant(tf.Module):
  """`base_lr * factor**k`, with k the number of boundaries <= step.

  The paper's CIFAR-10 schedule is `PiecewiseConstant(0.1, (32000, 48000))`:
  0.1 for steps 0-31999, 0.01 for 32000-47999, 0.001 from 48000.
  """

  def __init__(self,
               base_lr: float,
               boundaries: Sequence[int],
               factor: float = 0.1,
               name: Optional[str] = None):
    """Constructs the schedule.

    Args:
      base_lr: the learning rate before the first boundary.
      boundaries: the steps at which the rate is multiplied by `factor`,
        strictly increasing non-negative integers (may be empty).
      factor: the multiplier at each boundary, in (0, 1).
      name: module name.

    Raises:
      ValueError: for a non-positive `base_lr`, `factor` outside (0, 1), or
        `boundaries` that are not strictly increasing non-negative integers.
    """
    super().__init__(name=name)
    _check_positive_number("base_lr", base_lr)
    _check_factor(factor)
    boundaries = tuple(boundaries)
    for boundary in boundaries:
      if not isinstance(boundary, numbers.Integral) or boundary < 0:
        raise ValueError(
            f"`boundaries` must be non-negative integers, not {boundaries}")
    boundaries = tuple(int(b) for b in boundaries)
    if any(b >= a for b, a in zip(boundaries, boundaries[1:])):
      raise ValueError(
          f"`boundaries` must be strictly increasing, not {boundaries}")
    self.base_lr = base_lr
    self.boundaries = boundaries
    self.factor = factor
    # Each piece's rate computed in double precision, then rounded once.
    self._rates = tuple(base_lr * factor**k for k in range(len(boundaries) + 1))

  @tf.Module.with_name_scope
  def __call__(self, step: Step) -> tf.Tensor:
    """The learning rate at `step` (an integer or integer tensor), float32."""
    step = tf.cast(step, tf.int64)
    passed = tf.reduce_sum(tf.cast(
        step >= tf.constant(self.boundaries, tf.int64, [len(self.boundaries)]),
        tf.int32))
    return tf.gather(tf.constant(self._rates, tf.float32), passed)


class Warmup(tf.Module):
  """A small learning rate until the training error falls below a threshold.

  Section 4.2 of the paper, for ResNet-110 (and -1202) on CIFAR-10: "we use
  0.01 to warm up the training until the training error is below 80% (about
  400 iterations), and then go back to 0.1". While `warming_up` is True the
  rate is `warmup_lr`; the training loop reports the recent training error
  to `observe_train_error`, which ends the warm-up the first time it is below
  `until_train_error_below`; from then on the rate is the wrapped schedule's,
  and the warm-up never restarts.

  `max_warmup_steps` caps the warm-up: a network that never gets below the
  threshold (a bad initialization, or a plain net too deep to optimize)
  would otherwise train at `warmup_lr` forever, looking like a slow run
  rather than a failed criterion. From that step on the wrapped schedule is
  used whatever the error. The cap is a comparison with the step made by
  `__call__` (so it needs no host call and cannot be undone); `warming_up`
  records the error criterion only.
  """

  def __init__(self,
               schedule: Schedule,
               warmup_lr: float = 0.01,
               until_train_error_below: float = 0.8,
               *,
               max_warmup_steps: Optional[int] = None,
               enabled: bool = True,
               name: Optional[str] = None):
    """Constructs the warm-up.

    Args:
      schedule: the schedule after the warm-up, called with the same step.
      warmup_lr: the learning rate while warming up.
      until_train_error_below: the training error (a fraction in (0, 1])
        below which the warm-up ends.
      max_warmup_steps: if not None, the warm-up ends at this step at the
        latest (a positive integer).
      enabled: False makes `warming_up` start False, so `schedule` is used
        from the first step (the same checkpoint layout either way).
      name: module name.

    Raises:
      ValueError: for a non-positive `warmup_lr` or `max_warmup_steps`, or
        `until_train_error_below` outside (0, 1].
    """
    super().__init__(name=name)
    _check_positive_number("warmup_lr", warmup_lr)
    if not 0.0 < until_train_error_below <= 1.0:
      raise ValueError("`until_train_error_below` must be in (0, 1], not "
                       f"{until_train_error_below!r}")
    if max_warmup_steps is not None and (
        not isinstance(max_warmup_steps, int) or max_warmup_steps < 1):
      raise ValueError("`max_warmup_steps` must be a positive integer or "
                       f"None, not {max_warmup_steps!r}")
    self.schedule = schedule
    self.warmup_lr = warmup_lr
    self.until_train_error_below = until_train_error_below
    self.max_warmup_steps = max_warmup_steps
    with self.name_scope:
      self.warming_up = tf.Variable(bool(enabled), trainable=False,
                                    name="warming_up")

  @tf.Module.with_name_scope
  def __call__(self, step: Step) -> tf.Tensor:
    """The learning rate at `step` (an integer or integer tensor), float32."""
    warming_up = tf.convert_to_tensor(self.warming_up)
    if self.max_warmup_steps is not None:
      warming_up = tf.logical_and(
          warming_up, tf.cast(step, tf.int64) < self.max_warmup_steps)
    return tf.where(warming_up, tf.constant(self.warmup_lr, tf.float32),
                    tf.cast(self.schedule(step), tf.float32))

  def observe_train_error(self, error: Union[float, tf.Tensor]) -> bool:
    """Ends the warm-up if `error` is below the threshold.

    Called eagerly by the training loop, every so many steps, with the
    training error (a fraction) over the recent steps.

    Args:
      error: the recent training error, in [0, 1].

    Returns:
      True if this observation ended the warm-up.

    Raises:
      RuntimeError: inside a `tf.function`.
    """
    _check_eager("observe_train_error")
    if self.warming_up.numpy() and float(error) < self.until_train_error_below:
      self.warming_up.assign(False)
      return True
    return False


class ReduceOnPlateau(tf.Module):
  """Divides the learning rate when the validation error stops improving.

  The paper's ImageNet schedule: "the learning rate starts from 0.1 and is
  divided by 10 when the error plateaus". After each evaluation the training
  loop calls `observe_validation_error`. An error below the best so far by
  more than `threshold` (absolute) is an improvement, and becomes the new
  best. `patience` evaluations in a row without improvement are tolerated;
  the next one without improvement multiplies the rate by `factor` (not
  below `min_lr`) and starts the count again. With `patience=2`, say, the
  rate is reduced at the third evaluation in a row that does not improve
  (PyTorch's `ReduceLROnPlateau` counts the same way).

  The current rate, the best error, the evaluations since the last
  improvement and the number of reductions are variables, so a restored
  checkpoint continues the schedule exactly.
  """

  def __init__(self,
               base_lr: float,
               *,
               factor: float = 0.1,
               patience: int,
               threshold: float,
               min_lr: float = 0.0,
               name: Optional[str] = None):
    """Constructs the schedule.

    Args:
      base_lr: the initial learning rate (the paper's 0.1).
      factor: the multiplier at each reduction, in (0, 1) (the paper's 0.1).
      patience: how many evaluations in a row without improvement are
        tolerated before the next one reduces the rate, >= 0 (0 reduces at
        every evaluation that does not improve).
      threshold: how much (absolute, in error units) an error must be below
        the best one to count as an improvement, >= 0.
      min_lr: the rate is never reduced below this, in [0, `base_lr`].
      name: module name.

    Raises:
      ValueError: for a non-positive `base_lr`, `factor` outside (0, 1), a
        negative or non-integer `patience`, a negative `threshold`, or
        `min_lr` outside [0, `base_lr`].
    """
    super().__init__(name=name)
    _check_positive_number("base_lr", base_lr)
    _check_factor(factor)
    if not isinstance(patience, int) or patience < 0:
      raise ValueError(
          f"`patience` must be a non-negative integer, not {patience!r}")
    if not threshold >= 0.0:
      raise ValueError(f"`threshold` must be >= 0, not {threshold!r}")
    if not 0.0 <= min_lr <= base_lr:
      raise ValueError(f"`min_lr` must be in [0, `base_lr`] = [0, {base_lr}], "
                       f"not {min_lr!r}")
    self.base_lr = base_lr
    self.factor = factor
    self.patience = patience
    self.threshold = threshold
    self.min_lr = min_lr
    with self.name_scope:
      self.learning_rate = tf.Variable(base_lr, dtype=tf.float32,
                                       trainable=False, name="learning_rate")
      # Double precision: compared on the host with errors given as floats.
      self.best_error = tf.Variable(math.inf, dtype=tf.float64,
                                    trainable=False, name="best_error")
      self.evaluations_since_improvement = tf.Variable(
          0, dtype=tf.int64, trainable=False,
          name="evaluations_since_improvement")
      self.num_reductions = tf.Variable(0, dtype=tf.int64, trainable=False,
                                        name="num_reductions")

  @tf.Module.with_name_scope
  def __call__(self, step: Step) -> tf.Tensor:
    """The current learning rate, float32 (`step` is not used)."""
    del step  # The rate depends on the observed errors only.
    return tf.identity(self.learning_rate)

  def observe_validation_error(self, error: Union[float, tf.Tensor]) -> bool:
    """Records an evaluation's error; reduces the rate after a plateau.

    Args:
      error: the validation error of the evaluation just made.

    Returns:
      True if this observation reduced the learning rate.

    Raises:
      RuntimeError: inside a `tf.function`.
    """
    _check_eager("observe_validation_error")
    error = float(error)
    if error < float(self.best_error.numpy()) - self.threshold:
      self.best_error.assign(error)
      self.evaluations_since_improvement.assign(0)
      return False
    waited = int(self.evaluations_since_improvement.numpy()) + 1
    if waited <= self.patience:
      self.evaluations_since_improvement.assign(waited)
      return False
    self.evaluations_since_improvement.assign(0)
    # From `base_lr` in double precision, so that reductions do not
    # accumulate float32 rounding.
    reductions = int(self.num_reductions.numpy())
    current = max(self.base_lr * self.factor**reductions, self.min_lr)
    reduced = max(self.base_lr * self.factor**(reductions + 1), self.min_lr)
    if reduced >= current:
      return False
    self.learning_rate.assign(reduced)
    self.num_reductions.assign(reductions + 1)
    return True
