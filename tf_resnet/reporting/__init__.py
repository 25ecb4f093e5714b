"""Reports of training runs: their logs read back, figures and tables (tf_resnet.plot)."""
