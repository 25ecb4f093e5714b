"""The real Trainer fed one batch held in memory: a training step's speed alone.

Built as `tf_resnet.train` builds it (`training.config.paper_config`, the
strategy of `make_strategy("default")`, `trainer.Trainer`), so the benchmarks
cannot drift from training; only the input differs (one synthetic batch,
each replica's slice on its device, instead of the input pipeline) and the
learning rate is a constant 0.1.
"""

import dataclasses
import time

import numpy as np
import tensorflow as tf

from tf_resnet.data import sources
from tf_resnet.data import stats as stats_lib
from tf_resnet.model import zoo
from tf_resnet.training import config as config_lib
from tf_resnet.training import strategy as strategy_lib
from tf_resnet.training import trainer as trainer_lib

LEARNING_RATE = 0.1
MOMENTUM = 0.9
WEIGHT_DECAY = 1e-4


def synthetic_batch(batch: int, size: int, num_classes: int):
  """The one batch of random images and labels every benchmark trains on."""
  images = tf.random.normal([batch, size, size, 3], seed=1)
  labels = tf.random.uniform([batch], 0, num_classes, tf.int32, seed=2)
  return images, labels


class InMemoryTrainer:
  """The library's Trainer, training on one batch held in memory."""

  def __init__(self, config: zoo.ModelConfig, batch: int,
               precision: str = "float32"):
    strategy = strategy_lib.make_strategy("default")
    train_config = config_lib.paper_config(
        config, dataset="synthetic", model_dir="/nonexistent",
        batch_size=batch, kind="steps", boundaries=(),
        learning_rate=LEARNING_RATE, momentum=MOMENTUM,
        weight_decay=WEIGHT_DECAY, precision=precision)
    # A constant rate, also for nets the paper warms up (ResNet-110).
    train_config = dataclasses.replace(
        train_config, schedule=dataclasses.replace(
            train_config.schedule, warmup_learning_rate=None))
    images, labels = synthetic_batch(batch, config.input_size,
                                      config.num_classes)
    replicas = strategy.num_replicas_in_sync  # The Trainer checks batch.

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
