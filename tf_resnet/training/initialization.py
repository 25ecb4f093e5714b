"""Starting a run from another run's weights (fine-tuning), by variable name and shape.

`--init_from` names a run directory (a trained run, or one `tf_resnet.convert`
wrote) or one of its checkpoints. Its network is built from its own
config.json and restored; then every variable of the new network whose name
(below the network's root scope, so that `resnet20/stage_1/...` matches
`resnet20/stage_1/...` whatever the run called it) and shape match is given
the source's value. The rest keep their fresh initialisation. The
classifier (the last layer) is taken only when the new data set has the
source's classes in the source's order; otherwise it is new, for the data
set's classes (VGG's fc6 and fc7 are kept either way).

This happens once, when a run starts without a checkpoint of its own: a
rerun resumes from its own checkpoints, never from `--init_from`.
"""

import dataclasses
import functools
import os
from typing import Optional, Sequence

import tensorflow as tf

from tf_resnet.model import zoo
from tf_resnet.training import run_dir


class InitError(ValueError):
  """The source cannot initialise this network; the message says why."""


@dataclasses.dataclass(frozen=True)
class InitReport:
  """What an initialisation took from its source.

  Attributes:
    checkpoint: the source checkpoint.
    source: the source run.
    restored: names of the variables given the source's values.
    new: (name, why) of the variables that kept their initialisation.
    unused: names of source variables nothing took.
  """

  checkpoint: str
  source: run_dir.Run
  restored: tuple[str, ...]
  new: tuple[tuple[str, str], ...]
  unused: tuple[str, ...]

  def summary(self) -> str:
    """A few lines for the user."""
    lines = [f"Initialized from {self.checkpoint}: restored "
             f"{len(self.restored)} of {len(self.restored) + len(self.new)} "
             "variables"]
    lines += [f"  new: {name} ({why})" for name, why in self.new]
    if self.unused:
      lines.append(f"  not used from the source: {', '.join(self.unused)}")
    return "\n".join(lines)


@functools.lru_cache(maxsize=8)
def resolve(init_from: str) -> tuple[run_dir.Run, str]:
  """The source run and checkpoint `init_from` names.

  Checked once per process (the checkpoint is read in full to check it):
  the binary and the library ask several times.

  Args:
    init_from: a run directory (its newest checkpoint, checked to read) or a
      checkpoint path inside one (`RUN/ckpt-N` or `RUN/best/ckpt-N`).

  Raises:
    InitError: for something that is not a run, or a damaged checkpoint.
  """
  path = os.path.expanduser(init_from)
  directory = path
  if not tf.io.gfile.isdir(path):
    directory = os.path.dirname(path)
    if os.path.basename(directory) == run_dir.BEST_DIR:
      directory = os.path.dirname(directory)
  if not tf.io.gfile.exists(os.path.join(directory, run_dir.CONFIG_FILE)):
    raise InitError(
        f"--init_from={init_from} is neither a run directory (of "
        "tf_resnet.train or tf_resnet.convert) nor a checkpoint in one: "
        f"{os.path.join(directory, run_dir.CONFIG_FILE)} does not exist")
  try:
    run = run_dir.load(directory)
    if directory == path:
      return run, run_dir.latest_checkpoint(path, flag="--init_from")
  except run_dir.RunDirError as e:
    raise InitError(f"--init_from={init_from}: {e}") from None
  problem = run_dir.checkpoint_problem(path)
  if problem:
    raise InitError(f"--init_from={init_from} cannot be read: {problem}")
  return run, path


def source_for(init_from: str, config: zoo.ModelConfig
               ) -> tuple[run_dir.Run, str]:
  """`resolve`, refusing a source of another family than `config`'s.

  Raises:
    InitError: see `resolve`; or a source of another family (its images
      have another size and its mean image another shape).
  """
  source, checkpoint = resolve(init_from)
  if source.model.family != config.family:
    raise InitError(
        f"--init_from={init_from} is a {source.model.family}-family run "
        f"({source.model.display_name}); this network is "
        f"{config.family}-family")
  return source, checkpoint


def model_config(init_from: str, *, family: str, num_classes: int,
                 architecture: Optional[str] = None,
                 depth: Optional[int] = None, shortcut: Optional[str] = None,
                 sync_batch_norm: bool = False) -> zoo.ModelConfig:
  """The network to fine-tune: the source's, with the data set's classes.

  Every option that shapes the computation without changing a variable's
  shape (stride placement, the max-pool grid of a converted model) comes
  from the source, so the weights compute what they computed there.

  Args:
    init_from: see `resolve`.
    family: the data set's family.
    num_classes: the data set's classes.
    architecture, depth, shortcut: what the user asked for, if anything;
      each must agree with the source.
    sync_batch_norm: this run's choice.

  Raises:
    InitError: for a source of another family, or a request that
      contradicts it.
  """
  source, _ = resolve(init_from)
  model = source.model
  if model.family != family:
    raise InitError(
        f"--init_from={init_from} is a {model.family}-family run "
        f"({model.display_name}); the data set is {family}-family")
  for flag, asked, has in (("model", architecture, model.architecture),
                           ("depth", depth, model.depth),
                           ("shortcut", shortcut, model.shortcut)):
    if asked is not None and asked != has:
      raise InitError(f"--{flag}={asked} contradicts --init_from={init_from}"
                      f", a {model.display_name}")
  return dataclasses.replace(model, num_classes=num_classes,
                             sync_batch_norm=sync_batch_norm)


def _key(variable: tf.Variable) -> str:
  """A variable's name below its network's root scope, without `:0`."""
  name = variable.name.split(":")[0]
  return name.split("/", 1)[1] if "/" in name else name


def initialize(model: zoo.Network, config: zoo.ModelConfig,
               class_names: Sequence[str], init_from: str) -> InitReport:
  """Gives `model` the weights of `init_from` where names and shapes match.

  Call it in the scope of the strategy the model was built in.

  Args:
    model: the new network (fresh weights).
    config: its config.
    class_names: the new data set's classes, in order.
    init_from: see `resolve`.

  Returns:
    What was restored.

  Raises:
    InitError: see `source_for`.
  """
  source, checkpoint = source_for(init_from, config)
  same_classes = (source.labels is not None
                  and list(source.labels) == list(class_names))
  with tf.init_scope():
    source_model = zoo.build_model(source.model)
    tf.train.Checkpoint(model=source_model).read(
        checkpoint).expect_partial()
    values = {_key(v): v for v in source_model.variables}
    classifier = {_key(v) for v in model.classifier.variables}
    restored, new, used = [], [], set()
    for variable in model.variables:
      key = _key(variable)
      origin: Optional[tf.Variable] = values.get(key)
      if origin is None:
        new.append((key, "not in the source"))
      elif origin.shape != variable.shape:
        new.append((key, f"shape {variable.shape.as_list()}, the source's "
                         f"{origin.shape.as_list()}"))
      elif key in classifier and not same_classes:
        new.append((key, f"the data set's {len(class_names)} classes are not "
                         "the source's"))
      else:
        variable.assign(origin.read_value())
        restored.append(key)
        used.add(key)
  unused = tuple(sorted(set(values) - used - {k for k, _ in new}))
  return InitReport(checkpoint, source, tuple(restored), tuple(new), unused)
