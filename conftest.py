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


def pytest_addoption(parser):
  parser.addini("run_first", "Test files or classes (node ids) put first, in "
                "this order, ahead of the rest in collection order.",
                type="linelist", default=[])


def _rank(nodeid: str, first: list[str]) -> int:
  for i, prefix in enumerate(first):
    if nodeid == prefix or nodeid.startswith(prefix + "::"):
      return i
  return len(first)


def pytest_collection_modifyitems(config, items):
  """Drops tf.test.TestCase's inherited `test_session`, which is not a test.

  Then puts pytest.ini's `run_first` ahead (a stable sort): pytest-xdist
  hands classes out in collection order, and the longest ones started
  first leave no process alone with one of them at the end.
  """
  kept = [item for item in items if item.name != "test_session"]
  if len(kept) != len(items):
    config.hook.pytest_deselected(
        items=[item for item in items if item.name == "test_session"])
    items[:] = kept
  first = config.getini("run_first")
  if first:
    items.sort(key=lambda item: _rank(item.nodeid, first))
