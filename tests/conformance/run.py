r"""Runs TF Serving's own integration tests against tf_resnet's server.

TensorFlow Serving tests `tensorflow_model_server` with
tensorflow_serving/model_servers/tensorflow_model_server_test.py (and its
test_util/tensorflow_model_server_test_base.py), which start the binary from
Bazel's runfiles ($TEST_SRCDIR/tf_serving/tensorflow_serving/model_servers/
tensorflow_model_server) on the SavedModels of
tensorflow_serving/servables/tensorflow/testdata/. This script lays out that
runfiles tree from a tensorflow/serving checkout, with the binary replaced by
./tensorflow_model_server (which runs `python -m tf_resnet.serving.server`),
and runs the test file unmodified. Nothing of TF Serving's is copied into
this repository: it is read from the checkout given.

  .venv/bin/pip install portpicker   # TF Serving's test base imports it.
  .venv/bin/python tests/conformance/run.py /path/to/serving [TestName ...]

Exit status: the test runner's.
"""

import argparse
import os
import subprocess
import sys
import tempfile

_HERE = os.path.dirname(os.path.abspath(__file__))
_TEST = "tensorflow_serving/model_servers/tensorflow_model_server_test.py"

# Makes `tensorflow_serving.model_servers.test_util` (only in the checkout)
# importable beside the installed tensorflow-serving-api package, then runs
# the test file as __main__ with the remaining arguments.
_BOOTSTRAP = """
import runpy, sys
import tensorflow_serving
checkout, test = sys.argv[1], sys.argv[2]
tensorflow_serving.__path__.append(checkout + "/tensorflow_serving")
sys.argv = [test] + sys.argv[3:]
runpy.run_path(test, run_name="__main__")
"""


def runfiles(checkout: str, root: str) -> str:
  """$TEST_SRCDIR: the checkout's tensorflow_serving, our binary in place."""
  source = os.path.join(checkout, "tensorflow_serving")
  target = os.path.join(root, "tf_serving", "tensorflow_serving")
  os.makedirs(target)
  for name in os.listdir(source):
    if name != "model_servers":
      os.symlink(os.path.join(source, name), os.path.join(target, name))
  servers = os.path.join(target, "model_servers")
  os.makedirs(servers)
  for name in os.listdir(os.path.join(source, "model_servers")):
    os.symlink(os.path.join(source, "model_servers", name),
               os.path.join(servers, name))
  os.symlink(os.path.join(_HERE, "tensorflow_model_server"),
             os.path.join(servers, "tensorflow_model_server"))
  return root


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("checkout", help="a tensorflow/serving checkout")
  parser.add_argument("tests", nargs="*",
                      help="test names (default: all), e.g. "
                      "TensorflowModelServerTest.testClassify")
  args = parser.parse_args()
  checkout = os.path.abspath(args.checkout)
  test = os.path.join(checkout, _TEST)
  if not os.path.isfile(test):
    parser.error(f"{test} does not exist: is {checkout} a tensorflow/serving "
                 "checkout?")
  root = tempfile.mkdtemp(prefix="tf_serving_conformance_")
  env = dict(os.environ, TEST_SRCDIR=runfiles(checkout, os.path.join(
      root, "runfiles")), TEST_TMPDIR=os.path.join(root, "tmp"),
             TF_RESNET_PYTHON=sys.executable, TF_CPP_MIN_LOG_LEVEL="2")
  os.makedirs(env["TEST_TMPDIR"])
  return subprocess.call([sys.executable, "-c", _BOOTSTRAP, checkout, test,
                          *args.tests], env=env)


if __name__ == "__main__":
  sys.exit(main())
