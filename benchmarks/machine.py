"""What a benchmark records about the machine it ran on: CPU, memory, other load.

The machines are shared and noisy: a benchmark reports ratios against a peer
measured in the same run, and `OthersLoad` says how much CPU other processes
took while each timing ran.
"""

import json
import os
import resource
import time
from typing import Any, Callable, Iterable, Mapping, Optional


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return "unknown"


def print_rows(rows: Iterable[Mapping[str, Any]],
               line: Callable[[Mapping[str, Any]], str],
               trailer: Mapping[str, Any], as_json: bool) -> None:
  """Prints a benchmark's rows, then its context or summary as one JSON line.

  Args:
    rows: one dict per measurement.
    line: formats a row for a reader; used unless `as_json`.
    trailer: the machine's context (and the run's summary figures), printed
      last as JSON in both formats so a script can always read it.
    as_json: print each row as a JSON object instead of `line(row)`.
  """
  for row in rows:
    print(json.dumps(row) if as_json else line(row))
  print(json.dumps(trailer))


def peak_rss_mib() -> float:
  # ru_maxrss is in KiB on Linux.
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class OthersLoad:
  """Cores that other processes kept busy while it was open, from /proc/stat.

  The machines are shared: a figure measured while something else ran is
  not comparable with one measured alone, and this says which is which.
  None where /proc/stat cannot be read.
  """

  @staticmethod
  def _busy_seconds() -> Optional[float]:
    try:
      with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
      return None
    # user nice system idle iowait irq softirq steal: all but idle and
    # iowait is busy (steal too: the hypervisor ran someone else).
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")

  def __enter__(self):
    self.cores: Optional[float] = None
    self._busy = self._busy_seconds()
    self._own = sum(os.times()[:2])
    self._began = time.perf_counter()
    return self

  def __exit__(self, *exc):
    busy = self._busy_seconds()
    if busy is None or self._busy is None:
      return
    others = (busy - self._busy) - (sum(os.times()[:2]) - self._own)
    self.cores = round(max(others, 0.0) / (time.perf_counter() - self._began),
                       2)
