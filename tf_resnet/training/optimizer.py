"""SGD with momentum and weight decay in the paper's (Caffe's) form.

The paper trains with SGD, "a weight decay of 0.0001 and a momentum of 0.9"
(section 3.4). Its released models come from Caffe, whose SGD solver updates

    v <- momentum * v + learning_rate * (g + weight_decay * w)
    w <- w - v

The learning rate multiplies the gradient before it enters the velocity
(`tf.keras.optimizers.SGD` has the same form), so when the learning rate is
divided by 10 the very next step is affected only through its new term: the
velocity gathered at the old rate keeps its size and decays at the
momentum's pace. In PyTorch's form,

    v <- momentum * v + g
    w <- w - learning_rate * v,

the learning rate multiplies the whole velocity, so a drop also shrinks at
once the contribution of every past gradient. The two agree while the
learning rate is constant (their velocities differ by the factor
`learning_rate`), and differ on the steps after it changes.
"""

from typing import Optional, Sequence, Union

import tensorflow as tf

LearningRate = Union[float, tf.Tensor, tf.Variable]


def _slot_name(variable: tf.Variable) -> str:
  name = variable.name
  return name[:-2] if name.endswith(":0") else name


class SGDMomentum(tf.Module):
  """SGD with momentum and L2 weight decay, Caffe's form (see the module doc).

  The velocity slots and the step counter are variables of this module, so
  `tf.train.Checkpoint(optimizer=...)` saves and restores them; a restored
  optimizer must be built over the same variables, in the same order.

  Under a `tf.distribute` strategy, build the optimizer inside
  `strategy.scope()`, the scope the model's variables were created in: the
  slots are then mirrored like the variables they follow. `apply` may be
  called in replica context (inside `strategy.run`), where it updates the
  variables through `merge_call` and `strategy.extended.update`, or in
  cross-replica context; the same code path serves the default strategy.
  """

  def __init__(self,
               variables: Sequence[tf.Variable],
               *,
               momentum: float = 0.9,
               weight_decay: float = 1e-4,
               decay_variables: Optional[Sequence[tf.Variable]] = None,
               learning_rate_multipliers: Optional[Sequence[float]] = None,
               name: Optional[str] = None):
    """Constructs the optimizer and its slots.

    Args:
      variables: the variables to train, in the order of the gradients that
        `apply` will be given.
      momentum: the velocity's decay per step, in [0, 1). The paper's is 0.9.
      weight_decay: the L2 penalty's coefficient, >= 0, added to the gradient
        of each variable of `decay_variables`. The paper's is 1e-4.
      decay_variables: the subset of `variables` that is decayed (the training
        code passes the convolution and fully-connected kernels), compared by
        identity; None decays all of `variables`.
      learning_rate_multipliers: one factor per variable on the learning
        rate it is updated with (Caffe's `lr_mult`; fine-tuning gives a new
        classifier a larger rate); None: 1 for all.
      name: module name.

    Raises:
      ValueError: for empty or repeated `variables`, a non-floating variable,
        a variable not created under the current strategy's scope, a
        `decay_variables` entry not in `variables`, a multiplier per
        variable missing or negative, or `momentum` or `weight_decay` out of
        range.
    """
    super().__init__(name=name)
    variables = list(variables)
    if not variables:
      raise ValueError("`variables` must not be empty")
    refs = set()
    for variable in variables:
      if variable.ref() in refs:
        raise ValueError(
            f"`variables` must not repeat a variable, but {variable.name} "
            "appears more than once")
      refs.add(variable.ref())
      if not variable.dtype.is_floating:
        raise ValueError(
            f"`variables` must be floating point, but {variable.name} is "
            f"{variable.dtype.name}")
    if not 0.0 <= momentum < 1.0:
      raise ValueError(f"`momentum` must be in [0, 1), not {momentum}")
    if weight_decay < 0.0:
      raise ValueError(f"`weight_decay` must be >= 0, not {weight_decay}")
    if decay_variables is None:
      decayed = refs
    else:
      decayed = {v.ref() for v in decay_variables}
      for variable in decay_variables:
        if variable.ref() not in refs:
          raise ValueError(
              f"`decay_variables` must be a subset of `variables`, but "
              f"{variable.name} is not one of them")
    multipliers = (tuple(float(m) for m in learning_rate_multipliers)
                   if learning_rate_multipliers is not None
                   else (1.0,) * len(variables))
    if len(multipliers) != len(variables) or min(multipliers) < 0:
      raise ValueError(f"`learning_rate_multipliers` must be {len(variables)} "
                       f"non-negative numbers, not {list(multipliers)}")
    strategy = tf.distribute.get_strategy()
    for variable in variables:
      if not strategy.extended.variable_created_in_scope(variable):
        raise ValueError(
            f"`variables` must be created under the scope of the strategy the "
            f"optimizer is built in ({type(strategy).__name__}), but "
            f"{variable.name} was not; build the optimizer inside the model's "
            "`strategy.scope()`")

    # References, not the variables themselves: the optimizer does not own
    # the model's variables, so neither its checkpoint dependencies nor its
    # `variables` should list them.
    self._variable_refs = tuple(v.ref() for v in variables)
    self._decays = tuple(v.ref() in decayed for v in variables)
    self._multipliers = multipliers
    self._strategy = strategy
    self.momentum = momentum
    self.weight_decay = weight_decay
    with self.name_scope:
      self.velocities = [
          tf.Variable(tf.zeros(v.shape, v.dtype), trainable=False,
                      name=f"velocity/{_slot_name(v)}") for v in variables
      ]
      self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False,
                                    name="iterations")

  @tf.Module.with_name_scope
  def apply(self, gradients: Sequence[tf.Tensor],
            learning_rate: LearningRate,
            should_apply: Optional[tf.Tensor] = None) -> None:
    """Takes one step.

    Under `tf.distribute`, call it from the per-replica step function with
    gradients that are already summed over the replicas (with the loss
    scaled by the global batch): each replica's copy of a variable is
    updated with its own replica's gradient, so gradients that differ
    between replicas would make the copies drift apart.

    Args:
      gradients: one gradient per variable, in the order of `variables`.
      learning_rate: a Python number or a scalar tensor or variable. Inside
        a `tf.function` a Python number is a constant of the trace (a new
        value retraces); pass a tensor or variable for a rate that changes.
      should_apply: an optional boolean scalar, the same on every replica;
        when False the step is skipped (variables, velocities and
        `iterations` unchanged), as mixed precision does after an overflow.

    Raises:
      ValueError: for the wrong number of gradients, a None gradient or one
        whose shape or dtype does not match its variable's, or a negative
        Python `learning_rate`.
      RuntimeError: when called under a strategy other than the one the
        optimizer was built in.
    """
    gradients = list(gradients)
    if len(gradients) != len(self._variable_refs):
      raise ValueError(
          f"`gradients` must have one entry per variable "
          f"({len(self._variable_refs)}), not {len(gradients)}")
    variables = [ref.deref() for ref in self._variable_refs]
    for gradient, variable in zip(gradients, variables):
      if gradient is None:
        raise ValueError(f"`gradients` has None for {variable.name}: the loss "
                         "does not depend on it")
      if not gradient.shape.is_compatible_with(variable.shape):
        raise ValueError(
            f"`gradients` has shape {gradient.shape} for {variable.name}, "
            f"whose shape is {variable.shape}")
      if gradient.dtype != variable.dtype:
        raise ValueError(
            f"`gradients` has dtype {gradient.dtype.name} for {variable.name}, "
            f"whose dtype is {variable.dtype.name}")
    if isinstance(learning_rate, (int, float)) and learning_rate < 0:
      raise ValueError(f"`learning_rate` must be >= 0, not {learning_rate}")
    strategy = tf.distribute.get_strategy()
    if strategy is not self._strategy:
      raise RuntimeError(
          f"`apply` was called under {type(strategy).__name__}, but the "
          f"optimizer was built under {type(self._strategy).__name__}")

    if tf.distribute.in_cross_replica_context():
      self._distributed_apply(strategy, gradients, learning_rate,
                              should_apply)
    else:
      # Mirrored variables cannot be assigned from one replica: merge the
      # replicas' calls into one cross-replica update.
      tf.distribute.get_replica_context().merge_call(
          self._distributed_apply,
          args=(gradients, learning_rate, should_apply))

  def _distributed_apply(self, strategy: tf.distribute.Strategy,
                         gradients: Sequence[tf.Tensor],
                         learning_rate: LearningRate,
                         should_apply: Optional[tf.Tensor] = None) -> None:
    """Updates every copy of every variable, in cross-replica context."""
    for ref, velocity, gradient, decay, multiplier in zip(
        self._variable_refs, self.velocities, gradients, self._decays,
        self._multipliers):
      # `update` runs `_update` once per copy of the variable, on its device,
      # with that replica's gradient; `velocity` is passed whole and resolves
      # to its copy on the same replica.
      rate = learning_rate if multiplier == 1.0 else learning_rate * multiplier
      strategy.extended.update(
          ref.deref(), self._update,
          args=(velocity, gradient, rate,
                self.weight_decay if decay else 0.0, should_apply),
          group=False)
    if should_apply is None:
      self.iterations.assign_add(1)
    else:
      applied = strategy.experimental_local_results(should_apply)[0]
      self.iterations.assign_add(tf.cast(applied, tf.int64))

  def _update(self, variable: tf.Variable, velocity: tf.Variable,
              gradient: tf.Tensor, learning_rate: LearningRate,
              weight_decay: float,
              should_apply: Optional[tf.Tensor] = None) -> None:
    """Caffe's step on one copy of one variable."""
    learning_rate = tf.cast(learning_rate, variable.dtype)
    if weight_decay:
      gradient += weight_decay * variable
    new_velocity = self.momentum * velocity + learning_rate * gradient
    if should_apply is not None:
      new_velocity = tf.where(should_apply, new_velocity, velocity)
      step = tf.where(should_apply, new_velocity, tf.zeros_like(new_velocity))
    else:
      step = new_velocity
    velocity.assign(new_velocity)
    variable.assign_sub(step)
