"""The Keras peer of the training benchmark: the same network with `model.fit`.

`keras_network` writes the zoo's ResNets as a Keras user would (a functional
model); `keras_rate` times `model.fit` on one batch held in memory, in the
same process as the project's own Trainer.
"""

import time

import numpy as np
import tensorflow as tf

import in_memory
import machine
from tf_resnet.model import resnet
from tf_resnet.model import zoo



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
  decay = tf.keras.regularizers.L2(in_memory.WEIGHT_DECAY / 2)
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


def keras_rate(config: zoo.ModelConfig, batch: int, steps: int,
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
      optimizer=tf.keras.optimizers.SGD(in_memory.LEARNING_RATE,
                                        momentum=in_memory.MOMENTUM),
      loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=[tf.keras.metrics.SparseCategoricalAccuracy()])
  data = tf.data.Dataset.from_tensors(
      in_memory.synthetic_batch(batch, config.input_size,
                                config.num_classes)).repeat()
  # The first fit traces and warms up; the second, which reuses the traced
  # train function, is timed from its epoch's start to its end.
  model.fit(data, steps_per_epoch=warmup_steps, epochs=1, verbose=0,
            shuffle=False)
  timer = _EpochTimer()
  with machine.OthersLoad() as others:
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False,
              callbacks=[timer])
  return {"images_per_sec": batch * steps / timer.seconds,
          "others_cores": others.cores,
          "seconds": timer.seconds, "mean_loss": timer.loss,
          "params": params, "jit_compile": bool(model.jit_compile),
          "framework": f"keras {tf.keras.__version__} fit"}
