"""Gives an unloaded model's memory back to the operating system (TF Serving #1664).

A SavedModel's weights and TensorFlow's kernels are freed into glibc's malloc
arenas when a version unloads, but glibc returns freed pages to the system
only from the top of the main heap: pages freed inside the other arenas (one
per thread that allocated, up to 8 per core) stay in the process's RSS, so a
server that swaps versions looks as if it leaked (TF Serving #1664: 10 ->
8.15 GiB after an unload, never back). `malloc_trim(0)` walks every arena and
returns the free pages in each (glibc >= 2.8). benchmarks/unload_memory.py
measures it against the same server without it, in one run.

What no trim can return: with oneDNN on (TensorFlow's default on CPUs with
AVX-512 VNNI/BF16 or AMX, or TF_ENABLE_ONEDNN_OPTS=1; the server keeps
TensorFlow's choice), TensorFlow's CPU allocator is MklCPUAllocator,
which serves every allocation of 4 KiB or more, the restored weights among
them, from a BFCAllocator (tensorflow/core/common_runtime/mkl_cpu_allocator.h).
BFC grows by regions and frees a region only when an allocation would
otherwise fail, so after an unload the weights' regions (8 + 8 + 16 + 32 + 64
MiB for a ResNet-50, seen by gdb on mmap) are free inside TensorFlow but
still allocated from glibc. The next load reuses them: RSS after an unload
stays at the pool's high-water mark (the most that loaded models and
requests held at once) instead of growing with each version
(docs/performance.md#serving-memory-after-an-unload).
"""

import ctypes
import ctypes.util
import functools
import gc
import logging
from typing import Callable, Optional

_LOG = logging.getLogger("tf_resnet.serving")


@functools.lru_cache(maxsize=None)
def _malloc_trim() -> Optional[Callable[[int], int]]:
  name = ctypes.util.find_library("c")
  try:
    trim = ctypes.CDLL(name).malloc_trim
  except (OSError, AttributeError, TypeError):
    return None  # Not glibc (musl, macOS): nothing to trim.
  trim.argtypes = [ctypes.c_size_t]
  trim.restype = ctypes.c_int
  return trim


def freeze_start_up_objects() -> int:
  """Takes the objects alive now out of the cyclic collector's walks.

  A full collection walks every tracked object, holding the GIL: after
  importing TensorFlow, ~264,000 objects and ~120 ms on the 2-core EPYC, in
  each unload's collection (`release_freed_memory`) and in every automatic
  oldest-generation collection while serving, during which no other
  request's Python runs. The modules and TensorFlow's own Python live as
  long as the process, so the server freezes them once, before it loads a
  model (`gc.freeze`): collections then walk only what came later, the
  models and requests. An unloaded ResNet-50's collection went from 178 to
  37-43 ms (docs/performance.md). What this gives up: a start-up object
  that later becomes cyclic garbage is never freed.

  Returns:
    How many objects were frozen.
  """
  gc.collect()
  gc.freeze()
  return gc.get_freeze_count()


def release_freed_memory() -> bool:
  """Collects garbage, then returns free malloc pages to the system.

  Returns:
    Whether glibc released any memory (False where there is no malloc_trim).
  """
  gc.collect()  # A version's objects can sit in reference cycles.
  trim = _malloc_trim()
  if trim is None:
    return False
  released = bool(trim(0))
  _LOG.debug("malloc_trim(0) released memory: %s", released)
  return released
