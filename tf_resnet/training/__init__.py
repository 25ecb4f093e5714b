"""Training: config, optimizer and schedules, the task's step, the loop, strategies.

The binary that drives it is `tf_resnet.train` (`tf_resnet/train.py`).
"""
