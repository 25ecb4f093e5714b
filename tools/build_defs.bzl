"""Macros for this repository's BUILD files (Sonnet's build_defs.bzl in spirit)."""

def tf_py_test(name, srcs = None, size = "small", deps = [], **kwargs):
    """A Python 3 test whose source is `<name>.py` unless `srcs` says otherwise.

    The same file runs under pytest; under Bazel each test file is its own
    process.

    Args:
      name: the target, and the test file's name without `.py`.
      srcs: the sources, default `[name + ".py"]`.
      size: Bazel's test size.
      deps: the libraries the test imports.
      **kwargs: passed to `py_test` (data, tags, shard_count, ...).
    """
    native.py_test(
        name = name,
        srcs = srcs or [name + ".py"],
        size = size,
        python_version = "PY3",
        deps = deps,
        **kwargs
    )
