"""Bazel runs the same tests as pytest: each *_test.py has a tf_py_test."""

import ast
import pathlib

from absl.testing import absltest

# The source tree (under Bazel, resolving the runfiles symlink leads there).
_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _build_calls(build_file: pathlib.Path, rule: str) -> list[dict]:
  """The keyword arguments of every call to `rule` in a BUILD file."""
  calls = []
  for node in ast.walk(ast.parse(build_file.read_text())):
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        and node.func.id == rule):
      calls.append({k.arg: ast.literal_eval(k.value) for k in node.keywords
                    if isinstance(k.value, (ast.Constant, ast.List))})
  return calls


class BuildFilesTest(absltest.TestCase):

  def _python_files(self, pattern):
    return {p for p in _ROOT.glob(pattern)
            if ".venv" not in p.parts and "bazel-" not in str(p)}

  def test_every_test_file_is_a_py_test(self):
    tests = self._python_files("**/*_test.py")
    self.assertNotEmpty(tests)
    targets = set()
    for build in self._python_files("**/BUILD"):
      for call in _build_calls(build, "tf_py_test"):
        srcs = call.get("srcs", [call["name"] + ".py"])
        targets.update(build.parent / src for src in srcs)
    self.assertEqual(sorted(map(str, tests - targets)), [],
                     "test files without a tf_py_test target")

  def test_tests_are_declared_with_the_macro(self):
    # tools/build_defs.bzl's tf_py_test holds the boilerplate once.
    raw = [str(build) for build in self._python_files("**/BUILD")
           if _build_calls(build, "py_test")]
    self.assertEqual(raw, [], "BUILD files calling py_test directly")

  def test_every_library_file_is_in_a_py_library_or_binary(self):
    sources = {p for p in self._python_files("tf_resnet/**/*.py")
               if not p.name.endswith("_test.py")}
    covered = set()
    for build in self._python_files("**/BUILD"):
      for rule in ("py_library", "py_binary"):
        for call in _build_calls(build, rule):
          covered.update(build.parent / src for src in call.get("srcs", []))
    self.assertEqual(sorted(map(str, sources - covered)), [],
                     "modules without a Bazel target")


if __name__ == "__main__":
  absltest.main()
