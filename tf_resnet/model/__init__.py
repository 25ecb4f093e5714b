"""Layers and networks as `tf.Module`s: the paper's residual and plain nets and VGG-19."""
