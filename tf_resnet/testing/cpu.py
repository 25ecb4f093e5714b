"""The running CPU as Linux describes it: the tests' independent truth."""


def linux_cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
  """The instruction-set flags of the first CPU in `path` (empty if none)."""
  try:
    with open(path) as f:
      for line in f:
        if line.startswith("flags"):
          return set(line.split(":", 1)[1].split())
  except OSError:
    pass
  return set()


def has_onednn_bfloat16() -> bool:
  """TensorFlow's rule for bfloat16 in oneDNN: AVX-512 or AVX-NE-CONVERT."""
  return bool({"avx512f", "avx_ne_convert"} & linux_cpu_flags())
