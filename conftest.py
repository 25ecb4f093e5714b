"""pytest configuration shared by every test in the repository."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# TensorFlow's oneDNN kernels, as every binary turns them on (startup.py),
# before anything imports TensorFlow: the tests run the kernels users run.
from tf_resnet import startup  # pylint: disable=g-import-not-at-top

startup.use_onednn()

# Two logical CPUs for the whole session, before any test runs an op, so
# tests can compare one replica with two (under Bazel each test file is its
# own process and makes the same split itself).
from tf_resnet.training import strategy  # pylint: disable=g-import-not-at-top

strategy.split_cpu(2)


def pytest_collection_modifyitems(config, items):
  """Drops tf.test.TestCase's inherited `test_session`, which is not a test."""
  kept = [item for item in items if item.name != "test_session"]
  if len(kept) != len(items):
    config.hook.pytest_deselected(
        items=[item for item in items if item.name == "test_session"])
    items[:] = kept
