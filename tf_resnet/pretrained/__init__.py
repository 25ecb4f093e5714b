"""Pretrained ImageNet weights: Keras's and torchvision's ResNets converted exactly into this project's networks."""
