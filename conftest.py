"""pytest configuration shared by every test in the repository."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(config, items):
  """Drops tf.test.TestCase's inherited `test_session`, which is not a test."""
  kept = [item for item in items if item.name != "test_session"]
  if len(kept) != len(items):
    config.hook.pytest_deselected(
        items=[item for item in items if item.name == "test_session"])
    items[:] = kept
