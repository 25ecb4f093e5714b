"""tf_resnet: the networks of He et al. (2015), "Deep Residual Learning for
Image Recognition", as TensorFlow 2 `tf.Module`s, with their training,
evaluation, export and serving."""

__version__ = "0.1.0"
